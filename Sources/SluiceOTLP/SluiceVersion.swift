public enum SluiceVersion {
    public static let current = "0.1.0"
}

import SluiceCore

extension ConfigMap {
    /// Takes the keys of `keys` this section sets, which the Collector defines but
    /// which change nothing in Sluice, and returns one warning for each, naming the
    /// key and why: a key is implemented or named, never silently accepted.
    func keysWithoutEffect(_ keys: [(key: String, why: String)]) -> [String] {
        var warnings: [String] = []
        for (key, why) in keys where has(key) {
            accept(key)
            warnings.append("\(path.isEmpty ? key : "\(path).\(key)") has no effect in Sluice (\(why)); remove it to silence this warning")
        }
        return warnings
    }
}

import SluiceCore

extension ConfigMap {
    /// An exporter's `auth` (a Collector client authenticator extension) is
    /// refused with the way to do it instead, rather than ignored: a credential
    /// silently not sent would turn every export into a 401.
    func refuseClientAuthenticator(instead: String) {
        guard has("auth") else { return }
        accept("auth")
        report("auth", "client authenticator extensions are not supported by Sluice's exporters; \(instead)")
    }
}

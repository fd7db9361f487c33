import SluiceCore

extension HTTPClient.Settings {
    /// An exporter's client settings from its section: `timeout` from the shared
    /// settings, and `tls` and `proxy_url` read here. Problems go into the section's
    /// diagnostics, including PEM files OpenSSL cannot use, so they are reported
    /// when the configuration is read rather than at the first send.
    public init(exporterConfig config: ConfigMap, shared: HTTPClientSettings) {
        self.init()
        requestTimeout = shared.timeout
        if config.has("tls") {
            let settings = TLSSettings(config.map("tls"))
            let tls = TLSClientConfiguration(settings)
            // Files already reported missing need no second message from OpenSSL.
            let section = config.path.isEmpty ? "tls" : "\(config.path).tls"
            if !config.diagnostics.all.contains(where: { $0.path.hasPrefix(section) }), !(config.diagnostics.filesMayBeAbsent && config.diagnostics.warned(under: section)) {
                do {
                    _ = try tls.makeContext()
                } catch {
                    if case .configuration(let reason) = error { config.report("tls", reason) } else { config.report("tls", error.description) }
                }
            }
            self.tls = tls
        }
        if let url = config.string("proxy_url") {
            do {
                proxy = try ProxySettings(url: url)
            } catch {
                config.report("proxy_url", error.description)
            }
        }
    }

    /// What the exporter should log when it starts (insecure_skip_verify, …).
    public var warnings: [String] { tls?.warnings ?? [] }
}

// The keys client and server `tls:` sections share (the Collector's configtls.Config,
// https://github.com/open-telemetry/opentelemetry-collector/blob/main/config/configtls/configtls.go),
// read once for both so a key means the same thing and is refused the same way.
import Foundation

extension TLSSettings {
    /// A path that must name a readable file; a problem is reported under `key`.
    static func readableFile(_ config: ConfigMap, _ key: String) -> String? {
        // An empty path means unset, as in the Collector (a Helm value left blank).
        guard let path = config.string(key), !path.isEmpty else { return nil }
        var isDirectory: ObjCBool = false
        if config.diagnostics.filesMayBeAbsent, !FileManager.default.isReadableFile(atPath: path) {
            config.warn(key, "'\(path)' cannot be read here; it must be readable where Sluice runs")
        } else if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            config.report(key, "'\(path)' does not exist; check the path (and that the secret is mounted)")
        } else if isDirectory.boolValue {
            config.report(key, "'\(path)' is a directory; name the PEM file")
        } else if !FileManager.default.isReadableFile(atPath: path) {
            config.report(key, "'\(path)' cannot be read by this process; check its permissions")
        }
        return path
    }

    /// `min_version` and `max_version`. The Collector accepts 1.0 and 1.1. Sluice
    /// offers 1.2 and 1.3 only: a minimum of 1.0 or 1.1 is raised to 1.2 with a
    /// warning that says so; a maximum below 1.2 cannot be had and is refused.
    static func versions(_ config: ConfigMap) -> (min: TLSVersion, max: TLSVersion?) {
        let minVersion = version(config, "min_version") ?? .v1_2
        let maxVersion = version(config, "max_version")
        if let maxVersion, maxVersion < minVersion {
            config.report("max_version", "\(maxVersion.rawValue) is below min_version \(minVersion.rawValue)")
        }
        return (minVersion, maxVersion)
    }

    private static func version(_ config: ConfigMap, _ key: String) -> TLSVersion? {
        guard let text = config.string(key) else { return nil }
        if let version = TLSVersion(rawValue: text) { return version }
        if text == "1.0" || text == "1.1" {
            if key == "min_version" {
                config.warn(key, "TLS \(text) is not offered by Sluice: read as 1.2, the lowest it offers; write 1.2 to silence this warning")
                return .v1_2
            }
            config.report(key, "TLS \(text) is not offered by Sluice; use 1.2 or 1.3")
        } else {
            config.report(key, "'\(text)' is not a TLS version; use 1.2 or 1.3")
        }
        return nil
    }

    /// `reload_interval`; zero (the Collector's default) means never.
    static func reloadInterval(_ config: ConfigMap) -> Duration? {
        guard let interval = config.duration("reload_interval") else { return nil }
        if interval < .zero {
            config.report("reload_interval", "must not be negative")
            return nil
        }
        return interval > .zero ? interval : nil
    }

    /// Collector keys Sluice knows but does not implement: each is named with what to
    /// do instead, rather than reported as unknown or silently ignored.
    static func refuseUnsupportedKeys(_ config: ConfigMap, pemKeys: [String]) {
        for key in pemKeys where config.has(key) {
            config.accept(key)
            let file = key.replacingOccurrences(of: "_pem", with: "_file")
            config.report(key, "inline PEM is not supported by Sluice; write it to a file (a mounted secret) and set \(file)")
        }
        for key in ["cipher_suites", "curve_preferences", "tpm"] where config.has(key) {
            config.accept(key)
            config.report(key, "not supported by Sluice; OpenSSL's defaults for the TLS version are used")
        }
    }
}

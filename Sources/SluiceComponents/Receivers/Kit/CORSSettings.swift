import SluiceCore

/// `cors` as in the Collector's confighttp: origins may use `*` wildcards.
struct CORSSettings: Sendable {
    var allowedOrigins: [String] = []
    var allowedHeaders: [String] = []
    var maxAge: Int?

    init(allowedOrigins: [String], allowedHeaders: [String] = [], maxAge: Int? = nil) {
        self.allowedOrigins = allowedOrigins
        self.allowedHeaders = allowedHeaders
        self.maxAge = maxAge
    }

    init(_ config: ConfigMap) {
        allowedOrigins = config.stringList("allowed_origins") ?? []
        allowedHeaders = config.stringList("allowed_headers") ?? []
        maxAge = config.int("max_age", min: 0)
        config.finish()
    }

    func allows(origin: String) -> Bool {
        allowedOrigins.contains { pattern in
            if pattern == "*" || pattern == origin { return true }
            guard let star = pattern.firstIndex(of: "*") else { return false }
            let prefix = pattern[..<star], suffix = pattern[pattern.index(after: star)...]
            return origin.count >= prefix.count + suffix.count && origin.hasPrefix(prefix) && origin.hasSuffix(suffix)
        }
    }
}

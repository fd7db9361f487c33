import SluiceCore
import SluiceNet

/// The `redaction` processor's settings: the Collector's keys, and Sluice's
/// `detectors` (built-in scanners for personal and secret data).
///
/// https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/processor/redactionprocessor
struct RedactionConfig: Sendable {
    enum Summary: String, CaseIterable, Sendable { case debug, info, silent }

    /// `allow_all_keys`: keep every attribute (else only `allowed_keys`).
    var allowAllKeys = false
    var allowedKeys = KeyList([])
    var ignoredKeys = KeyList([])
    var ignoredKeyPatterns: [ConfigPattern] = []
    var blockedKeyPatterns: [ConfigPattern] = []
    var blockedValues: [ConfigPattern] = []
    var allowedValues: [ConfigPattern] = []
    /// `redact_all_types`: ints, doubles and bools are checked as their text too.
    var redactAllTypes = false
    /// `hash_function`: what a masked part becomes instead of `****`; nil masks.
    var digest: ValueDigest?
    var summary = Summary.silent
    var detectors = SensitiveKind.Set.all

    /// The Collector's hash function names, and Sluice's `sha256`.
    static let hashFunctions = ["md5", "sha1", "sha3", "sha256", "hmac-sha256", "hmac-sha512"]

    static func read(_ config: ConfigMap) -> RedactionConfig? {
        let before = config.diagnostics.all.count
        var settings = RedactionConfig()
        settings.allowAllKeys = config.bool("allow_all_keys") ?? false
        let allowed = config.stringList("allowed_keys") ?? []
        settings.allowedKeys = KeyList(allowed + RedactionSummaryKeys.all)
        settings.ignoredKeys = KeyList(config.stringList("ignored_keys") ?? [])
        settings.ignoredKeyPatterns = config.patterns("ignored_key_patterns") ?? []
        settings.blockedKeyPatterns = config.patterns("blocked_key_patterns") ?? []
        settings.blockedValues = config.patterns("blocked_values") ?? []
        settings.allowedValues = config.patterns("allowed_values") ?? []
        settings.redactAllTypes = config.bool("redact_all_types") ?? false
        settings.summary = config.enumeration("summary", Summary.allCases.map(\.rawValue)).flatMap(Summary.init) ?? .silent

        let hmacKey = config.string("hmac_key")
        var hashFunction: String?
        hashFunction = config.enumeration("hash_function", hashFunctions)
        switch hashFunction {
        case "md5": settings.digest = ValueDigest(.md5)
        case "sha1": settings.digest = ValueDigest(.sha1)
        case "sha3": settings.digest = ValueDigest(.sha3_256)
        case "sha256": settings.digest = ValueDigest(.sha256)
        case let hmac? where hmac.hasPrefix("hmac-"):
            let algorithm: ValueDigest.Algorithm = hmac == "hmac-sha256" ? .sha256 : .sha512
            let minimum = algorithm == .sha256 ? 32 : 64
            if let hmacKey, hmacKey.utf8.count >= minimum {
                settings.digest = ValueDigest(algorithm, key: Array(hmacKey.utf8))
            } else {
                config.report(hmacKey == nil ? "hash_function" : "hmac_key",
                              "\(hmac) needs hmac_key of at least \(minimum) bytes (\(hmacKey?.utf8.count ?? 0) given); set it from a secret, like hmac_key: ${env:REDACTION_HMAC_KEY}")
            }
        default:
            break
        }
        if hmacKey != nil, !(hashFunction?.hasPrefix("hmac-") ?? false) {
            config.warn("hmac_key", "has no effect without hash_function: hmac-sha256 or hmac-sha512")
        }
        if let digest = settings.digest, digest.key == nil {
            config.warn("hash_function", "an unkeyed hash of a card number, phone number or SSN can be reversed by hashing every possible number; use hmac-sha256 with hmac_key (from a secret) so only its holder can")
        }

        if let names = config.stringList("detectors") {
            var kinds: [SensitiveKind] = []
            let known = SensitiveKind.allCases.map(\.rawValue)
            for name in names {
                if let kind = SensitiveKind(rawValue: name) {
                    kinds.append(kind)
                } else {
                    let hint = closestMatch(to: name, in: known).map { " (did you mean \($0)?)" } ?? ""
                    config.report("detectors", "'\(name)' is not a detector\(hint); the detectors are \(known.joined(separator: ", "))")
                }
            }
            settings.detectors = SensitiveKind.Set(kinds)
        }

        // The Collector's sanitizers rewrite URLs and database statements; accepting
        // them without doing it would let what they are meant to remove through.
        for key in ["url_sanitizer", "db_sanitizer"] where config.has(key) {
            config.accept(key)
            config.report(key, "is not supported by Sluice's redaction processor; remove it, and mask what it would have removed with blocked_values or blocked_key_patterns")
        }
        if !settings.allowAllKeys, allowed.isEmpty {
            config.warn(config.has("allowed_keys") ? "allowed_keys" : "allow_all_keys",
                        "with allow_all_keys false and no allowed_keys, every attribute is removed (the Collector's fail-closed default); set allow_all_keys: true to keep attributes and only mask values")
        }
        config.finish()
        return config.diagnostics.all.count == before ? settings : nil
    }
}

/// Attribute keys compared as bytes, without making a String per attribute: the
/// lists are short, and the comparison runs for every attribute of every record.
struct KeyList: Sendable {
    let keys: [[UInt8]]

    init(_ keys: [String]) { self.keys = keys.map { Array($0.utf8) } }

    var isEmpty: Bool { keys.isEmpty }

    func contains(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
        for candidate in keys where candidate.count == key.count {
            if candidate.withUnsafeBufferPointer({ $0.elementsEqual(key) }) { return true }
        }
        return false
    }
}

/// The attributes the processor adds to summarize what it did (`summary: info` for
/// the counts, `debug` for the keys too), named as the Collector names them. They
/// are always allowed, so a second redaction processor keeps and adds to them.
enum RedactionSummaryKeys {
    static let redactedKeys = "redaction.redacted.keys"
    static let redactedCount = "redaction.redacted.count"
    static let maskedKeys = "redaction.masked.keys"
    static let maskedCount = "redaction.masked.count"
    static let allowedKeys = "redaction.allowed.keys"
    static let allowedCount = "redaction.allowed.count"
    static let ignoredCount = "redaction.ignored.count"
    static let bodyRedactedKeys = "redaction.body.redacted.keys"
    static let bodyRedactedCount = "redaction.body.redacted.count"
    static let bodyMaskedKeys = "redaction.body.masked.keys"
    static let bodyMaskedCount = "redaction.body.masked.count"
    static let bodyAllowedKeys = "redaction.body.allowed.keys"
    static let bodyAllowedCount = "redaction.body.allowed.count"
    static let bodyIgnoredCount = "redaction.body.ignored.count"

    static let all = [redactedKeys, redactedCount, maskedKeys, maskedCount, allowedKeys, allowedCount, ignoredCount,
                      bodyRedactedKeys, bodyRedactedCount, bodyMaskedKeys, bodyMaskedCount, bodyAllowedKeys, bodyAllowedCount, bodyIgnoredCount]
}

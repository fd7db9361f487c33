import Foundation
import SluiceNet

/// Standard Webhooks signatures (https://www.standardwebhooks.com/, spec 1.0.0,
/// "Signature scheme"): the sender signs `<webhook-id>.<webhook-timestamp>.<body>`
/// with HMAC-SHA256 under the secret's key and sends
/// `webhook-signature: v1,<base64 of the MAC>`. The secret is written
/// `whsec_<base64 of the key>`; the key is the base64-decoded part (24 to 64 bytes).
struct WebhookSignature: Sendable {
    let key: [UInt8]

    /// Problems with a configured secret, in words for the config error.
    enum SecretProblem: Error, Equatable {
        case notBase64
        case length(Int)

        var description: String {
            let how = "generate one with: echo whsec_$(openssl rand -base64 32)"
            switch self {
            case .notBase64: return "is not whsec_ followed by base64; \(how)"
            case .length(let n): return "decodes to \(n) bytes; Standard Webhooks keys are 24 to 64 bytes; \(how)"
            }
        }
    }

    init(secret: String) throws(SecretProblem) {
        let encoded = secret.hasPrefix("whsec_") ? String(secret.dropFirst("whsec_".count)) : secret
        guard let data = Data(base64Encoded: encoded) else { throw .notBase64 }
        guard (24...64).contains(data.count) else { throw .length(data.count) }
        key = Array(data)
    }

    /// `v1,<base64>` for one attempt.
    func sign(id: String, timestamp: Int64, body: [UInt8]) -> String {
        var content = Array("\(id).\(timestamp).".utf8)
        content += body
        return "v1," + Data(Digest.hmacSHA256(key: key, content)).base64EncodedString()
    }

    /// The webhook-id of a message: a hash of its body, so the same message has the
    /// same id on every attempt (receivers deduplicate on it) and no two messages
    /// share one.
    static func messageID(_ body: [UInt8]) -> String {
        "msg_" + Digest.hex(Array(Digest.sha256(body).prefix(16)))
    }
}

/// `event_types` patterns: `*` matches any run of characters (also none), `?` any
/// one character; everything else matches itself (`policy.*`, `blocked`).
struct EventTypeFilter: Sendable {
    let patterns: [[Character]]

    init(_ patterns: [String]) { self.patterns = patterns.map(Array.init) }

    var isEmpty: Bool { patterns.isEmpty }

    func matches(_ type: String) -> Bool {
        patterns.isEmpty || patterns.contains { Self.glob($0, Array(type)) }
    }

    static func glob(_ pattern: [Character], _ text: [Character]) -> Bool {
        // Iterative wildcard matching with one backtrack point: linear in practice,
        // never exponential on hostile patterns.
        var p = 0, t = 0, star = -1, mark = 0
        while t < text.count {
            if p < pattern.count, pattern[p] == "?" || pattern[p] == text[t] {
                p += 1
                t += 1
            } else if p < pattern.count, pattern[p] == "*" {
                star = p
                mark = t
                p += 1
            } else if star >= 0 {
                p = star + 1
                mark += 1
                t = mark
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }
}

import Foundation

/// `user:password@` in a URL (an exporter's endpoint, a proxy_url): sent as HTTP
/// Basic authentication (RFC 7617), as Go's client — the Collector's — does, and
/// never shown: descriptions of endpoints and proxies leave it out.
public struct URLCredentials: Sendable, Hashable {
    public let user: String
    public let password: String

    /// `nil` when the URL has no user. URLComponents gives both percent-decoded.
    public init?(_ url: URLComponents) {
        guard let user = url.user, !user.isEmpty else { return nil }
        self.user = user
        password = url.password ?? ""
    }

    /// The `Authorization` (or `Proxy-Authorization`) value.
    public var basic: String { "Basic " + encoded }

    private var encoded: String { Data("\(user):\(password)".utf8).base64EncodedString() }

    /// What to mask wherever a destination might echo it.
    public var secretValues: [String] { [password, encoded, basic] }

    /// `text` with the userinfo of a URL replaced, for messages about a URL that
    /// did not parse (a valid one is shown through its description).
    public static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@"), let schemeEnd = text.range(of: "://") else { return text.contains("@") ? "(a URL with credentials)" : text }
        return String(text[..<schemeEnd.upperBound]) + "…@" + String(text[text.index(after: at)...])
    }
}

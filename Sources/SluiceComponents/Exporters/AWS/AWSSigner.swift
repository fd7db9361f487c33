// AWS support shared by exporters that call AWS APIs: request signing
// (AWSSigner), credentials and where they come from (AWSCredentials,
// AWSCredentialsProvider), and the STS calls that turn a web identity or a role
// into temporary credentials (AWSSecurityTokenService). docs/cloudwatch.md
// explains the credential chain to users.
import SluiceNet

/// AWS Signature Version 4 for a request sent with a body in one piece
/// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html):
///
///     CanonicalRequest = Method \n CanonicalURI \n CanonicalQueryString \n
///                        CanonicalHeaders \n SignedHeaders \n hex(SHA256(body))
///     StringToSign     = "AWS4-HMAC-SHA256" \n X-Amz-Date \n <date>/<region>/<service>/aws4_request \n
///                        hex(SHA256(CanonicalRequest))
///     SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, <date>), region), service), "aws4_request")
///
/// Checked against AWS's published test suite in
/// Tests/SluiceComponentsTests/CloudWatchLogs/AWSSignerTests.swift.
struct AWSSigner: Sendable {
    var region: String
    var service: String

    /// The headers to add to a request: `X-Amz-Date`, `X-Amz-Security-Token` with
    /// temporary credentials, and `Authorization`. `headers` are the request's other
    /// headers, all of which are signed (Host among them).
    func sign(method: String, path: String, query: String = "", headers: [(String, String)], body: [UInt8],
              credentials: AWSCredentials, epochSeconds: UInt64) -> [(String, String)] {
        let amzDate = Self.amzDate(epochSeconds)
        let day = String(amzDate.prefix(8))
        var all = headers
        all.append(("X-Amz-Date", amzDate))
        var added = [("X-Amz-Date", amzDate)]
        if let token = credentials.sessionToken, !token.isEmpty {
            all.append(("X-Amz-Security-Token", token))
            added.append(("X-Amz-Security-Token", token))
        }
        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(all)
        let canonicalRequest = [method, Self.canonicalURI(path), Self.canonicalQuery(query), canonicalHeaders, signedHeaders,
                                Digest.hex(Digest.sha256(body))].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, Digest.hex(Digest.sha256(Array(canonicalRequest.utf8)))].joined(separator: "\n")
        var key = Digest.hmacSHA256(key: Array("AWS4\(credentials.secretAccessKey)".utf8), Array(day.utf8))
        for part in [region, service, "aws4_request"] { key = Digest.hmacSHA256(key: key, Array(part.utf8)) }
        let signature = Digest.hex(Digest.hmacSHA256(key: key, Array(stringToSign.utf8)))
        added.append(("Authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"))
        return added
    }

    /// `20150830T123600Z`: the basic ISO 8601 form SigV4 signs.
    static func amzDate(_ epochSeconds: UInt64) -> String {
        let (year, month, day, hour) = civil(epochSeconds)
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let minute = Int(epochSeconds % 3600 / 60), second = Int(epochSeconds % 60)
        return "\(year)\(two(month))\(two(day))T\(two(hour))\(two(minute))\(two(second))Z"
    }

    /// Year, month, day and hour (UTC) of a Unix time.
    static func civil(_ epochSeconds: UInt64) -> (year: Int, month: Int, day: Int, hour: Int) {
        IndexName.civil(epochSeconds * 1_000_000_000)
    }

    /// Each path segment percent-encoded (the path is given unencoded); `/` when empty.
    static func canonicalURI(_ path: String) -> String {
        guard !path.isEmpty else { return "/" }
        return path.split(separator: "/", omittingEmptySubsequences: false).map { uriEncode(String($0)) }.joined(separator: "/")
    }

    /// Parameters sorted by name, then value, each name and value encoded the SigV4 way.
    static func canonicalQuery(_ query: String) -> String {
        guard !query.isEmpty else { return "" }
        let pairs = query.split(separator: "&").map { part -> (String, String) in
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecode(String(pieces[0]))
            let value = pieces.count > 1 ? percentDecode(String(pieces[1])) : ""
            return (uriEncode(name), uriEncode(value))
        }
        return pairs.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// Lowercase names, sorted; values trimmed with inner runs of spaces made one;
    /// repeated headers joined with commas.
    static func canonicalHeaders(_ headers: [(String, String)]) -> (canonical: String, signed: String) {
        var byName: [String: [String]] = [:]
        for (name, value) in headers {
            byName[name.lowercased(), default: []].append(collapseSpaces(value))
        }
        let names = byName.keys.sorted()
        let canonical = names.map { "\($0):\(byName[$0]!.joined(separator: ","))\n" }.joined()
        return (canonical, names.joined(separator: ";"))
    }

    static func collapseSpaces(_ value: String) -> String {
        var out = ""
        var pendingSpace = false
        for character in value.trimmingWhitespace() {
            if character == " " || character == "\t" {
                pendingSpace = true
            } else {
                if pendingSpace { out.append(" ") }
                pendingSpace = false
                out.append(character)
            }
        }
        return out
    }

    /// RFC 3986 percent-encoding: everything but `A-Z a-z 0-9 - _ . ~`, uppercase hex.
    static func uriEncode(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(byte)
            default:
                out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func percentDecode(_ text: String) -> String {
        var out: [UInt8] = []
        var bytes = Array(text.utf8)[...]
        while let byte = bytes.popFirst() {
            if byte == UInt8(ascii: "%"), bytes.count >= 2, let value = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) {
                out.append(value)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `application/x-www-form-urlencoded` body from parameters (STS's Query API).
    static func formBody(_ parameters: [(String, String)]) -> [UInt8] {
        Array(parameters.map { "\(uriEncode($0.0))=\(uriEncode($0.1))" }.joined(separator: "&").utf8)
    }
}

extension String {
    func trimmingWhitespace() -> Substring {
        var s = self[...]
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return s
    }
}

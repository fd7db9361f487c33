import Foundation
import SluiceCore
import SluiceNet

/// What an HTTP answer means for delivery, before an exporter reads its body.
enum ResponseClass: Equatable, Sendable {
    /// 2xx: taken (a bulk answer may still refuse items inside it).
    case success
    /// Worth trying again, after the destination's `Retry-After` when it sent one.
    case retry(after: Duration?)
    /// 401/403: the credential is wrong; nothing will be taken until it is fixed.
    case unauthorized
    /// 413: the payload is too large; smaller ones may be taken.
    case tooLarge
    /// Any other answer: this request will never be taken as it is.
    case refused

    /// The default mapping, which most HTTP APIs share: 408, 429 and 5xx are worth a
    /// retry. `retryable` overrides which statuses are (OTLP/HTTP allows only 429,
    /// 502, 503 and 504).
    static func of(_ response: HTTPClientResponse, retryable: Set<Int>? = nil) -> ResponseClass {
        let code = Int(response.status.code)
        switch code {
        case 200..<300: return .success
        case 401, 403: return .unauthorized
        case 413: return .tooLarge
        default:
            let retry = retryable.map { $0.contains(code) } ?? (code == 408 || code == 429 || (500...599).contains(code))
            return retry ? .retry(after: response.retryAfter) : .refused
        }
    }

    /// A body quoted in a reason: the exporter's secrets masked in the whole body
    /// before it is cut to `SecretMask.excerptLength` characters on one line.
    static func excerpt(_ response: HTTPClientResponse, masking secrets: SecretMask) -> String {
        secrets.clean(response.bodyText, limit: SecretMask.excerptLength)
    }

    /// How far the destination's clock is from this host's, from its `Date`
    /// header, when that is more than `tolerance` seconds: signatures that carry a
    /// time (Standard Webhooks, the Data Collector API's SharedKey, AWS SigV4) are
    /// refused when the clocks disagree, and the refusal alone does not say so.
    /// Positive: the destination is ahead.
    static func clockSkew(_ response: HTTPClientResponse, now: Date = Date(), tolerance: TimeInterval = 60) -> TimeInterval? {
        guard let text = response.headers.first(name: "Date"), let date = HTTPDate.parse(text) else { return nil }
        let skew = date.timeIntervalSince(now)
        return abs(skew) > tolerance ? skew : nil
    }

    /// `clockSkew` as words for a refusal's reason, or "".
    static func clockSkewNote(_ response: HTTPClientResponse, now: Date = Date(), window: String) -> String {
        guard let skew = clockSkew(response, now: now) else { return "" }
        let seconds = Int(abs(skew).rounded())
        return "; the destination's clock (Date: \(response.headers.first(name: "Date") ?? "")) is \(seconds) s \(skew > 0 ? "ahead of" : "behind") this host's, and \(window): fix the clocks (NTP)"
    }
}

/// HTTP dates (RFC 9110 IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`): the
/// `Date` header, and the Data Collector API's `x-ms-date`.
enum HTTPDate {
    static func format(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: date)
    }

    static func parse(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text.trimmingCharacters(in: .whitespaces))
    }
}

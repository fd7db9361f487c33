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
}

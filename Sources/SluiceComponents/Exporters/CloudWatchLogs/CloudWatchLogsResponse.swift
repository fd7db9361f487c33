import Foundation
import SluiceNet

/// What a CloudWatch Logs answer says. Errors of the JSON 1.1 protocol carry their
/// type in `x-amzn-ErrorType` and in the body's `__type`, either bare
/// (`ResourceNotFoundException`) or qualified (`com.amazonaws.logs#…`), with a
/// `message` (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/CommonErrors.html).
struct CloudWatchLogsResponse {
    var status: Int
    /// The error's short name, when the answer is an error.
    var errorType: String?
    var message: String?
    var object: [String: Any]?

    init(_ response: HTTPClientResponse) {
        status = Int(response.status.code)
        object = (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))) as? [String: Any]
        let type = response.headers.first(name: "x-amzn-ErrorType") ?? (object?["__type"] as? String)
        errorType = type.map(Self.shortName)
        message = (object?["message"] as? String) ?? (object?["Message"] as? String)
        if errorType == nil, status >= 300 {
            // An answer from something in front of the service (a proxy, a query-protocol error).
            let text = String(buffer: response.body)
            errorType = AWSSecurityTokenService.element("Code", in: text)
            message = message ?? AWSSecurityTokenService.element("Message", in: text)
        }
    }

    static func shortName(_ type: String) -> String {
        var name = Substring(type)
        if let hash = name.lastIndex(of: "#") { name = name[name.index(after: hash)...] }
        if let colon = name.firstIndex(of: ":") { name = name[..<colon] }
        return String(name)
    }

    /// How the delivery loop should take it.
    enum Kind: Equatable {
        case success
        case missingStream
        case retry
        /// The credentials expired: fetch new ones and try again.
        case expiredCredentials
        /// The credentials or their permissions were refused.
        case credentialsRefused
        /// Something in the request is bad (an event too large for an older account):
        /// find it by halving.
        case badEvent
        case tooLarge
        case alreadyAccepted
        case refused
    }

    var kind: Kind {
        if (200..<300).contains(status) { return .success }
        switch errorType ?? "" {
        case "ResourceNotFoundException": return .missingStream
        case "ThrottlingException", "ServiceUnavailableException", "ServiceUnavailable", "InternalFailure", "RequestTimeout",
             "RequestTimeoutException", "LimitExceededException", "OperationAbortedException", "Throttling":
            return .retry
        case "ExpiredTokenException", "ExpiredToken", "RequestExpired", "InvalidToken":
            return .expiredCredentials
        case "UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch", "InvalidClientTokenId",
             "IncompleteSignature", "IncompleteSignatureException", "AccessDeniedException", "AccessDenied", "MissingAuthenticationToken",
             "MissingAuthenticationTokenException", "NotAuthorized":
            return .credentialsRefused
        case "InvalidParameterException", "SerializationException":
            return .badEvent
        case "DataAlreadyAcceptedException":
            return .alreadyAccepted
        default:
            if status == 413 { return .tooLarge }
            if status == 429 || status >= 500 { return .retry }
            if status == 401 || status == 403 { return .credentialsRefused }
            return .refused
        }
    }

    /// `rejectedLogEventsInfo` of an accepted call: which events (by position in the
    /// request) were not stored, and why. nil when every event was stored.
    func rejected(count: Int, retentionDays: Int) -> [RecordResult]? {
        guard let info = object?["rejectedLogEventsInfo"] as? [String: Any], !info.isEmpty else { return nil }
        var results = Array(repeating: RecordResult.delivered, count: count)
        func index(_ key: String) -> Int? { (info[key] as? NSNumber)?.intValue }
        if let end = index("tooOldLogEventEndIndex") {
            for i in 0..<min(count, end + 1) { results[i] = .refused("CloudWatch Logs refused the event as too old (tooOldLogEventEndIndex: older than 14 days)") }
        }
        if let end = index("expiredLogEventEndIndex") {
            let retention = retentionDays > 0 ? "the group's retention of \(retentionDays) days" : "the group's retention"
            for i in 0..<min(count, end + 1) { results[i] = .refused("CloudWatch Logs refused the event as expired (expiredLogEventEndIndex: older than \(retention))") }
        }
        if let start = index("tooNewLogEventStartIndex"), start < count {
            for i in max(0, start)..<count { results[i] = .refused("CloudWatch Logs refused the event as too new (tooNewLogEventStartIndex: more than 2 hours ahead); check the sender's clock") }
        }
        return results.contains { $0 != .delivered } ? results : nil
    }

    var summary: String {
        let type = errorType ?? "HTTP \(status)"
        guard let message, !message.isEmpty else { return type }
        return "\(type): \(message.count > 300 ? String(message.prefix(300)) + "…" : message)"
    }
}

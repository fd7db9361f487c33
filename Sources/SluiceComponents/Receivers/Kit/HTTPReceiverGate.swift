import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

/// What an HTTP receiver checks before it reads a body, the same for every one:
/// CORS (preflight and the answer's headers), authentication, the method and the
/// `Content-Encoding`. Each receiver words a refusal its own way (`Refusal`), so an
/// OTLP client still gets a `google.rpc.Status` and an events client JSON.
struct HTTPReceiverGate: Sendable {
    let settings: HTTPReceiverSettings
    let counters: ReceiverCounters

    /// A refusal's answer, in the receiver's format.
    typealias Refusal = (HTTPResponseStatus, String) -> HTTPServerResponse

    /// `reply`, adding `Access-Control-Allow-Origin` for an allowed origin.
    func withCORS(_ request: HTTPServerRequest, _ reply: @escaping @Sendable (HTTPServerResponse) -> Void) -> @Sendable (HTTPServerResponse) -> Void {
        guard let origin = request.headers.first(name: "origin"), let cors = settings.cors, cors.allows(origin: origin) else { return reply }
        return { response in
            var response = response
            response.headers.replaceOrAdd(name: "Access-Control-Allow-Origin", value: origin)
            response.headers.add(name: "Vary", value: "Origin")
            reply(response)
        }
    }

    /// The answer that ends the request here — a CORS preflight, a failed
    /// authentication, a method other than POST — or `nil` to go on.
    func admit(_ request: HTTPServerRequest, refuse: Refusal) -> HTTPServerResponse? {
        // A CORS preflight carries no credentials (Fetch standard, CORS-preflight
        // request), so it is answered before authentication.
        if request.method == .OPTIONS { return preflight(request) }
        // `auth.authenticator`: 401 with a challenge (RFC 9110 §11.6.1).
        if let auth = settings.auth, let reason = auth.authenticator.authenticate(header: { request.headers.first(name: $0) }) {
            counters.authFailures.increment()
            var response = refuse(.unauthorized, "unauthenticated: \(reason)")
            response.headers.add(name: "WWW-Authenticate", value: "Bearer")
            return response
        }
        guard request.method == .POST else {
            var response = refuse(.methodNotAllowed, "use POST")
            response.headers.add(name: "Allow", value: "POST, OPTIONS")
            return response
        }
        return nil
    }

    /// The body's `Content-Encoding`, or the 415 that refuses it.
    func contentEncoding(_ request: HTTPServerRequest, refuse: Refusal) -> Result<ContentEncoding, HTTPServerError> {
        let header = request.headers.first(name: "content-encoding") ?? ""
        guard let encoding = ContentEncoding(headerValue: header) else {
            counters.badRequests.increment()
            return .failure(HTTPServerError(refuse(.unsupportedMediaType, "unsupported Content-Encoding '\(header)'; use gzip, deflate, zstd or none")))
        }
        return .success(encoding)
    }

    /// The `Content-Type` without parameters, lowercased (`application/json`).
    static func mediaType(_ request: HTTPServerRequest) -> String {
        let contentType = (request.headers.first(name: "content-type") ?? "").lowercased()
        return contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
    }

    private func preflight(_ request: HTTPServerRequest) -> HTTPServerResponse {
        var response = HTTPServerResponse(status: .noContent)
        guard let cors = settings.cors, let origin = request.headers.first(name: "origin"), cors.allows(origin: origin) else { return response }
        response.headers.add(name: "Access-Control-Allow-Methods", value: "POST")
        let requested = request.headers.first(name: "access-control-request-headers") ?? ""
        let allowed = ["content-type", "content-encoding"] + cors.allowedHeaders.map { $0.lowercased() }
        let granted = requested.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { allowed.contains($0.lowercased()) || cors.allowedHeaders.contains("*") }
        if !granted.isEmpty { response.headers.add(name: "Access-Control-Allow-Headers", value: granted.joined(separator: ", ")) }
        if let maxAge = cors.maxAge { response.headers.add(name: "Access-Control-Max-Age", value: String(maxAge)) }
        return response
    }
}

/// An answer that ends a request early, as an `Error` so it fits a `Result`.
struct HTTPServerError: Error {
    let response: HTTPServerResponse
    init(_ response: HTTPServerResponse) { self.response = response }
}

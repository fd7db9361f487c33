import Foundation
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

/// `POST /v1/events`: the receiver kit's checks (CORS, authentication, method,
/// encoding), the events' content types, the shared ingest with the events
/// decoder, and small JSON answers:
/// - 200 `{"accepted":3}`, or with `"rejected"` and `"message"` when processors
///   dropped events on purpose (partial success: do not send those again);
/// - 400 (malformed JSON or event, with the byte offset and line), 401, 404, 405,
///   413 (body, events or values over a limit), 415 (content type or encoding);
/// - 429 (a pipeline log is full) and 503 (memory limit, shutting down) with
///   `Retry-After`: send the same request again then.
/// Every error is `{"error":"…"}`, plus `"offset"` where a byte offset is known.
struct EventsHTTPResponder: ReplyingResponder {
    let id: ComponentID
    let config: EventsReceiverConfig
    let sink: any ReceiverSink
    let counters: ReceiverCounters

    /// Media types of a body of events. NDJSON is also recognised under
    /// `application/json`, so the type only has to be one of these.
    static let mediaTypes = ["application/json", "application/x-ndjson", "application/ndjson", "application/jsonl", "application/jsonlines"]

    private var gate: HTTPReceiverGate { HTTPReceiverGate(settings: config.server, counters: counters) }

    private var decoder: EventsDecoder {
        EventsDecoder(mapping: config.mapping, maxEvents: config.maxEventsPerRequest, maxValues: config.maxValuesPerRequest,
                      maxDepth: config.server.maxNestingDepth)
    }

    /// 413 and 408 from the server itself, as JSON too.
    func errorResponse(_ httpStatus: HTTPResponseStatus, message: String, requestHeaders: HTTPHeaders) -> HTTPServerResponse {
        counters.badRequests.increment()
        return Self.error(httpStatus, message)
    }

    func handle(_ request: HTTPServerRequest, reply: @escaping @Sendable (HTTPServerResponse) -> Void) {
        let reply = gate.withCORS(request, reply)
        if let early = check(request, reply: reply) { reply(early) }
    }

    /// Hands the body to the pipelines, or returns the answer that refuses it.
    private func check(_ request: HTTPServerRequest, reply: @escaping @Sendable (HTTPServerResponse) -> Void) -> HTTPServerResponse? {
        guard request.path == config.path else {
            return Self.error(.notFound, "unknown path \(request.path); events go to POST \(config.path)")
        }
        if let refusal = gate.admit(request, refuse: Self.error) { return refusal }
        let mediaType = HTTPReceiverGate.mediaType(request)
        guard Self.mediaTypes.contains(mediaType), Self.isUTF8(request.headers.first(name: "content-type") ?? "") else {
            counters.badRequests.increment()
            let contentType = request.headers.first(name: "content-type") ?? "none"
            return Self.error(.unsupportedMediaType, "unsupported Content-Type '\(contentType)'; send application/json or application/x-ndjson (UTF-8)")
        }
        guard sink.takes(.logs) else {
            return Self.error(.notFound, "this receiver is in no logs pipeline")
        }
        let compression: ContentEncoding
        switch gate.contentEncoding(request, refuse: Self.error) {
        case .success(let value): compression = value
        case .failure(let refusal): return refusal.response
        }
        let decoder = decoder
        ReceiverIngest(sink: sink, counters: counters).ingest(request.body, signal: .logs, compression: compression, limits: config.server.decodeLimits,
                                                             decode: { raw throws(OTLPDecodeError) in try decoder.decode(raw) }) { outcome in
            reply(Self.answer(outcome))
        }
        return nil
    }

    /// A `charset` parameter, when there is one, must say UTF-8 (RFC 8259 §8.1).
    private static func isUTF8(_ contentType: String) -> Bool {
        for parameter in contentType.lowercased().split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if pair.count == 2, pair[0] == "charset", pair[1].replacingOccurrences(of: "\"", with: "") != "utf-8" { return false }
        }
        return true
    }

    static func answer(_ outcome: ReceiverIngestOutcome) -> HTTPServerResponse {
        switch outcome {
        case .accepted(let items, let rejected, let message):
            var out = JSONOutput()
            out.append(ascii: "{\"accepted\":")
            out.appendInt(Int64(items - rejected))
            if rejected > 0 {
                out.append(ascii: ",\"rejected\":")
                out.appendInt(Int64(rejected))
                out.append(ascii: ",\"message\":")
                out.appendString(message ?? "dropped by processors")
            }
            out.append(ascii: "}")
            return HTTPServerResponse(status: .ok, contentType: "application/json", body: out.bytes)
        case .refused(let reason, let retryAfter):
            var response = error(HTTPResponseStatus(statusCode: reason.httpStatus), reason.description)
            response.headers.add(name: "Retry-After", value: String(max(1, retryAfter.components.seconds)))
            return response
        case .undecodable(let problem):
            switch problem.kind {
            case .tooLarge: return error(.payloadTooLarge, problem.description, offset: problem.offset)
            case .unsupported: return error(.unsupportedMediaType, problem.description, offset: problem.offset)
            case .outOfMemory:
                var response = error(.serviceUnavailable, problem.description)
                response.headers.add(name: "Retry-After", value: "1")
                return response
            case .malformed, .tooDeep, .badCompression: return error(.badRequest, problem.description, offset: problem.offset)
            }
        }
    }

    /// `{"error":"…"}`, with `"offset"` when one is known.
    static func error(_ status: HTTPResponseStatus, _ message: String) -> HTTPServerResponse {
        error(status, message, offset: nil)
    }

    static func error(_ status: HTTPResponseStatus, _ message: String, offset: Int?) -> HTTPServerResponse {
        var out = JSONOutput()
        out.append(ascii: "{\"error\":")
        out.appendString(message)
        if let offset {
            out.append(ascii: ",\"offset\":")
            out.appendInt(Int64(offset))
        }
        out.append(ascii: "}")
        return HTTPServerResponse(status: status, contentType: "application/json", body: out.bytes)
    }
}

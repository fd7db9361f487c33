import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

/// OTLP/HTTP request handling: authentication, content negotiation, then the shared
/// ingest (decompress, decode, hand to the pipelines), and the answer the
/// specification asks for. (https://opentelemetry.io/docs/specs/otlp/#otlphttp)
struct OTLPHTTPResponder: ReplyingResponder {
    let id: ComponentID
    let config: OTLPReceiverConfig.HTTP
    let sink: any ReceiverSink
    let counters: ReceiverCounters

    /// 413 and 408 from the server itself still carry a `google.rpc.Status` in the
    /// request's encoding, as OTLP/HTTP asks of every error.
    func errorResponse(_ httpStatus: HTTPResponseStatus, message: String, requestHeaders: HTTPHeaders) -> HTTPServerResponse {
        counters.badRequests.increment()
        let json = requestHeaders.first(name: "content-type")?.lowercased().hasPrefix("application/json") ?? false
        return status(httpStatus, code: httpStatus == .requestTimeout ? 4 : 3, message, json ? .json : .protobuf)
    }

    private var gate: HTTPReceiverGate { HTTPReceiverGate(settings: config.server, counters: counters) }

    /// Answers through `reply`: at once for a request that is refused, and after the
    /// pipeline logs have the data for one that is taken (a disk log answers after
    /// its write, and after fsync when that is asked for).
    func handle(_ request: HTTPServerRequest, reply: @escaping @Sendable (HTTPServerResponse) -> Void) {
        let reply = gate.withCORS(request, reply)
        if let early = decode(request, reply: reply) { reply(early) }
    }

    /// Checks the request and hands its body to the pipelines, or returns the answer
    /// that refuses it.
    private func decode(_ request: HTTPServerRequest, reply: @escaping @Sendable (HTTPServerResponse) -> Void) -> HTTPServerResponse? {
        guard let signal = config.paths.first(where: { $0.value == request.path })?.key else {
            return .text(.notFound, "unknown path \(request.path); OTLP/HTTP paths are \(config.paths.values.sorted().joined(separator: ", "))\n")
        }
        // Refusals before the content type is known answer in its likely encoding.
        let json = HTTPReceiverGate.mediaType(request).hasPrefix("application/json")
        if let refusal = gate.admit(request, refuse: { status($0, code: Self.statusCode($0), $1, json ? .json : .protobuf) }) { return refusal }
        let mediaType = HTTPReceiverGate.mediaType(request)
        let encoding: OTLPPayloadFormat
        switch mediaType {
        case "application/x-protobuf", "application/protobuf": encoding = .protobuf
        case "application/json": encoding = .json
        default:
            counters.badRequests.increment()
            let contentType = request.headers.first(name: "content-type") ?? ""
            return .text(.unsupportedMediaType, "unsupported Content-Type '\(contentType.lowercased())'; send application/x-protobuf or application/json\n")
        }
        guard sink.takes(signal) else {
            return status(.notFound, code: 12, "this receiver is in no \(signal) pipeline", encoding)
        }
        let compression: ContentEncoding
        switch gate.contentEncoding(request, refuse: { status($0, code: 3, $1, encoding) }) {
        case .success(let value): compression = value
        case .failure(let refusal): return refusal.response
        }
        ReceiverIngest(sink: sink, counters: counters).ingest(request.body, signal: signal, format: encoding, compression: compression,
                                                             limits: config.server.decodeLimits) { outcome in reply(self.answer(outcome, signal: signal, encoding)) }
        return nil
    }

    /// The google.rpc.Code for a refusal's HTTP status: UNAUTHENTICATED (16) for
    /// 401, INVALID_ARGUMENT (3) for the rest.
    private static func statusCode(_ status: HTTPResponseStatus) -> Int {
        status == .unauthorized ? 16 : 3
    }

    private func answer(_ outcome: ReceiverIngestOutcome, signal: OTLPSignal, _ encoding: OTLPPayloadFormat) -> HTTPServerResponse {
        switch outcome {
        case .accepted(_, let rejected, let message):
            return success(signal, rejected: rejected, message: message, encoding)
        case .refused(.unprocessable(let why), _):
            return status(.badRequest, code: 3, why, encoding)  // INVALID_ARGUMENT: not worth a retry
        case .refused(let reason, let retryAfter):
            let code = reason.httpStatus == 429 ? 8 : 14  // RESOURCE_EXHAUSTED, UNAVAILABLE
            return retryLater(HTTPResponseStatus(statusCode: reason.httpStatus), code: code, reason.description, retryAfter, encoding)
        case .undecodable(let error):
            switch error.kind {
            case .tooLarge: return status(.payloadTooLarge, code: 3, error.description, encoding)
            case .unsupported: return status(.unsupportedMediaType, code: 3, error.description, encoding)
            case .outOfMemory: return retryLater(.serviceUnavailable, code: 14, error.description, .seconds(1), encoding)
            case .malformed, .tooDeep, .badCompression: return status(.badRequest, code: 3, error.description, encoding)
            }
        }
    }

    // MARK: Answers

    /// `Export*ServiceResponse`: empty, or with `partial_success` when processors
    /// dropped items on purpose (clients must not retry those).
    private func success(_ signal: OTLPSignal, rejected: Int, message: String?, _ encoding: OTLPPayloadFormat) -> HTTPServerResponse {
        switch encoding {
        case .protobuf:
            return HTTPServerResponse(status: .ok, contentType: "application/x-protobuf", body: exportResponseProtobuf(rejected: rejected, message: message))
        case .json:
            var out = JSONOutput()
            if rejected > 0 {
                let key: StaticString = switch signal {
                case .logs: "{\"partialSuccess\":{\"rejectedLogRecords\":\""
                case .traces: "{\"partialSuccess\":{\"rejectedSpans\":\""
                case .metrics: "{\"partialSuccess\":{\"rejectedDataPoints\":\""
                }
                out.append(ascii: key)
                out.appendInt(Int64(rejected))
                out.append(ascii: "\",\"errorMessage\":")
                out.appendString(message ?? "")
                out.append(ascii: "}}")
            } else {
                out.append(ascii: "{}")
            }
            return HTTPServerResponse(status: .ok, contentType: "application/json", body: out.bytes)
        }
    }

    private func retryLater(_ httpStatus: HTTPResponseStatus, code: Int, _ message: String, _ after: Duration, _ encoding: OTLPPayloadFormat) -> HTTPServerResponse {
        var response = status(httpStatus, code: code, message, encoding)
        response.headers.add(name: "Retry-After", value: String(max(1, after.components.seconds)))
        return response
    }

    /// A `google.rpc.Status` body in the request's encoding.
    private func status(_ httpStatus: HTTPResponseStatus, code: Int, _ message: String, _ encoding: OTLPPayloadFormat) -> HTTPServerResponse {
        switch encoding {
        case .protobuf:
            var writer = ProtobufWriter()
            writer.varintField(1, UInt64(code))
            writer.stringField(2, message)
            return HTTPServerResponse(status: httpStatus, contentType: "application/x-protobuf", body: writer.bytes)
        case .json:
            var out = JSONOutput()
            out.append(ascii: "{\"code\":")
            out.appendInt(Int64(code))
            out.append(ascii: ",\"message\":")
            out.appendString(message)
            out.append(ascii: "}")
            return HTTPServerResponse(status: httpStatus, contentType: "application/json", body: out.bytes)
        }
    }
}

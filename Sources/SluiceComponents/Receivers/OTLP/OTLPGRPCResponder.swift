// OTLP/gRPC: the unary Export calls of the logs, trace and metrics services
// (https://opentelemetry.io/docs/specs/otlp/#otlpgrpc), over the HTTP/2 mapping of
// https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md. The request's one
// length-prefixed message goes through the same ingest as OTLP/HTTP; the outcome
// comes back as a gRPC status in trailers.
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

struct OTLPGRPCResponder: ReplyingResponder {
    let id: ComponentID
    let config: OTLPReceiverConfig.GRPC
    let sink: any ReceiverSink
    let counters: ReceiverCounters

    /// `/{package}.{Service}/{Method}` for the three services.
    static let paths: [String: OTLPSignal] = [
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export": .logs,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export": .traces,
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export": .metrics,
    ]

    /// What `grpc-accept-encoding` offers: everything SluiceOTLP's Decompression reads.
    static let acceptEncoding = "identity, gzip, deflate, zstd"

    /// The server's own answers (body over the limit, request stalled) as gRPC
    /// statuses for gRPC clients; anything else gets the plain HTTP error, since it
    /// would not read a status from trailers.
    func errorResponse(_ httpStatus: HTTPResponseStatus, message: String, requestHeaders: HTTPHeaders) -> HTTPServerResponse {
        counters.badRequests.increment()
        guard Self.isGRPC(requestHeaders) else { return .text(httpStatus, message + "\n") }
        switch httpStatus {
        case .payloadTooLarge: return GRPCStatus(.resourceExhausted, message).trailersOnlyResponse()
        // The client stopped sending before its message was whole: its deadline
        // is the likeliest reason, and OTLP clients retry DEADLINE_EXCEEDED.
        case .requestTimeout: return GRPCStatus(.deadlineExceeded, message).trailersOnlyResponse()
        default: return GRPCStatus(.internal, message).trailersOnlyResponse()
        }
    }

    /// Answers through `reply`: at once when the call is refused, after the pipeline
    /// logs have the data when it is taken.
    func handle(_ request: HTTPServerRequest, reply: @escaping @Sendable (HTTPServerResponse) -> Void) {
        switch check(request) {
        case .answer(let response):
            reply(response)
        case .ingest(let signal, let message, let compression):
            let limits = OTLPDecodeLimits(maxBodyBytes: config.maxRecvMsgSize, maxNestingDepth: config.maxNestingDepth)
            ReceiverIngest(sink: sink, counters: counters).ingest(message, signal: signal, format: .protobuf, compression: compression,
                                                             limits: limits) { outcome in reply(Self.answer(outcome)) }
        }
    }

    private enum Checked {
        case answer(HTTPServerResponse)
        case ingest(OTLPSignal, ByteBuffer, ContentEncoding)
    }

    /// Everything a call must pass before its message is decoded, in the order a
    /// client can fix it: transport, method, content type, service, credentials,
    /// encoding, framing.
    private func check(_ request: HTTPServerRequest) -> Checked {
        guard request.version.major == 2 else {
            counters.badRequests.increment()
            return .answer(.text(.httpVersionNotSupported,
                                 "gRPC needs HTTP/2 and this request came over HTTP/\(request.version.major).\(request.version.minor); "
                                     + "use a gRPC client, or send OTLP/HTTP to the receiver's http endpoint\n"))
        }
        guard request.method == .POST else {
            counters.badRequests.increment()
            var response = HTTPServerResponse.text(.methodNotAllowed, "gRPC calls use POST\n")
            response.headers.add(name: "Allow", value: "POST")
            return .answer(response)
        }
        // "If Content-Type does not begin with "application/grpc", gRPC servers
        // SHOULD respond with HTTP status of 415": a 200 would look like success.
        guard Self.isGRPC(request.headers) else {
            counters.badRequests.increment()
            let contentType = request.headers.first(name: "content-type") ?? ""
            return .answer(.text(.unsupportedMediaType, "unsupported content-type '\(contentType)'; OTLP/gRPC sends application/grpc\n"))
        }
        guard let signal = Self.paths[String(request.path)] else {
            counters.badRequests.increment()
            return .answer(GRPCStatus(.unimplemented, "unknown method \(request.path); this receiver serves the OTLP Export methods").trailersOnlyResponse())
        }
        if let auth = config.auth, let reason = auth.authenticator.authenticate(header: { request.headers.first(name: $0) }) {
            counters.authFailures.increment()
            return .answer(GRPCStatus(.unauthenticated, "unauthenticated: \(reason)").trailersOnlyResponse())
        }
        guard sink.takes(signal) else {
            return .answer(GRPCStatus(.unimplemented, "this receiver is in no \(signal) pipeline").trailersOnlyResponse())
        }
        // https://github.com/grpc/grpc/blob/master/doc/compression.md: an unknown
        // encoding is UNIMPLEMENTED with the encodings the server does accept.
        let header = request.headers.first(name: "grpc-encoding") ?? ""
        guard let encoding = ContentEncoding(headerValue: header) else {
            counters.badRequests.increment()
            return .answer(GRPCStatus(.unimplemented, "unsupported grpc-encoding '\(header)'; use \(Self.acceptEncoding)")
                .trailersOnlyResponse(extraHeaders: HTTPHeaders([("grpc-accept-encoding", Self.acceptEncoding)])))
        }
        let message: GRPCMessage
        do {
            message = try GRPCMessage.single(in: request.body, maxLength: config.maxRecvMsgSize)
        } catch {
            counters.badRequests.increment()
            return .answer(error.trailersOnlyResponse())
        }
        // "An ill-constructed message with its Compressed-Flag bit set but lacking a
        // grpc-encoding entry different from identity in its metadata MUST fail
        // with INTERNAL status."
        if message.compressed && encoding == .identity {
            counters.badRequests.increment()
            return .answer(GRPCStatus(.internal, "the message's compressed flag is set but grpc-encoding names no compression").trailersOnlyResponse())
        }
        return .ingest(signal, message.payload, message.compressed ? encoding : .identity)
    }

    static func isGRPC(_ headers: HTTPHeaders) -> Bool {
        let contentType = (headers.first(name: "content-type") ?? "").lowercased()
        let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        return mediaType == "application/grpc" || mediaType == "application/grpc+proto"
    }

    static func answer(_ outcome: ReceiverIngestOutcome) -> HTTPServerResponse {
        switch outcome {
        case .accepted(_, let rejected, let message):
            let headers = HTTPHeaders([("content-type", "application/grpc"), ("grpc-accept-encoding", acceptEncoding)])
            let body = GRPCMessage.framed(exportResponseProtobuf(rejected: rejected, message: message))
            return HTTPServerResponse(status: .ok, headers: headers, body: body, trailers: GRPCStatus(.ok, "").trailers)
        case .refused(.unprocessable(let why), _):
            return GRPCStatus(.invalidArgument, why).trailersOnlyResponse()
        case .refused(let reason, let retryAfter):
            // A full log is RESOURCE_EXHAUSTED with RetryInfo (retryable for OTLP
            // clients only with it); shutting down, storage and memory are UNAVAILABLE.
            let code: GRPCStatus.Code = reason.httpStatus == 429 ? .resourceExhausted : .unavailable
            return GRPCStatus(code, reason.description, retryAfter: max(retryAfter, .seconds(1))).trailersOnlyResponse()
        case .undecodable(let error):
            switch error.kind {
            case .tooLarge: return GRPCStatus(.resourceExhausted, error.description).trailersOnlyResponse()
            case .outOfMemory: return GRPCStatus(.unavailable, error.description, retryAfter: .seconds(1)).trailersOnlyResponse()
            case .malformed, .tooDeep, .badCompression, .unsupported: return GRPCStatus(.invalidArgument, error.description).trailersOnlyResponse()
            }
        }
    }
}

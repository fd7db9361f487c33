import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

/// OTLP/HTTP request handling: content negotiation, decompression, decoding into a
/// batch, handing it to the pipelines, and the answer the specification asks for.
/// (https://opentelemetry.io/docs/specs/otlp/#otlphttp)
struct OTLPHTTPResponder: HTTPRequestResponder {
    let id: ComponentID
    let config: OTLPReceiverConfig.HTTP
    let sink: any ReceiverSink
    let counters: ReceiverCounters

    enum Encoding { case protobuf, json }

    func respond(to request: HTTPServerRequest, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPServerResponse> {
        let promise = eventLoop.makePromise(of: HTTPServerResponse.self)
        handle(request) { promise.succeed($0) }
        return promise.futureResult
    }

    /// 413 and 408 from the server itself still carry a `google.rpc.Status` in the
    /// request's encoding, as OTLP/HTTP asks of every error.
    func errorResponse(_ httpStatus: HTTPResponseStatus, message: String, requestHeaders: HTTPHeaders) -> HTTPServerResponse {
        counters.badRequests.increment()
        let json = requestHeaders.first(name: "content-type")?.lowercased().hasPrefix("application/json") ?? false
        return status(httpStatus, code: httpStatus == .requestTimeout ? 4 : 3, message, json ? .json : .protobuf)
    }

    /// Answers through `reply`: at once for a request that is refused, and after the
    /// pipeline logs have the data for one that is taken (a disk log answers after
    /// its write, and after fsync when that is asked for).
    func handle(_ request: HTTPServerRequest, reply: @escaping @Sendable (HTTPServerResponse) -> Void) {
        let origin = request.headers.first(name: "origin")
        let cors = config.cors
        let withCORS: @Sendable (HTTPServerResponse) -> Void = { response in
            var response = response
            if let origin, let cors, cors.allows(origin: origin) {
                response.headers.replaceOrAdd(name: "Access-Control-Allow-Origin", value: origin)
                response.headers.add(name: "Vary", value: "Origin")
            }
            reply(response)
        }
        route(request, reply: withCORS)
    }

    private func route(_ request: HTTPServerRequest, reply: @escaping @Sendable (HTTPServerResponse) -> Void) {
        if let early = decode(request, reply: reply) { reply(early) }
    }

    /// Decodes the request and hands it to the pipelines, or returns the answer that
    /// refuses it.
    private func decode(_ request: HTTPServerRequest, reply: @escaping @Sendable (HTTPServerResponse) -> Void) -> HTTPServerResponse? {
        guard let signal = config.paths.first(where: { $0.value == request.path })?.key else {
            return .text(.notFound, "unknown path \(request.path); OTLP/HTTP paths are \(config.paths.values.sorted().joined(separator: ", "))\n")
        }
        if request.method == .OPTIONS { return preflight(request) }
        guard request.method == .POST else {
            var response = HTTPServerResponse.text(.methodNotAllowed, "use POST\n")
            response.headers.add(name: "Allow", value: "POST, OPTIONS")
            return response
        }
        let contentType = (request.headers.first(name: "content-type") ?? "").lowercased()
        let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        let encoding: Encoding
        switch mediaType {
        case "application/x-protobuf", "application/protobuf": encoding = .protobuf
        case "application/json": encoding = .json
        default:
            counters.badRequests.increment()
            return .text(.unsupportedMediaType, "unsupported Content-Type '\(contentType)'; send application/x-protobuf or application/json\n")
        }
        guard sink.takes(signal) else {
            return status(.notFound, code: 12, "this receiver is in no \(signal) pipeline", encoding)
        }
        let header = request.headers.first(name: "content-encoding") ?? ""
        guard let contentEncoding = ContentEncoding(headerValue: header) else {
            counters.badRequests.increment()
            return status(.unsupportedMediaType, code: 3, "unsupported Content-Encoding '\(header)'; use gzip, deflate, zstd or none", encoding)
        }
        if let refusal = sink.refusalBeforeDecoding(signal, bodyBytes: request.body.readableBytes) {
            counters.refusedRequests.increment()
            return answer(refusal, signal: signal, items: 0, encoding)
        }
        let limits = OTLPDecodeLimits(maxBodyBytes: config.maxRequestBodySize, maxNestingDepth: config.maxNestingDepth)
        let batch: OTLPBatch
        do {
            if contentEncoding == .identity {
                batch = try request.body.withUnsafeReadableBytes { raw in try decode(raw, encoding, signal, limits) }
            } else {
                let inflated = try request.body.withUnsafeReadableBytes { raw in
                    try Decompression.decompress(raw, encoding: contentEncoding, limit: limits.maxDecompressedBytes)
                }
                batch = try inflated.withUnsafeBytes { raw in try decode(raw, encoding, signal, limits) }
            }
        } catch let error as OTLPDecodeError {
            counters.badRequests.increment()
            switch error.kind {
            case .tooLarge: return status(.payloadTooLarge, code: 3, error.description, encoding)
            case .unsupported: return status(.unsupportedMediaType, code: 3, error.description, encoding)
            case .outOfMemory: return retryLater(.serviceUnavailable, code: 14, error.description, .seconds(1), encoding)
            case .malformed, .tooDeep, .badCompression: return status(.badRequest, code: 3, error.description, encoding)
            }
        } catch {
            counters.badRequests.increment()
            return status(.badRequest, code: 3, "\(error)", encoding)
        }
        let items = batch.itemCount
        counters.received(signal).add(items)
        sink.accept(batch) { result in reply(self.answer(result, signal: signal, items: items, encoding)) }
        return nil
    }

    private func answer(_ result: AcceptResult, signal: OTLPSignal, items: Int, _ encoding: Encoding) -> HTTPServerResponse {
        switch result {
        case .accepted(let rejected, let message):
            counters.accepted(signal).add(items - rejected)
            counters.dropped(signal).add(rejected)
            return success(signal, rejected: rejected, message: message, encoding)
        case .refused(let reason, let retryAfter):
            counters.refused(signal).add(items)
            let code = reason.httpStatus == 429 ? 8 : 14  // RESOURCE_EXHAUSTED, UNAVAILABLE
            return retryLater(HTTPResponseStatus(statusCode: reason.httpStatus), code: code, reason.description, retryAfter, encoding)
        }
    }

    private func decode(_ raw: UnsafeRawBufferPointer, _ encoding: Encoding, _ signal: OTLPSignal, _ limits: OTLPDecodeLimits) throws(OTLPDecodeError) -> OTLPBatch {
        switch encoding {
        case .protobuf: try OTLPBatch.decode(protobuf: raw, signal: signal, limits: limits)
        case .json: try OTLPBatch.decode(json: raw, signal: signal, limits: limits)
        }
    }

    private func preflight(_ request: HTTPServerRequest) -> HTTPServerResponse {
        var response = HTTPServerResponse(status: .noContent)
        guard let cors = config.cors, let origin = request.headers.first(name: "origin"), cors.allows(origin: origin) else { return response }
        response.headers.add(name: "Access-Control-Allow-Methods", value: "POST")
        let requested = request.headers.first(name: "access-control-request-headers") ?? ""
        let allowed = ["content-type", "content-encoding"] + cors.allowedHeaders.map { $0.lowercased() }
        let granted = requested.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { allowed.contains($0.lowercased()) || cors.allowedHeaders.contains("*") }
        if !granted.isEmpty { response.headers.add(name: "Access-Control-Allow-Headers", value: granted.joined(separator: ", ")) }
        if let maxAge = cors.maxAge { response.headers.add(name: "Access-Control-Max-Age", value: String(maxAge)) }
        return response
    }

    // MARK: Answers

    /// `Export*ServiceResponse`: empty, or with `partial_success` when processors
    /// dropped items on purpose (clients must not retry those).
    private func success(_ signal: OTLPSignal, rejected: Int, message: String?, _ encoding: Encoding) -> HTTPServerResponse {
        switch encoding {
        case .protobuf:
            var body: [UInt8] = []
            if rejected > 0 {
                var inner = ProtobufWriter()
                inner.varintField(1, UInt64(rejected))
                inner.stringField(2, message ?? "")
                var outer = ProtobufWriter()
                outer.bytesField(1, inner.bytes)
                body = outer.bytes
            }
            return HTTPServerResponse(status: .ok, contentType: "application/x-protobuf", body: body)
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

    private func retryLater(_ httpStatus: HTTPResponseStatus, code: Int, _ message: String, _ after: Duration, _ encoding: Encoding) -> HTTPServerResponse {
        var response = status(httpStatus, code: code, message, encoding)
        response.headers.add(name: "Retry-After", value: String(max(1, after.components.seconds)))
        return response
    }

    /// A `google.rpc.Status` body in the request's encoding.
    private func status(_ httpStatus: HTTPResponseStatus, code: Int, _ message: String, _ encoding: Encoding) -> HTTPServerResponse {
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

/// The few protobuf fields an answer needs, written by hand.
struct ProtobufWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    mutating func varintField(_ number: UInt64, _ value: UInt64) {
        varint(number << 3)
        varint(value)
    }

    mutating func bytesField(_ number: UInt64, _ value: [UInt8]) {
        varint(number << 3 | 2)
        varint(UInt64(value.count))
        bytes += value
    }

    mutating func stringField(_ number: UInt64, _ value: String) {
        guard !value.isEmpty else { return }
        bytesField(number, Array(value.utf8))
    }
}

/// Per receiver and signal: received = accepted + refused + dropped.
struct ReceiverCounters: Sendable {
    let receivedBySignal: [OTLPSignal: Counter]
    let acceptedBySignal: [OTLPSignal: Counter]
    let refusedBySignal: [OTLPSignal: Counter]
    let droppedBySignal: [OTLPSignal: Counter]
    let badRequests: Counter
    /// Requests refused before decoding (their items are not known).
    let refusedRequests: Counter

    init(id: ComponentID, transport: String, metrics: MetricsRegistry) {
        func family(_ name: String, _ help: String) -> [OTLPSignal: Counter] {
            Dictionary(uniqueKeysWithValues: OTLPSignal.allCases.map { signal in
                (signal, metrics.counter(name, help, labels: [("receiver", id.description), ("transport", transport), ("signal", signal.rawValue)]))
            })
        }
        receivedBySignal = family("sluice_receiver_received_items_total", "Items in requests that decoded.")
        acceptedBySignal = family("sluice_receiver_accepted_items_total", "Items appended to the pipeline log and acknowledged.")
        refusedBySignal = family("sluice_receiver_refused_items_total", "Items refused with a retryable answer (log full, memory limit).")
        droppedBySignal = family("sluice_receiver_dropped_items_total", "Items dropped on purpose by processors (reported as partial success).")
        refusedRequests = metrics.counter("sluice_receiver_refused_requests_total", "Requests refused before decoding because a pipeline log was full.",
                                          labels: [("receiver", id.description), ("transport", transport)])
        badRequests = metrics.counter("sluice_receiver_bad_requests_total", "Requests refused as malformed, oversized or of an unsupported type.",
                                      labels: [("receiver", id.description), ("transport", transport)])
    }

    func received(_ s: OTLPSignal) -> Counter { receivedBySignal[s]! }
    func accepted(_ s: OTLPSignal) -> Counter { acceptedBySignal[s]! }
    func refused(_ s: OTLPSignal) -> Counter { refusedBySignal[s]! }
    func dropped(_ s: OTLPSignal) -> Counter { droppedBySignal[s]! }
}

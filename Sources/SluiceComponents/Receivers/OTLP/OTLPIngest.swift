// The part of receiving that OTLP/HTTP and OTLP/gRPC share: a request's payload
// is checked against the pipeline logs' room, decompressed under a cap, decoded into
// a batch, handed to the pipelines, and counted. Each transport then turns the
// outcome into its own answer (HTTP status and google.rpc.Status body; gRPC status
// in trailers), so both refuse, count and acknowledge the same way.
import NIOCore
import SluiceCore
import SluiceNet

/// How a request's payload is encoded (OTLP/HTTP offers both; gRPC is protobuf).
enum OTLPPayloadFormat: Sendable { case protobuf, json }

/// How one request ended, before the transport words its answer.
enum OTLPIngestOutcome: Sendable, Equatable {
    /// In every pipeline log; `rejected` items were dropped on purpose by processors
    /// (partial success).
    case accepted(rejected: Int, message: String?)
    /// Not taken now; the client should retry after `retryAfter`.
    case refused(RefusalReason, retryAfter: Duration)
    /// The payload does not decompress or decode, or is over a limit.
    case undecodable(OTLPDecodeError)
}

struct OTLPIngest: Sendable {
    let sink: any ReceiverSink
    let counters: ReceiverCounters

    /// Calls `completion` once: at once when the payload is refused or does not
    /// decode, after the pipeline logs have it when it is taken.
    func ingest(_ payload: ByteBuffer, signal: OTLPSignal, format: OTLPPayloadFormat, compression: ContentEncoding,
                limits: OTLPDecodeLimits, completion: @escaping @Sendable (OTLPIngestOutcome) -> Void) {
        if let refusal = sink.refusalBeforeDecoding(signal, bodyBytes: payload.readableBytes) {
            counters.refusedRequests.increment()
            completion(outcome(refusal, signal: signal, items: 0))
            return
        }
        let batch: OTLPBatch
        do {
            batch = try Self.decode(payload, signal: signal, format: format, compression: compression, limits: limits)
        } catch {
            counters.badRequests.increment()
            completion(.undecodable(error))
            return
        }
        let items = batch.itemCount
        counters.received(signal).add(items)
        sink.accept(batch) { result in completion(self.outcome(result, signal: signal, items: items)) }
    }

    private static func decode(_ payload: ByteBuffer, signal: OTLPSignal, format: OTLPPayloadFormat, compression: ContentEncoding,
                               limits: OTLPDecodeLimits) throws(OTLPDecodeError) -> OTLPBatch {
        do {
            // An uncompressed payload is decoded where it lies, without a copy.
            if compression == .identity {
                return try payload.withUnsafeReadableBytes { raw in try decode(raw, signal, format, limits) }
            }
            let inflated = try payload.withUnsafeReadableBytes { raw in
                try Decompression.decompress(raw, encoding: compression, limit: limits.maxDecompressedBytes)
            }
            return try inflated.withUnsafeBytes { raw in try decode(raw, signal, format, limits) }
        } catch let error as OTLPDecodeError {
            throw error
        } catch {
            throw OTLPDecodeError(.malformed, "\(error)")
        }
    }

    private static func decode(_ raw: UnsafeRawBufferPointer, _ signal: OTLPSignal, _ format: OTLPPayloadFormat,
                               _ limits: OTLPDecodeLimits) throws(OTLPDecodeError) -> OTLPBatch {
        switch format {
        case .protobuf: try OTLPBatch.decode(protobuf: raw, signal: signal, limits: limits)
        case .json: try OTLPBatch.decode(json: raw, signal: signal, limits: limits)
        }
    }

    private func outcome(_ result: AcceptResult, signal: OTLPSignal, items: Int) -> OTLPIngestOutcome {
        switch result {
        case .accepted(let rejected, let message):
            counters.accepted(signal).add(items - rejected)
            counters.dropped(signal).add(rejected)
            return .accepted(rejected: rejected, message: message)
        case .refused(let reason, let retryAfter):
            counters.refused(signal).add(items)
            return .refused(reason, retryAfter: retryAfter)
        }
    }
}

/// A transport's responder: it answers through `reply`, at once for a request it
/// refuses and after the pipeline logs have the data for one it takes.
protocol OTLPTransportResponder: HTTPRequestResponder {
    func handle(_ request: HTTPServerRequest, reply: @escaping @Sendable (HTTPServerResponse) -> Void)
}

extension OTLPTransportResponder {
    func respond(to request: HTTPServerRequest, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPServerResponse> {
        let promise = eventLoop.makePromise(of: HTTPServerResponse.self)
        handle(request) { promise.succeed($0) }
        return promise.futureResult
    }
}

/// `Export{Logs,Trace,Metrics}ServiceResponse` in protobuf: empty, or with
/// `partial_success` (field 1: rejected count as field 1, error_message as field 2)
/// when processors dropped items on purpose; clients must not retry those.
/// (https://opentelemetry.io/docs/specs/otlp/#partial-success)
func exportResponseProtobuf(rejected: Int, message: String?) -> [UInt8] {
    guard rejected > 0 else { return [] }
    var inner = ProtobufWriter()
    inner.varintField(1, UInt64(rejected))
    inner.stringField(2, message ?? "")
    var outer = ProtobufWriter()
    outer.bytesField(1, inner.bytes)
    return outer.bytes
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

    /// Wire type 1: eight bytes, little-endian (fixed64, double).
    mutating func fixed64Field(_ number: UInt64, _ value: UInt64) {
        varint(number << 3 | 1)
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
}

/// Per receiver, transport and signal: received = accepted + refused + dropped.
struct ReceiverCounters: Sendable {
    let receivedBySignal: [OTLPSignal: Counter]
    let acceptedBySignal: [OTLPSignal: Counter]
    let refusedBySignal: [OTLPSignal: Counter]
    let droppedBySignal: [OTLPSignal: Counter]
    let badRequests: Counter
    /// Requests refused before decoding (their items are not known).
    let refusedRequests: Counter
    /// Requests turned away by the protocol's `auth.authenticator`.
    let authFailures: Counter

    init(id: ComponentID, transport: String, metrics: MetricsRegistry) {
        func family(_ name: String, _ help: String) -> [OTLPSignal: Counter] {
            Dictionary(uniqueKeysWithValues: OTLPSignal.allCases.map { signal in
                (signal, metrics.counter(name, help, labels: [("receiver", id.description), ("transport", transport), ("signal", signal.rawValue)]))
            })
        }
        let labels = [("receiver", id.description), ("transport", transport)]
        receivedBySignal = family("sluice_receiver_received_items_total", "Items in requests that decoded.")
        acceptedBySignal = family("sluice_receiver_accepted_items_total", "Items appended to the pipeline log and acknowledged.")
        refusedBySignal = family("sluice_receiver_refused_items_total", "Items refused: with a retryable answer (log full, memory limit), or because a condition failed under error_mode: propagate.")
        droppedBySignal = family("sluice_receiver_dropped_items_total", "Items dropped on purpose by processors (reported as partial success).")
        refusedRequests = metrics.counter("sluice_receiver_refused_requests_total", "Requests refused before decoding because a pipeline log was full.",
                                          labels: labels)
        badRequests = metrics.counter("sluice_receiver_bad_requests_total", "Requests refused as malformed, oversized or of an unsupported type.",
                                      labels: labels)
        authFailures = metrics.counter("sluice_receiver_auth_failures_total", "Requests refused because they did not authenticate.",
                                       labels: labels)
    }

    func received(_ s: OTLPSignal) -> Counter { receivedBySignal[s]! }
    func accepted(_ s: OTLPSignal) -> Counter { acceptedBySignal[s]! }
    func refused(_ s: OTLPSignal) -> Counter { refusedBySignal[s]! }
    func dropped(_ s: OTLPSignal) -> Counter { droppedBySignal[s]! }
}

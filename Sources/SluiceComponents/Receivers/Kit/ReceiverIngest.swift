// Receiving, as every receiver does it: a request's payload is checked against the
// pipeline logs' room, decompressed under a cap, decoded into a batch by the
// receiver's own decoder, handed to the pipelines, and counted. Each protocol then
// turns the outcome into its own answer (an OTLP/HTTP status and google.rpc.Status
// body, a gRPC status in trailers, the events receiver's JSON), so all refuse,
// count and acknowledge the same way.
import NIOCore
import SluiceCore
import SluiceNet

/// How one request ended, before the protocol words its answer.
enum ReceiverIngestOutcome: Sendable, Equatable {
    /// In every pipeline log; `rejected` of the `items` were dropped on purpose by
    /// processors (partial success).
    case accepted(items: Int, rejected: Int, message: String?)
    /// Not taken now; the client should retry after `retryAfter`.
    case refused(RefusalReason, retryAfter: Duration)
    /// The payload does not decompress or decode, or is over a limit.
    case undecodable(OTLPDecodeError)
}

/// A receiver's decoder: the (decompressed) body in, a batch out, or `nil` when the
/// body holds nothing to deliver (an empty array of events).
typealias ReceiverDecoder = (UnsafeRawBufferPointer) throws(OTLPDecodeError) -> OTLPBatch?

struct ReceiverIngest: Sendable {
    let sink: any ReceiverSink
    let counters: ReceiverCounters

    /// Calls `completion` once: at once when the payload is refused or does not
    /// decode, after the pipeline logs have it when it is taken.
    func ingest(_ payload: ByteBuffer, signal: OTLPSignal, compression: ContentEncoding, limits: OTLPDecodeLimits,
                decode: ReceiverDecoder, completion: @escaping @Sendable (ReceiverIngestOutcome) -> Void) {
        if let refusal = sink.refusalBeforeDecoding(signal, bodyBytes: payload.readableBytes) {
            counters.refusedRequests.increment()
            completion(outcome(refusal, signal: signal, items: 0))
            return
        }
        let decoded: OTLPBatch?
        do {
            decoded = try Self.decode(payload, compression: compression, limits: limits, decode)
        } catch {
            counters.badRequests.increment()
            completion(.undecodable(error))
            return
        }
        guard let batch = decoded else {
            completion(.accepted(items: 0, rejected: 0, message: nil))
            return
        }
        let items = batch.itemCount
        counters.received(signal).add(items)
        sink.accept(batch) { result in completion(self.outcome(result, signal: signal, items: items)) }
    }

    private static func decode(_ payload: ByteBuffer, compression: ContentEncoding, limits: OTLPDecodeLimits,
                               _ decode: ReceiverDecoder) throws(OTLPDecodeError) -> OTLPBatch? {
        do {
            // An uncompressed payload is decoded where it lies, without a copy.
            if compression == .identity {
                return try payload.withUnsafeReadableBytes { raw in try decode(raw) }
            }
            let inflated = try payload.withUnsafeReadableBytes { raw in
                try Decompression.decompress(raw, encoding: compression, limit: limits.maxDecompressedBytes)
            }
            return try inflated.withUnsafeBytes { raw in try decode(raw) }
        } catch let error as OTLPDecodeError {
            throw error
        } catch {
            throw OTLPDecodeError(.malformed, "\(error)")
        }
    }

    private func outcome(_ result: AcceptResult, signal: OTLPSignal, items: Int) -> ReceiverIngestOutcome {
        switch result {
        case .accepted(let rejected, let message):
            counters.accepted(signal).add(items - rejected)
            counters.dropped(signal).add(rejected)
            return .accepted(items: items, rejected: rejected, message: message)
        case .refused(let reason, let retryAfter):
            counters.refused(signal).add(items)
            return .refused(reason, retryAfter: retryAfter)
        }
    }
}

/// A protocol's responder: it answers through `reply`, at once for a request it
/// refuses and after the pipeline logs have the data for one it takes.
protocol ReplyingResponder: HTTPRequestResponder {
    func handle(_ request: HTTPServerRequest, reply: @escaping @Sendable (HTTPServerResponse) -> Void)
}

extension ReplyingResponder {
    func respond(to request: HTTPServerRequest, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPServerResponse> {
        let promise = eventLoop.makePromise(of: HTTPServerResponse.self)
        handle(request) { promise.succeed($0) }
        return promise.futureResult
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

// The `elasticsearch` exporter: log records and spans to the bulk API, with the
// OpenTelemetry Collector's option names (docs/elasticsearch.md).
//
// ElasticsearchConfig.swift reads the section; BulkEncoder.swift writes documents
// in each mapping mode; IndexName.swift renders dated index names; BulkResponse.swift
// reads answers item by item. Packing under flush.bytes, splitting on 413, per-item
// retries and the dead-letter path are the exporter kit's (Exporters/Kit/).
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet
import Synchronization

public struct ElasticsearchExporterFactory: ExporterFactory {
    public let type = "elasticsearch"
    public let signals: Set<OTLPSignal> = [.logs, .traces]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        guard let settings = ElasticsearchConfig(config, extensions: context.extensions) else { return nil }
        let nodes = settings.endpoints.map { HTTPClient(endpoint: $0, settings: settings.http.client) as any HTTPTransport }
        return ElasticsearchExporter(id: id, config: settings, nodes: nodes, logger: context.logger, metrics: context.metrics)
    }
}

final class ElasticsearchExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs, .traces]
    let config: ElasticsearchConfig
    var retry: RetrySettings { config.http.retry }
    var queue: QueueSettings { config.http.queue }
    let encoder: BulkEncoder
    let nodes: NodePool
    let logger: Logger
    let secrets: SecretMask
    private let progressMemory = ProgressMemory()
    private let metrics: MetricsRegistry
    private let payloadBytes: Counter
    private let splits: Counter
    /// Bytes of raw NDJSON per compressed byte, as last measured (for the packer).
    private let ratio = Mutex<Double>(4)

    init(id: ComponentID, config: ElasticsearchConfig, nodes: [any HTTPTransport], logger: Logger, metrics: MetricsRegistry = .shared,
         now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.id = id
        self.config = config
        self.logger = logger
        self.metrics = metrics
        encoder = BulkEncoder(config)
        secrets = SecretMask(config.secrets)
        self.nodes = NodePool(nodes, paths: config.endpoints.map(\.path), quarantine: config.nodeQuarantine, now: now)
        let labels = [("exporter", id.description)]
        payloadBytes = metrics.counter("sluice_elasticsearch_payload_bytes_total", "Bytes of bulk requests sent (as sent, compressed or not).", labels: labels)
        splits = metrics.counter("sluice_elasticsearch_split_payloads_total", "Bulk requests split in halves after a 413.", labels: labels)
    }

    func start() async throws {
        logger.info("elasticsearch exporter sending", metadata: [
            "exporter": "\(id)", "endpoints": "\(config.endpoints.map { "\($0.scheme)://\($0.authority)" }.joined(separator: ","))",
            "mapping": "\(config.mode.rawValue)", "logs_index": "\(config.logsIndex)", "compression": "\(config.http.gzip ? "gzip" : "none")"])
        for warning in config.http.warnings { logger.warning("\(warning)", metadata: ["exporter": "\(id)"]) }
    }

    func shutdown() async { await nodes.close() }

    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        guard signals.contains(signal) else { return .permanent(reason: "elasticsearch exports logs and traces, not \(signal)") }
        let encoded = encoder.encode(batches, signal: signal)
        let documents = encoded.records
        guard documents.count > 0 else { return .delivered }
        var progress = progressMemory.take(batches, records: documents.count)
        for (record, reason) in encoded.unencodable { progress.refuse(record, reason) }
        let delivery = PayloadDelivery(
            pack: { order, progress in self.pack(documents, order, &progress) },
            send: { payload in await self.post(payload) },
            onSplit: { self.splits.increment() },
            noun: "document")
        let result = await delivery.run(&progress)
        if let retry = result.retry {
            progressMemory.keep(progress)
            return .retryable(reason: redact(retry.reason), after: retry.after)
        }
        return PayloadDelivery.outcome(progress, result, records: documents, batches: batches, signal: signal, noun: "document", redact: redact)
    }

    /// Bulk requests of at most `flush.bytes` before compression (as the Collector
    /// counts it); a document larger than that alone is sent alone.
    private func pack(_ documents: EncodedRecords, _ order: [Int], _ progress: inout ExportProgress) -> [Payload] {
        var packer = PayloadPacker(limit: config.flushBytes, gzip: config.http.gzip,
                                   ratio: ratio.withLock { $0 }, level: config.http.gzipLevel)
        packer.limitsRawBytes = true
        // Elasticsearch's own limit (http.max_content_length) is 100 MB; a single
        // document up to that is tried, and a 413 refuses it alone.
        packer.singleRecordLimit = 100 << 20
        let (payloads, tooLarge) = packer.pack(documents, order)
        ratio.withLock { $0 = packer.ratio }
        for item in tooLarge {
            progress.refuse(item.record, "a document of \(item.bytes) bytes is over Elasticsearch's 100 MB request limit")
        }
        return payloads
    }

    private func post(_ payload: Payload) async -> PayloadAnswer {
        var base: [(String, String)] = [("Content-Type", "application/x-ndjson")]
        if let authorization = config.authorization { base.append(("Authorization", authorization)) }
        var headers = config.http.headers(base)
        if payload.gzipped { headers.add(name: "Content-Encoding", value: "gzip") }
        let (response, place) = await nodes.send { path in
            var target = path + "/_bulk"
            if let pipeline = config.pipeline { target += "?pipeline=" + (pipeline.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? pipeline) }
            return HTTPClientRequest(target: target, headers: headers, body: ByteBuffer(bytes: payload.body))
        }
        guard let response else {
            count("error")
            return .retry("cannot reach Elasticsearch (\(place))", after: nil)
        }
        count(String(response.status.code))
        payloadBytes.add(payload.body.count)
        let reason = "HTTP \(response.status.code) from \(place)/_bulk"
        switch ResponseClass.of(response) {
        case .success:
            guard let results = BulkResponse.results(response.body, retryOn: config.retryOnStatus) else {
                // Unreadable: what was indexed is unknown. Sending again is safe, since
                // `create` with the same ids makes what is there a 409.
                return .retry("\(reason): not a bulk answer: \(ResponseClass.excerpt(response, masking: secrets))", after: nil)
            }
            if results.count == payload.records.count, !results.contains(where: { $0 != .delivered }) { return .accepted }
            return .perRecord(results)
        case .tooLarge:
            return .tooLarge(reason)
        case .unauthorized:
            return .refused("\(reason): \(ResponseClass.excerpt(response, masking: secrets)); check user/password, api_key or the authenticator's credential (not shown here), and that it may write to the index")
        case .retry(let after):
            return .retry("\(reason): \(ResponseClass.excerpt(response, masking: secrets))", after: after)
        case .refused:
            return .refused("\(reason): \(ResponseClass.excerpt(response, masking: secrets))")
        }
    }

    private func count(_ status: String) {
        metrics.counter("sluice_elasticsearch_requests_total", "Bulk requests by HTTP status (error: no answer from any node).",
                        labels: [("exporter", id.description), ("status", status)]).increment()
    }

    /// Credentials must never reach a log line, an error or the dead-letter file,
    /// whatever a server echoes back.
    func redact(_ text: String) -> String { secrets(text) }
}

/// The Elasticsearch nodes of `endpoints`, taken in turn; a node that cannot be
/// reached is skipped for a while (`quarantine`) and the request goes to the next,
/// so one node down costs no delivery while another is up.
final class NodePool: Sendable {
    private let nodes: [any HTTPTransport]
    private let paths: [String]
    private let quarantine: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    private struct State {
        var next = 0
        var downUntil: [ContinuousClock.Instant?]
    }
    private let state: Mutex<State>

    init(_ nodes: [any HTTPTransport], paths: [String], quarantine: Duration, now: @escaping @Sendable () -> ContinuousClock.Instant) {
        self.nodes = nodes
        self.paths = paths.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.quarantine = quarantine
        self.now = now
        state = Mutex(State(downUntil: Array(repeating: nil, count: nodes.count)))
    }

    /// Sends to the next node that is up (all of them in turn, the quarantined last);
    /// nil when none answered. `place` names the node that answered, or every one tried.
    func send(_ request: (_ path: String) -> HTTPClientRequest) async -> (HTTPClientResponse?, place: String) {
        let order: [Int] = state.withLock { s in
            let start = s.next
            s.next = (s.next + 1) % max(1, nodes.count)
            let all = (0..<nodes.count).map { (start + $0) % nodes.count }
            let time = now()
            return all.filter { s.downUntil[$0].map { $0 <= time } ?? true } + all.filter { s.downUntil[$0].map { $0 > time } ?? false }
        }
        var failures: [String] = []
        for i in order {
            do {
                let response = try await nodes[i].send(request(paths[i]))
                state.withLock { $0.downUntil[i] = nil }
                return (response, Self.describe(nodes[i]))
            } catch {
                failures.append("\(Self.describe(nodes[i])): \(error)")
                let until = now() + quarantine
                state.withLock { $0.downUntil[i] = until }
            }
        }
        return (nil, failures.joined(separator: "; "))
    }

    static func describe(_ node: any HTTPTransport) -> String {
        if let client = node as? HTTPClient { return "\(client.endpoint.scheme)://\(client.endpoint.authority)" }
        return "\(type(of: node))"
    }

    func close() async { for node in nodes { await node.close() } }
}

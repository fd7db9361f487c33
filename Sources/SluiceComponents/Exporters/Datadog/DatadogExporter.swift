// The `datadog` exporter: log records to Datadog's logs intake (POST
// /api/v2/logs, a JSON array of entries), with the OpenTelemetry Collector's option
// names (docs/datadog.md).
//
// DatadogConfig.swift reads the section; DatadogLogEncoder.swift writes entries.
// Packing under Datadog's limits (5 MB before compression, 1,000 entries),
// splitting on 413, retries and the dead-letter path are the exporter kit's
// (Exporters/Kit/).
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet
import Synchronization

public struct DatadogExporterFactory: ExporterFactory {
    public let type = "datadog"
    public let signals: Set<OTLPSignal> = [.logs]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        guard let settings = DatadogConfig(config) else { return nil }
        let client = HTTPClient(endpoint: settings.endpoint, settings: settings.http.client)
        return DatadogExporter(id: id, config: settings, transport: client, logger: context.logger, metrics: context.metrics)
    }
}

final class DatadogExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs]
    let config: DatadogConfig
    var retry: RetrySettings { config.http.retry }
    var queue: QueueSettings { config.http.queue }
    let encoder: DatadogLogEncoder
    let transport: any HTTPTransport
    let logger: Logger
    let secrets: SecretMask
    private let progressMemory = ProgressMemory()
    private let metrics: MetricsRegistry
    private let payloadBytes: Counter
    private let splits: Counter
    private let ratio = Mutex<Double>(4)

    /// The wall clock, for the age of entries (a test moves it).
    let now: @Sendable () -> Date

    init(id: ComponentID, config: DatadogConfig, transport: any HTTPTransport, logger: Logger, metrics: MetricsRegistry = .shared,
         now: @escaping @Sendable () -> Date = { Date() }) {
        self.id = id
        self.now = now
        self.config = config
        self.transport = transport
        self.logger = logger
        self.metrics = metrics
        encoder = DatadogLogEncoder(hostname: config.hostname ?? LocalHost.name)
        secrets = SecretMask(config.secrets)
        let labels = [("exporter", id.description)]
        payloadBytes = metrics.counter("sluice_datadog_payload_bytes_total", "Bytes of log payloads sent to Datadog (as sent, compressed or not).", labels: labels)
        splits = metrics.counter("sluice_datadog_split_payloads_total", "Payloads split in halves after a 413.", labels: labels)
    }

    var place: String { "Datadog \(config.endpoint.scheme)://\(config.endpoint.authority)\(config.logsPath)" }

    func start() async throws {
        logger.info("datadog exporter sending", metadata: [
            "exporter": "\(id)", "endpoint": "\(config.endpoint.scheme)://\(config.endpoint.authority)\(config.logsPath)",
            "compression": "\(config.http.gzip ? "gzip" : "none")"])
        for warning in config.http.warnings { logger.warning("\(warning)", metadata: ["exporter": "\(id)"]) }
    }

    func shutdown() async { await transport.close() }

    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        guard signal == .logs else { return .permanent(reason: "datadog exports logs, not \(signal)") }
        let oldest = config.maxAge.map { UInt64(max(0, (now().timeIntervalSince1970 - Double($0.components.seconds)) * 1000)) } ?? 0
        let (entries, tooOld) = encoder.encode(batches, oldest: oldest)
        let delivery = PayloadDelivery(
            pack: { order, _ in self.pack(entries, order) },
            send: { payload in await self.post(payload) },
            onSplit: { self.splits.increment() },
            noun: "log")
        return await delivery.export(entries, batches: batches, signal: signal, memory: progressMemory, redact: redact) { progress in
            // Datadog truncates an entry over 1 MB and still answers 202: the end of
            // the event would be lost without a trace. Such an entry goes to the
            // dead-letter file whole instead.
            for i in 0..<entries.count where progress.isOpen(i) && entries.size(i) > DatadogConfig.maxEntryBytes {
                progress.refuse(i, "a log of \(entries.size(i)) bytes is over Datadog's 1 MB per entry (Datadog would truncate it)")
            }
            // Datadog takes logs up to 18 hours old and drops older ones after a 202.
            // One reason for all of them (the dead-letter file has each record's
            // time), naming the oldest.
            guard let oldest = tooOld.filter({ progress.isOpen($0.key) }).values.min() else { return }
            let age = (Int(self.now().timeIntervalSince1970) - Int(oldest / 1000)) / 3600
            let reason = "older than logs.max_age (\(Self.hours(self.config.maxAge))), the oldest from \(Self.iso(oldest)) (\(age) h old): Datadog takes logs up to 18 hours old and would drop these after accepting them"
            for (i, _) in tooOld where progress.isOpen(i) { progress.refuse(i, reason) }
        }
    }

    /// JSON arrays of at most 1,000 entries and 5 MB before compression (Datadog
    /// counts the uncompressed content). No entry is over the limit alone: those
    /// over 1 MB were refused before packing.
    private func pack(_ entries: EncodedRecords, _ order: [Int]) -> [Payload] {
        var packer = PayloadPacker(limit: DatadogConfig.maxPayloadBytes, gzip: config.http.gzip, maxItems: DatadogConfig.maxEntries,
                                   ratio: ratio.withLock { $0 }, level: config.http.gzipLevel)
        packer.limitsRawBytes = true
        packer.framing = .jsonArray
        let payloads = packer.pack(entries, order).payloads
        ratio.withLock { $0 = packer.ratio }
        return payloads
    }

    /// One payload, and what Datadog's answer means
    /// (https://docs.datadoghq.com/api/latest/logs/#send-logs: 202 accepted, 400
    /// bad payload, 403 bad key, 413 too large, 429 and 5xx retry).
    func post(_ payload: Payload) async -> PayloadAnswer {
        var headers = config.http.headers([("Content-Type", "application/json"), ("DD-API-KEY", config.apiKey)])
        if payload.gzipped { headers.add(name: "Content-Encoding", value: "gzip") }
        let request = HTTPClientRequest(target: config.logsPath, headers: headers, body: ByteBuffer(bytes: payload.body))
        let response: HTTPClientResponse
        do {
            response = try await transport.send(request)
        } catch {
            count("error")
            return .retry("cannot send to \(place): \(error)", after: nil)
        }
        count(String(response.status.code))
        payloadBytes.add(payload.body.count)
        let reason = "HTTP \(response.status.code) from \(place): \(ResponseClass.excerpt(response, masking: secrets))"
        switch ResponseClass.of(response) {
        case .success:
            return .accepted
        case .tooLarge:
            return .tooLarge(reason)
        case .unauthorized:
            return .refused("Datadog refused the API key: \(reason); check api.key (not shown here) and api.site (\(config.site)): a key works only on its own site")
        case .retry(let after):
            return .retry(reason, after: after)
        case .refused:
            return .refused(reason)
        }
    }

    static func hours(_ duration: Duration?) -> String {
        let seconds = duration?.components.seconds ?? 0
        return seconds % 3600 == 0 ? "\(seconds / 3600) h" : seconds % 60 == 0 ? "\(seconds / 60) min" : "\(seconds) s"
    }

    static func iso(_ millis: UInt64) -> String {
        var out = JSONOutput()
        out.appendISOTime(millis * 1_000_000, digits: 3)
        return String(decoding: out.bytes.dropFirst().dropLast(), as: UTF8.self)
    }

    private func count(_ status: String) {
        metrics.counter("sluice_datadog_requests_total", "Requests to Datadog's logs intake by HTTP status (error: no answer).",
                        labels: [("exporter", id.description), ("status", status)]).increment()
    }

    /// The API key must never reach a log line, an error or the dead-letter file.
    func redact(_ text: String) -> String { secrets(text) }
}

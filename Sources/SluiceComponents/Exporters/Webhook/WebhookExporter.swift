// The `webhook` exporter: log records as JSON POSTs to a URL, signed as Standard
// Webhooks (docs/webhooks.md).
//
// Each record becomes an event `{"type":…,"timestamp":…,"data":{…}}` (the spec's
// payload structure); `mode: batch` sends a JSON array of events per request,
// `mode: single` one event per request. `event_types` keeps only the events whose
// type matches a pattern; the rest are counted and not sent. Every request carries
// `webhook-id` (the same on every attempt of the same body), `webhook-timestamp`
// (the attempt's time) and, with a `secret`, `webhook-signature`.
//
// WebhookConfig.swift reads the section; WebhookSignature.swift signs. Packing,
// splitting on 413, retries and the dead-letter path are the exporter kit's.
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

public struct WebhookExporterFactory: ExporterFactory {
    public let type = "webhook"
    public let signals: Set<OTLPSignal> = [.logs]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        guard let settings = WebhookConfig(config, extensions: context.extensions) else { return nil }
        let client = HTTPClient(endpoint: settings.endpoint, settings: settings.http.client)
        return WebhookExporter(id: id, config: settings, transport: client, logger: context.logger, metrics: context.metrics)
    }
}

final class WebhookExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs]
    let config: WebhookConfig
    var retry: RetrySettings { config.http.retry }
    var queue: QueueSettings { config.http.queue }
    let transport: any HTTPTransport
    let logger: Logger
    let secrets: SecretMask
    /// The attempt's time, in Unix seconds (a test moves it).
    let now: @Sendable () -> Date
    private let progressMemory = ProgressMemory()
    private let metrics: MetricsRegistry
    private let filtered: Counter
    private let splits: Counter

    init(id: ComponentID, config: WebhookConfig, transport: any HTTPTransport, logger: Logger, metrics: MetricsRegistry = .shared,
         now: @escaping @Sendable () -> Date = { Date() }) {
        self.id = id
        self.config = config
        self.transport = transport
        self.logger = logger
        self.metrics = metrics
        self.now = now
        secrets = SecretMask(config.secrets)
        let labels = [("exporter", id.description)]
        filtered = metrics.counter("sluice_webhook_filtered_items_total", "Records not sent because their type matches no event_types pattern.", labels: labels)
        splits = metrics.counter("sluice_webhook_split_payloads_total", "Batch requests split in halves after a 413.", labels: labels)
    }

    var place: String { "webhook receiver \(config.endpoint)" }

    func start() async throws {
        logger.info("webhook exporter sending", metadata: [
            "exporter": "\(id)", "endpoint": "\(config.endpoint)", "mode": "\(config.mode.rawValue)",
            "signed": "\(config.signature != nil)",
            "event_types": "\(config.eventTypes.isEmpty ? "*" : config.eventTypes.patterns.map { String($0) }.joined(separator: ","))"])
        for warning in config.http.warnings { logger.warning("\(warning)", metadata: ["exporter": "\(id)"]) }
    }

    func shutdown() async { await transport.close() }

    // MARK: Events

    /// The record's event: `type` is its `event_type` attribute (else its event
    /// name, else `log`), `timestamp` its time, `data` its fields: the attributes at
    /// the top, then `message`, `severity`, `trace_id`, `span_id`, `resource`.
    static func writeEvent(_ doc: inout JSONObjectWriter, _ context: LogRecordContext, type: String) {
        let record = context.record
        doc.begin()
        if doc.key("type") { doc.out.appendString(type) }
        doc.time("timestamp", record.effectiveTimeUnixNano, digits: 3)
        if doc.key("data") {
            var inner = JSONObjectWriter()
            swap(&inner.out, &doc.out)
            inner.out.append(UInt8(ascii: "{"))
            inner.members(record.attributes)
            if let body = record.body, inner.key("message") { body.writeText(to: &inner.out) }
            inner.string("severity", record.severityText)
            inner.hex("trace_id", record.traceID)
            inner.hex("span_id", record.spanID)
            inner.object("resource", context.resource)
            inner.end()
            swap(&inner.out, &doc.out)
        }
        doc.end()
    }

    static func eventType(_ record: LogRecordView) -> String {
        if let value = record.attributes["event_type"], case .string(let text) = value.value, !text.isEmpty { return text.string }
        if !record.eventName.isEmpty { return record.eventName.string }
        return "log"
    }

    func encode(_ batches: [OTLPBatch]) -> (records: EncodedRecords, skipped: Int) {
        let filter = config.eventTypes
        return EncodedRecords.logs(batches) { doc, context in
            let type = Self.eventType(context.record)
            guard filter.isEmpty || filter.matches(type) else { return false }
            Self.writeEvent(&doc, context, type: type)
            return true
        }
    }

    // MARK: Export

    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        guard signal == .logs else { return .permanent(reason: "webhook exports logs, not \(signal)") }
        let (events, skipped) = encode(batches)
        let delivery = PayloadDelivery(
            pack: { order, _ in self.pack(events, order) },
            send: { payload in await self.post(payload, events) },
            onSplit: { self.splits.increment() },
            noun: "event")
        let outcome = await delivery.export(events, batches: batches, signal: signal, memory: progressMemory, redact: redact)
        // Left out by event_types, as configured: counted once, when the call is
        // done (not on every attempt).
        var retried = false
        if case .retryable = outcome { retried = true }
        if skipped > 0, !retried { filtered.add(skipped) }
        return outcome
    }

    private func pack(_ events: EncodedRecords, _ order: [Int]) -> [Payload] {
        var packer = PayloadPacker(limit: config.maxPayloadBytes, gzip: config.http.gzip,
                                   maxItems: config.mode == .single ? 1 : config.maxBatchSize, level: config.http.gzipLevel)
        packer.limitsRawBytes = true
        // One event larger than max_payload_bytes is still sent, alone: the
        // receiver's 413 (if it has a limit) sends it to the dead-letter file.
        packer.singleRecordLimit = Int.max
        packer.framing = config.mode == .single ? .concatenated : .jsonArray
        return packer.pack(events, order).payloads
    }

    /// The headers of one attempt: the body's id, this attempt's time, and the
    /// signature over both and the JSON (before any compression: what the receiver
    /// reads after undoing Content-Encoding).
    func signatureHeaders(json: [UInt8]) -> [(String, String)] {
        let id = WebhookSignature.messageID(json)
        let timestamp = Int64(now().timeIntervalSince1970.rounded(.down))
        var headers = [("webhook-id", id), ("webhook-timestamp", String(timestamp))]
        if let signature = config.signature { headers.append(("webhook-signature", signature.sign(id: id, timestamp: timestamp, body: json))) }
        return headers
    }

    func post(_ payload: Payload, _ events: EncodedRecords) async -> PayloadAnswer {
        let json = payload.gzipped ? PayloadPacker.concatenate(events, payload.records, framing: config.mode == .single ? .concatenated : .jsonArray) : payload.body
        var headers = config.http.headers([("Content-Type", "application/json")] + signatureHeaders(json: json))
        if payload.gzipped { headers.add(name: "Content-Encoding", value: "gzip") }
        let request = HTTPClientRequest(target: config.endpoint.path.isEmpty ? "/" : config.endpoint.path, headers: headers,
                                        body: ByteBuffer(bytes: payload.body))
        let response: HTTPClientResponse
        do {
            response = try await transport.send(request)
        } catch {
            count("error")
            return .retry("cannot send to \(place): \(error)", after: nil)
        }
        count(String(response.status.code))
        let reason = "HTTP \(response.status.code) from \(place): \(ResponseClass.excerpt(response, masking: secrets))"
        // Read only for a refusal: parsing the Date header costs more than the rest.
        func skew() -> String {
            ResponseClass.clockSkewNote(response, now: now(), window: "Standard Webhooks receivers refuse a webhook-timestamp more than 5 minutes off")
        }
        switch ResponseClass.of(response) {
        case .success:
            return .accepted
        case .tooLarge:
            return .tooLarge(reason)
        case .unauthorized:
            return .refused("\(reason)\(skew()); check that the receiver verifies with the same secret (not shown here)")
        case .refused where response.status.code == 410:
            return .refused("\(reason); 410 Gone: the receiver says this endpoint is disabled (Standard Webhooks); remove or update the exporter")
        case .refused:
            return .refused("\(reason)\(skew())")
        case .retry(let after):
            return .retry(reason, after: after)
        }
    }

    private func count(_ status: String) {
        metrics.counter("sluice_webhook_requests_total", "Requests to the webhook receiver by HTTP status (error: no answer).",
                        labels: [("exporter", id.description), ("status", status)]).increment()
    }

    func redact(_ text: String) -> String { secrets(text) }
}

// The `splunk_hec` exporter: log records and spans to Splunk's HTTP Event Collector,
// with the OpenTelemetry Collector's option names (issue 4, docs/splunk-hec.md).
//
// What it does that the Collector's exporter does not:
// - One event Splunk can never take (over `max_event_size`, over the payload limit
//   even alone, refused with a per-event 400) goes to the dead-letter file alone;
//   the rest of its batch is delivered (`ExportOutcome.partiallyDelivered`).
// - A 413 is answered by splitting the payload in halves, down to one event, and
//   the limit Splunk enforced is remembered for the next payloads.
// - Indexer acknowledgements (`indexer_ack`): a batch is delivered when Splunk's
//   indexers say so, and sent again when they do not within the timeout.
// - A retry resends only what was not delivered yet: the exporter remembers, per
//   batch, which events Splunk took before the failure.
//
// SplunkHECConfig.swift reads the section; HECEncoder.swift writes events;
// HECIndexerAck.swift polls acks. Packing, splitting, per-event results and the
// retry memory are the exporter kit's (Exporters/Kit/).
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet
import Synchronization

public struct SplunkHECExporterFactory: ExporterFactory {
    public let type = "splunk_hec"
    public let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        let before = config.diagnostics.all.count
        guard let settings = SplunkHECConfig(config), config.diagnostics.all.count == before else { return nil }
        let client = HTTPClient(endpoint: settings.endpoint, settings: settings.client)
        return SplunkHECExporter(id: id, config: settings, transport: client, logger: context.logger, metrics: context.metrics)
    }
}

final class SplunkHECExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    let config: SplunkHECConfig
    var retry: RetrySettings { config.retry }
    var queue: QueueSettings { config.queue }
    let encoder: HECEncoder
    let transport: any HTTPTransport
    let ack: HECIndexerAck?
    let logger: Logger
    let sleep: @Sendable (Duration) async throws -> Void
    let now: @Sendable () -> ContinuousClock.Instant
    /// Headers every request carries (the token among them; never logged).
    private let baseHeaders: HTTPHeaders
    /// The token and the secret-named headers, for `redact`.
    let secrets: SecretMask
    private let state = Mutex(State())
    private let background = Mutex<[Task<Void, Never>]>([])
    private let metrics: MetricsRegistry
    private let counters: Counters

    /// Batches a retry will be asked for again, with what is done already.
    private let progressMemory = ProgressMemory()

    private struct State {
        /// The smallest payload Splunk refused with a 413, when below the configured limit.
        var refusedSize: [OTLPSignal: Int] = [:]
        var ratio: [OTLPSignal: Double] = [:]
        var warnedNoAckID = false
    }

    private struct Counters {
        let payloadBytes: Counter
        let splits: Counter
        let ackTimeouts: Counter
        let heartbeatsSent: Counter
        let heartbeatsFailed: Counter
    }

    init(id: ComponentID, config: SplunkHECConfig, transport: any HTTPTransport, logger: Logger, metrics: MetricsRegistry = .shared,
         sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
         now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.id = id
        self.config = config
        self.transport = transport
        self.logger = logger
        self.sleep = sleep
        self.now = now
        self.metrics = metrics
        encoder = HECEncoder(HECEncoder.Settings(config))
        ack = config.indexerAck.enabled ? HECIndexerAck(settings: config.indexerAck) : nil
        var headers = HTTPHeaders()
        for (name, value) in config.headers.sorted(by: { $0.key < $1.key }) { headers.replaceOrAdd(name: name, value: value) }
        headers.replaceOrAdd(name: "Authorization", value: "Splunk \(config.token.value)")
        headers.replaceOrAdd(name: "Content-Type", value: "application/json")
        headers.replaceOrAdd(name: "User-Agent", value: "\(config.appName)/\(config.appVersion)")
        // What Splunk counts HEC traffic by (the Collector sends the same headers).
        headers.replaceOrAdd(name: "__splunk_app_name", value: config.appName)
        headers.replaceOrAdd(name: "__splunk_app_version", value: config.appVersion)
        // The raw endpoint needs a channel even without acknowledgements (Splunk
        // answers "Data channel is missing" otherwise).
        if let ack { headers.replaceOrAdd(name: "X-Splunk-Request-Channel", value: ack.channel) } else if config.exportRaw {
            headers.replaceOrAdd(name: "X-Splunk-Request-Channel", value: UUID().uuidString.lowercased())
        }
        baseHeaders = headers
        secrets = SecretMask([config.token.value] + SecretMask.secrets(inHeaders: config.headers) + (config.endpoint.credentials?.secretValues ?? []))
        let labels = [("exporter", id.description)]
        counters = Counters(
            payloadBytes: metrics.counter("sluice_splunk_hec_payload_bytes_total", "Bytes of event payloads sent to HEC (as sent, compressed or not).", labels: labels),
            splits: metrics.counter("sluice_splunk_hec_split_payloads_total", "Payloads split in halves after a 413 or a per-event 400.", labels: labels),
            ackTimeouts: metrics.counter("sluice_splunk_hec_ack_timeouts_total", "Payloads not acknowledged by the indexers within indexer_ack.timeout (sent again).", labels: labels),
            heartbeatsSent: metrics.counter("sluice_splunk_hec_heartbeats_total", "Heartbeat events sent.", labels: labels + [("result", "sent")]),
            heartbeatsFailed: metrics.counter("sluice_splunk_hec_heartbeats_total", "Heartbeat events sent.", labels: labels + [("result", "failed")]))
    }

    var place: String { "Splunk HEC \(config.endpoint.scheme)://\(config.endpoint.authority)" }

    // MARK: Lifecycle

    func start() async throws {
        logger.info("splunk_hec exporter sending", metadata: [
            "exporter": "\(id)", "endpoint": "\(config.endpoint.scheme)://\(config.endpoint.authority)\(config.eventPath)",
            "indexer_ack": "\(config.indexerAck.enabled)", "compression": "\(config.compress ? "gzip" : "none")",
            "fields_mode": "\(config.fieldsMode.rawValue)"])
        for warning in config.warnings { logger.warning("\(warning)", metadata: ["exporter": "\(id)"]) }
        // Neither check holds up the start: the data waits in the pipeline log anyway.
        if config.healthCheckEnabled { spawn { await self.checkHealth() } }
        if config.heartbeat.startup { spawn { _ = await self.sendHeartbeat() } }
        if config.heartbeat.interval > .zero {
            let interval = config.heartbeat.interval
            spawn {
                while !Task.isCancelled {
                    do { try await self.sleep(interval) } catch { return }
                    _ = await self.sendHeartbeat()
                }
            }
        }
    }

    func shutdown() async {
        let tasks = background.withLock { tasks in
            defer { tasks.removeAll() }
            return tasks
        }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        await transport.close()
    }

    private func spawn(_ body: @escaping @Sendable () async -> Void) {
        let task = Task { await body() }
        background.withLock { $0.append(task) }
    }

    // MARK: Export

    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        guard signals.contains(signal) else { return .permanent(reason: "splunk_hec exports logs, traces and metrics, not \(signal)") }
        if signal == .logs, !config.logDataEnabled { return .delivered }
        let events = encoder.encode(batches, signal: signal)
        guard events.count > 0 else { return .delivered }
        var progress = progressMemory.take(batches, records: events.count)

        // Events Splunk could never take: over max_event_size (measured before
        // compression, as the Collector does).
        for i in 0..<events.count where progress.isOpen(i) && events.size(i) > config.maxEventSize {
            progress.refuse(i, "an event of \(events.size(i)) bytes is over max_event_size (\(config.maxEventSize) bytes)")
        }
        let limitName = signal == .traces ? "max_content_length_traces" : signal == .metrics ? "max_content_length_metrics" : "max_content_length_logs"
        let delivery = PayloadDelivery(
            pack: { order, progress in self.pack(events, order, signal: signal, limitName: limitName, &progress) },
            send: { payload in await self.post(payload, to: signal == .logs && self.config.exportRaw ? self.config.rawPath : self.config.eventPath) },
            learnTooLarge: { payload in self.learnLimit(signal, refusedBytes: payload.body.count) },
            onSplit: { self.counters.splits.increment() },
            noun: "event")
        let result = await delivery.run(&progress)
        var retryReason = result.retry

        if let ack, !result.pending.isEmpty {
            let pendingAcks = result.pending
            let acknowledged = await ack.wait(for: pendingAcks.map(\.ackID), poll: pollAcks, sleep: sleep, now: now)
            var late = 0, lateEvents = 0
            for pending in pendingAcks {
                if acknowledged.contains(pending.ackID) {
                    progress.deliver(pending.records)
                } else {
                    late += 1
                    lateEvents += pending.records.count
                }
            }
            if late > 0 {
                counters.ackTimeouts.add(late)
                if retryReason == nil {
                    retryReason = ("\(late) of \(pendingAcks.count) payloads (\(lateEvents) events) not acknowledged by the Splunk indexers within \(config.indexerAck.timeout) (\(place)); sending them again", nil)
                }
            }
        }

        if let retryReason {
            progressMemory.keep(progress)
            return .retryable(reason: redact(retryReason.reason), after: retryReason.after)
        }
        return PayloadDelivery.outcome(progress, result, records: events, batches: batches, signal: signal, noun: "event", redact: redact)
    }

    /// Payloads for `order` at the current limit; events too large even alone are refused.
    private func pack(_ events: EncodedRecords, _ order: [Int], signal: OTLPSignal, limitName: String, _ progress: inout ExportProgress) -> [Payload] {
        let configured = config.maxContentLength(signal)
        let (refused, ratio) = state.withLock { ($0.refusedSize[signal], $0.ratio[signal] ?? 4) }
        // After a 413 of R bytes, payloads of several events aim at R/2 (so one 413
        // is not repeated for every batch), while one event alone is still tried up
        // to R - 1: only R and more is known to be refused.
        var packer = PayloadPacker(limit: refused.map { min(configured, max(1024, $0 / 2)) } ?? configured,
                                   gzip: config.compress, ratio: ratio, level: config.gzipLevel)
        packer.singleRecordLimit = refused.map { min(configured, $0 - 1) } ?? configured
        let (payloads, tooLarge) = packer.pack(events, order)
        state.withLock { $0.ratio[signal] = packer.ratio }
        for item in tooLarge {
            let what = config.compress ? "\(item.bytes) bytes after gzip" : "\(item.bytes) bytes"
            let why = packer.singleRecordLimit < configured
                ? "what Splunk accepts (it refused \(packer.singleRecordLimit + 1) bytes with a 413; \(limitName) is \(configured))"
                : "\(limitName) (\(configured) bytes)"
            progress.refuse(item.record, "an event of \(what) does not fit \(why) even alone")
        }
        return payloads
    }

    /// A 413 shows Splunk's limit is below what was sent; remembered for the
    /// exporter's life (see `pack`).
    /// Returns whether the limit went down.
    private func learnLimit(_ signal: OTLPSignal, refusedBytes: Int) -> Bool {
        let changed = state.withLock { s -> Bool in
            guard refusedBytes < s.refusedSize[signal] ?? Int.max else { return false }
            s.refusedSize[signal] = refusedBytes
            return true
        }
        if changed {
            logger.warning("Splunk HEC refused a payload as too large (413); splitting it and sending smaller payloads from now on",
                           metadata: ["exporter": "\(id)", "signal": "\(signal)", "refused_bytes": "\(refusedBytes)",
                                      "payload_limit": "\(min(config.maxContentLength(signal), max(1024, refusedBytes / 2)))"])
        }
        return changed
    }

    private func warnNoAckID() {
        let first = state.withLock { s -> Bool in
            defer { s.warnedNoAckID = true }
            return !s.warnedNoAckID
        }
        if first {
            logger.warning("indexer_ack is enabled but Splunk answers without an ackId (the token has indexer acknowledgement off); a 200 counts as delivered",
                           metadata: ["exporter": "\(id)"])
        }
    }

    // MARK: Requests

    /// One payload to HEC, and what its answer means (HEC's codes:
    /// https://docs.splunk.com/Documentation/Splunk/latest/Data/TroubleshootHTTPEventCollector).
    func post(_ payload: Payload, to path: String) async -> PayloadAnswer {
        var headers = baseHeaders
        if payload.gzipped { headers.add(name: "Content-Encoding", value: "gzip") }
        let request = HTTPClientRequest(target: path, headers: headers, body: ByteBuffer(bytes: payload.body))
        let response: HTTPClientResponse
        do {
            response = try await transport.send(request)
        } catch {
            count(status: "error")
            return .retry("cannot send to \(place)\(path): \(error)", after: nil)
        }
        count(status: String(response.status.code))
        counters.payloadBytes.add(payload.body.count)
        let answer = HECResponse(response.body)
        let reason = "HTTP \(response.status.code) from \(place)\(path): \(answer.summary)"
        switch ResponseClass.of(response) {
        case .success:
            guard ack != nil else { return .accepted }
            if let ackID = answer.ackID { return .pending(ackID: ackID) }
            warnNoAckID()
            return .accepted
        case .tooLarge:
            return .tooLarge(reason)
        case .refused where response.status.code == 400:
            if let code = answer.code, !HECResponse.eventCodes.contains(code) { return .refused(reason) }
            return .badRecord(reason, index: answer.invalidEventNumber)
        case .unauthorized:
            return .refused("\(reason); check the HEC token (not shown here) and that it is enabled")
        case .refused where response.status.code == 404:
            return .refused("\(reason); check the endpoint: HEC listens at <host>:8088/services/collector (Splunk Cloud: https://http-inputs-<stack>.splunkcloud.com)")
        case .retry(let after):
            return .retry(reason, after: after)
        case .refused:
            return .refused(reason)
        }
    }

    private func count(status: String) {
        metrics.counter("sluice_splunk_hec_requests_total", "Requests to HEC by HTTP status (error: no answer).",
                        labels: [("exporter", id.description), ("status", status)]).increment()
    }

    private func pollAcks(_ ids: [UInt64]) async -> [UInt64: Bool]? {
        let request = HTTPClientRequest(target: config.ackPath, headers: baseHeaders, body: ByteBuffer(bytes: HECIndexerAck.requestBody(ids)))
        do {
            let response = try await transport.send(request)
            count(status: "ack_\(response.status.code)")
            guard response.status.code == 200 else {
                logger.debug("Splunk HEC ack poll failed", metadata: ["exporter": "\(id)", "status": "\(response.status.code)",
                                                                    "answer": "\(redact(HECResponse(response.body).summary))"])
                return nil
            }
            return HECIndexerAck.parseAnswer(response.body)
        } catch {
            count(status: "ack_error")
            return nil
        }
    }

    /// The token must never reach a log line, an error or the dead-letter file,
    /// whatever a server echoes back; masked where it stands whole, so that Splunk's
    /// own words ("Invalid token") stay readable.
    func redact(_ text: String) -> String { secrets.clean(text, limit: SecretMask.reasonLength) }

    // MARK: Health and heartbeat

    private func checkHealth() async {
        let request = HTTPClientRequest(method: .GET, target: config.healthPath, headers: baseHeaders)
        do {
            let response = try await transport.send(request)
            let answer = redact(HECResponse(response.body).summary)
            if response.status.code == 200 {
                logger.info("Splunk HEC is healthy", metadata: ["exporter": "\(id)", "path": "\(config.healthPath)", "answer": "\(answer)"])
            } else {
                logger.warning("Splunk HEC health check failed; data waits in the pipeline log until HEC takes it",
                               metadata: ["exporter": "\(id)", "path": "\(config.healthPath)", "status": "\(response.status.code)", "answer": "\(answer)"])
            }
        } catch {
            logger.warning("Splunk HEC health check failed; data waits in the pipeline log until HEC takes it",
                           metadata: ["exporter": "\(id)", "path": "\(config.healthPath)", "error": "\(redact("\(error)"))"])
        }
    }

    /// A heartbeat event, as the Collector sends one (heartbeat.go): into `_internal`,
    /// source "sluice", sourcetype "heartbeat". Not retried: the next one follows.
    @discardableResult
    func sendHeartbeat() async -> Bool {
        var out = JSONOutput()
        out.append(ascii: "{\"time\":")
        out.appendHECTime(UInt64(max(0, Date().timeIntervalSince1970 * 1e9)))
        out.append(ascii: ",\"host\":")
        out.appendString(LocalHost.name)
        out.append(ascii: ",\"source\":\"sluice\",\"sourcetype\":\"heartbeat\",\"index\":\"_internal\",\"event\":")
        out.appendString("HeartbeatInfo version=\(config.appVersion) description=\(config.appName) os=\(Self.osName) arch=\(Self.architecture)")
        out.append(UInt8(ascii: "}"))
        let answer = await post(Payload(records: [], body: out.bytes, gzipped: false, rawBytes: out.count), to: config.eventPath)
        switch answer {
        case .accepted, .pending:
            counters.heartbeatsSent.increment()
            return true
        default:
            break
        }
        counters.heartbeatsFailed.increment()
        logger.debug("Splunk HEC heartbeat failed", metadata: ["exporter": "\(id)", "answer": "\(answer)"])
        return false
    }

    #if os(Linux)
    static let osName = "linux"
    #else
    static let osName = "darwin"
    #endif
    #if arch(x86_64)
    static let architecture = "amd64"
    #elseif arch(arm64)
    static let architecture = "arm64"
    #else
    static let architecture = "unknown"
    #endif
}

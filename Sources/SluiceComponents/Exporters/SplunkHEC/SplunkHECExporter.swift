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
// HECPayloads.swift cuts them into payloads; HECIndexerAck.swift polls acks;
// HECRejectedRecords.swift rebuilds OTLP batches of refused records.
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet
import Synchronization

public struct SplunkHECExporterFactory: ExporterFactory {
    public let type = "splunk_hec"
    public let signals: Set<OTLPSignal> = [.logs, .traces]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        let before = config.diagnostics.all.count
        guard let settings = SplunkHECConfig(config), config.diagnostics.all.count == before else { return nil }
        var clientSettings = HTTPClient.Settings()
        clientSettings.requestTimeout = settings.timeout
        if settings.hasTLS { clientSettings.tls = TLSClientConfiguration(settings.tls) }
        if let url = settings.proxyURL {
            do {
                clientSettings.proxy = try ProxySettings(url: url)
            } catch {
                config.report("proxy_url", error.description)
                return nil
            }
        }
        let client = HTTPClient(endpoint: settings.endpoint, settings: clientSettings)
        return SplunkHECExporter(id: id, config: settings, transport: client, logger: context.logger, metrics: context.metrics)
    }
}

final class SplunkHECExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs, .traces]
    let config: SplunkHECConfig
    var retry: RetrySettings { config.retry }
    var queue: QueueSettings { config.queue }
    let encoder: HECEncoder
    let transport: any HECTransport
    let ack: HECIndexerAck?
    let logger: Logger
    let sleep: @Sendable (Duration) async throws -> Void
    let now: @Sendable () -> ContinuousClock.Instant
    /// Headers every request carries (the token among them; never logged).
    private let baseHeaders: HTTPHeaders
    private let state = Mutex(State())
    private let background = Mutex<[Task<Void, Never>]>([])
    private let metrics: MetricsRegistry
    private let counters: Counters

    private struct State {
        /// Batches a retry will be asked for again, with what is done already.
        var progress: [ExportProgress] = []
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

    init(id: ComponentID, config: SplunkHECConfig, transport: any HECTransport, logger: Logger, metrics: MetricsRegistry = .shared,
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
        if let ack { headers.replaceOrAdd(name: "X-Splunk-Request-Channel", value: ack.channel) }
        baseHeaders = headers
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
        for warning in config.tls.warnings { logger.warning("\(warning)", metadata: ["exporter": "\(id)"]) }
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
        guard signals.contains(signal) else { return .permanent(reason: "splunk_hec exports logs and traces, not \(signal)") }
        if signal == .logs, !config.logDataEnabled { return .delivered }
        let events = encoder.encode(batches, signal: signal)
        guard events.count > 0 else { return .delivered }
        var progress = takeProgress(batches, events: events.count)

        // Events Splunk could never take: over max_event_size (measured before
        // compression, as the Collector does).
        for i in 0..<events.count where progress.isOpen(i) && events.size(i) > config.maxEventSize {
            progress.refuse(i, "an event of \(events.size(i)) bytes is over max_event_size (\(config.maxEventSize) bytes)")
        }
        let limitName = signal == .traces ? "max_content_length_traces" : "max_content_length_logs"
        var work = pack(events, (0..<events.count).filter { progress.isOpen($0) }, signal: signal, limitName: limitName, &progress)
        work.reverse()
        var pendingAcks: [(id: UInt64, events: [Int])] = []
        var retryReason: (reason: String, after: Duration?)?

        while let payload = work.popLast() {
            if Task.isCancelled {
                retryReason = ("shutting down", nil)
                break
            }
            switch await post(payload) {
            case .accepted(let ackID):
                if let ack = ackID, self.ack != nil {
                    pendingAcks.append((ack, payload.events))
                } else {
                    if self.ack != nil { warnNoAckID() }
                    progress.deliver(payload.events)
                }
            case .tooLarge(let reason):
                let lowered = learnLimit(signal, refusedBytes: payload.body.count)
                if lowered, !work.isEmpty {
                    // The payloads cut before would meet the same 413: cut them again.
                    let rest = work.reversed().flatMap(\.events)
                    work = pack(events, rest, signal: signal, limitName: limitName, &progress).reversed()
                }
                if payload.events.count == 1 {
                    progress.refuse(payload.events[0], "\(reason); even alone this event (\(payload.body.count) bytes as sent) is over Splunk's limit")
                } else {
                    counters.splits.increment()
                    let half = payload.events.count / 2
                    let parts = [Array(payload.events[..<half]), Array(payload.events[half...])]
                    work.append(contentsOf: parts.flatMap { pack(events, $0, signal: signal, limitName: limitName, &progress) }.reversed())
                }
            case .badEvent(let reason, let eventNumber):
                if payload.events.count == 1 {
                    progress.refuse(payload.events[0], reason)
                    break
                }
                counters.splits.increment()
                var parts: [[Int]]
                if let n = eventNumber, n >= 0, n < payload.events.count {
                    // HEC named the event: it alone is refused. The events before it
                    // are sent again (Splunk may have taken them: a duplicate, not a loss).
                    progress.refuse(payload.events[n], reason)
                    parts = [Array(payload.events[..<n]), Array(payload.events[(n + 1)...])]
                } else {
                    let half = payload.events.count / 2
                    parts = [Array(payload.events[..<half]), Array(payload.events[half...])]
                }
                parts.removeAll { $0.isEmpty }
                work.append(contentsOf: parts.flatMap { pack(events, $0, signal: signal, limitName: limitName, &progress) }.reversed())
            case .refused(let reason):
                // Nothing of this call will be taken (a bad token, a wrong path).
                for event in payload.events { progress.refuse(event, reason) }
                for rest in work { for event in rest.events { progress.refuse(event, reason) } }
                work.removeAll()
            case .retry(let reason, let after):
                retryReason = (reason, after)
                work.removeAll()
            }
        }

        if let ack, !pendingAcks.isEmpty {
            let acknowledged = await ack.wait(for: pendingAcks.map(\.id), poll: pollAcks, sleep: sleep, now: now)
            var late = 0, lateEvents = 0
            for pending in pendingAcks {
                if acknowledged.contains(pending.id) {
                    progress.deliver(pending.events)
                } else {
                    late += 1
                    lateEvents += pending.events.count
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
            keepProgress(progress)
            return .retryable(reason: redact(retryReason.reason), after: retryReason.after)
        }
        guard !progress.refused.isEmpty else { return .delivered }
        let reason = redact(Self.summarize(progress.refused))
        if progress.refused.count == events.count { return .permanent(reason: reason) }
        let locators = progress.refused.keys.sorted().map { events.locators[$0] }
        return .partiallyDelivered(rejected: HECRejectedRecords.batches(batches, signal: signal, refused: locators), reason: reason)
    }

    /// Payloads for `order` at the current limit; events too large even alone are refused.
    private func pack(_ events: HECEvents, _ order: [Int], signal: OTLPSignal, limitName: String, _ progress: inout ExportProgress) -> [HECPayload] {
        let configured = config.maxContentLength(signal)
        let (refused, ratio) = state.withLock { ($0.refusedSize[signal], $0.ratio[signal] ?? 4) }
        // After a 413 of R bytes, payloads of several events aim at R/2 (so one 413
        // is not repeated for every batch), while one event alone is still tried up
        // to R - 1: only R and more is known to be refused.
        var packer = HECPayloadPacker(limit: refused.map { min(configured, max(1024, $0 / 2)) } ?? configured,
                                      gzip: config.compress, ratio: ratio, level: config.gzipLevel)
        packer.singleEventLimit = refused.map { min(configured, $0 - 1) } ?? configured
        let (payloads, tooLarge) = packer.pack(events, order)
        state.withLock { $0.ratio[signal] = packer.ratio }
        for item in tooLarge {
            let what = config.compress ? "\(item.bytes) bytes after gzip" : "\(item.bytes) bytes"
            let why = packer.singleEventLimit < configured
                ? "what Splunk accepts (it refused \(packer.singleEventLimit + 1) bytes with a 413; \(limitName) is \(configured))"
                : "\(limitName) (\(configured) bytes)"
            progress.refuse(item.event, "an event of \(what) does not fit \(why) even alone")
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

    enum Answer: Equatable {
        case accepted(ackID: UInt64?)
        /// 413: the payload is too large.
        case tooLarge(String)
        /// A 400 about an event (HEC may say which).
        case badEvent(String, eventNumber: Int?)
        /// Nothing of this call will be taken: a bad token, a wrong path.
        case refused(String)
        case retry(String, after: Duration?)
    }

    func post(_ payload: HECPayload) async -> Answer {
        var headers = baseHeaders
        if payload.gzipped { headers.add(name: "Content-Encoding", value: "gzip") }
        let request = HTTPClientRequest(target: config.eventPath, headers: headers, body: ByteBuffer(bytes: payload.body))
        let response: HTTPClientResponse
        do {
            response = try await transport.send(request)
        } catch {
            count(status: "error")
            return .retry("cannot send to \(place)\(config.eventPath): \(error)", after: nil)
        }
        let status = Int(response.status.code)
        count(status: String(status))
        counters.payloadBytes.add(payload.body.count)
        let answer = HECResponse(response.body)
        let reason = "HTTP \(status) from \(place)\(config.eventPath): \(answer.summary)"
        switch status {
        case 200..<300:
            return .accepted(ackID: answer.ackID)
        case 413:
            return .tooLarge(reason)
        case 400:
            if let code = answer.code, !HECResponse.eventCodes.contains(code) { return .refused(reason) }
            return .badEvent(reason, eventNumber: answer.invalidEventNumber)
        case 401, 403:
            return .refused("\(reason); check the HEC token (not shown here) and that it is enabled")
        case 408, 429, 500...599:
            return .retry(reason, after: response.retryAfter)
        default:
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
    /// whatever a server echoes back.
    func redact(_ text: String) -> String {
        config.token.value.isEmpty ? text : text.replacingOccurrences(of: config.token.value, with: "[REDACTED]")
    }

    /// One reason for everything refused in a call: the reason when there is one
    /// (the dead-letter file shows how many records it covers), else
    /// "3 events refused: 2× …; 1× …".
    static func summarize(_ refused: [Int: String]) -> String {
        var counts: [String: Int] = [:]
        for reason in refused.values { counts[reason, default: 0] += 1 }
        let groups = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        if groups.count == 1 { return groups[0].key }
        let listed = groups.prefix(3).map { "\($0.value)× \($0.key)" }.joined(separator: "; ")
        return "\(refused.count) events refused: \(listed)\(groups.count > 3 ? "; and \(groups.count - 3) other reasons" : "")"
    }

    // MARK: Retry memory

    private func takeProgress(_ batches: [OTLPBatch], events: Int) -> ExportProgress {
        state.withLock { s in
            s.progress.removeAll { $0.isStale }
            if let i = s.progress.firstIndex(where: { $0.matches(batches, events: events) }) { return s.progress.remove(at: i) }
            return ExportProgress(batches, events: events)
        }
    }

    private func keepProgress(_ progress: ExportProgress) {
        guard progress.hasWork else { return }
        state.withLock { s in
            s.progress.append(progress)
            // Pipelines retry one group at a time; a handful is every pipeline's.
            if s.progress.count > 16 { s.progress.removeFirst(s.progress.count - 16) }
        }
    }

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
        out.appendString(Self.hostname)
        out.append(ascii: ",\"source\":\"sluice\",\"sourcetype\":\"heartbeat\",\"index\":\"_internal\",\"event\":")
        out.appendString("HeartbeatInfo version=\(config.appVersion) description=\(config.appName) os=\(Self.osName) arch=\(Self.architecture)")
        out.append(UInt8(ascii: "}"))
        let answer = await post(HECPayload(events: [], body: out.bytes, gzipped: false, rawBytes: out.count))
        if case .accepted = answer {
            counters.heartbeatsSent.increment()
            return true
        }
        counters.heartbeatsFailed.increment()
        logger.debug("Splunk HEC heartbeat failed", metadata: ["exporter": "\(id)", "answer": "\(answer)"])
        return false
    }

    static let hostname: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

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

/// What one export call has done with its events, kept when the call ends in
/// `.retryable` so the retry (the same batches again) sends only the rest.
struct ExportProgress: Sendable {
    /// Held weakly: once the batches are gone from the pipeline log, this is stale.
    private struct WeakBatch: @unchecked Sendable {
        // @unchecked: a weak reference to an immutable, Sendable batch.
        weak var batch: OTLPBatch?
    }

    private var batches: [WeakBatch]
    private(set) var delivered: [Bool]
    /// Refused events and why.
    private(set) var refused: [Int: String] = [:]

    init(_ batches: [OTLPBatch], events: Int) {
        self.batches = batches.map { WeakBatch(batch: $0) }
        delivered = Array(repeating: false, count: events)
    }

    func matches(_ other: [OTLPBatch], events: Int) -> Bool {
        delivered.count == events && batches.count == other.count && zip(batches, other).allSatisfy { $0.batch === $1 }
    }

    var isStale: Bool { batches.contains { $0.batch == nil } }
    /// Whether anything was done that a retry must not redo.
    var hasWork: Bool { !refused.isEmpty || delivered.contains(true) }

    func isOpen(_ event: Int) -> Bool { !delivered[event] && refused[event] == nil }

    mutating func deliver(_ events: [Int]) { for event in events { delivered[event] = true } }

    mutating func refuse(_ event: Int, _ reason: String) {
        if refused[event] == nil, !delivered[event] { refused[event] = reason }
    }
}

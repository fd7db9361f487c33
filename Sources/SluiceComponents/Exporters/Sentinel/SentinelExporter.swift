// The `sentinel` exporter: log records to a Log Analytics workspace, where
// Microsoft Sentinel queries them, through the Logs Ingestion API (an Entra ID
// token, rows for a data collection rule's stream) or the legacy HTTP Data
// Collector API (SharedKey signatures) (docs/sentinel.md).
//
// SentinelConfig.swift reads the section; EntraToken.swift gets and caches
// tokens; SentinelRowEncoder.swift writes rows. Packing, splitting on 413,
// retries and the dead-letter path are the exporter kit's (Exporters/Kit/).
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet
import Synchronization

public struct SentinelExporterFactory: ExporterFactory {
    public let type = "sentinel"
    public let signals: Set<OTLPSignal> = [.logs]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        guard let settings = SentinelConfig(config) else { return nil }
        let client = HTTPClient(endpoint: settings.endpoint, settings: settings.http.client)
        var token: EntraToken?
        if case .logsIngestion(let ingestion) = settings.api {
            token = EntraToken(settings: ingestion, transport: HTTPClient(endpoint: ingestion.authority, settings: settings.http.client))
        }
        return SentinelExporter(id: id, config: settings, transport: client, token: token, logger: context.logger, metrics: context.metrics)
    }
}

final class SentinelExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs]
    let config: SentinelConfig
    var retry: RetrySettings { config.http.retry }
    var queue: QueueSettings { config.http.queue }
    let encoder: SentinelRowEncoder
    let transport: any HTTPTransport
    let token: EntraToken?
    let logger: Logger
    let secrets: SecretMask
    let now: @Sendable () -> Date
    private let progressMemory = ProgressMemory()
    private let metrics: MetricsRegistry
    private let splits: Counter
    private let ratio = Mutex<Double>(4)
    /// The access tokens sent lately: masked like the configured secrets, in case
    /// an answer echoes one.
    private let recentTokens = Mutex<[String]>([])

    init(id: ComponentID, config: SentinelConfig, transport: any HTTPTransport, token: EntraToken?, logger: Logger,
         metrics: MetricsRegistry = .shared, now: @escaping @Sendable () -> Date = { Date() }) {
        self.id = id
        self.config = config
        self.transport = transport
        self.token = token
        self.logger = logger
        self.metrics = metrics
        self.now = now
        if case .dataCollector = config.api {
            encoder = SentinelRowEncoder(timeColumns: ["timestamp"])
        } else {
            encoder = SentinelRowEncoder(timeColumns: ["TimeGenerated", "timestamp"])
        }
        secrets = SecretMask(config.secrets)
        splits = metrics.counter("sluice_sentinel_split_payloads_total", "Requests split in halves after a 413.", labels: [("exporter", id.description)])
    }

    var apiName: String {
        if case .dataCollector = config.api { return "Data Collector API" }
        return "Logs Ingestion API"
    }

    var place: String { "\(apiName) \(config.endpoint.scheme)://\(config.endpoint.authority)" }

    func start() async throws {
        var metadata: Logger.Metadata = ["exporter": "\(id)", "endpoint": "\(config.endpoint)", "api": "\(apiName)",
                                         "compression": "\(config.http.gzip ? "gzip" : "none")"]
        switch config.api {
        case .logsIngestion(let ingestion):
            metadata["dcr_immutable_id"] = "\(ingestion.dcrImmutableID)"
            metadata["stream_name"] = "\(ingestion.streamName)"
            if case .federatedTokenFile(let path) = ingestion.credential { metadata["federated_token_file"] = "\(path)" }
        case .dataCollector(let collector):
            metadata["log_type"] = "\(collector.logType)"
            logger.warning("the HTTP Data Collector API was retired by Microsoft on 14 September 2026; move to the Logs Ingestion API (docs/sentinel.md)",
                           metadata: ["exporter": "\(id)"])
        }
        logger.info("sentinel exporter sending", metadata: metadata)
        for warning in config.http.warnings { logger.warning("\(warning)", metadata: ["exporter": "\(id)"]) }
    }

    func shutdown() async {
        await transport.close()
        await token?.transport.close()
    }

    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        guard signal == .logs else { return .permanent(reason: "sentinel exports logs, not \(signal)") }
        let rows = encoder.encode(batches)
        let delivery = PayloadDelivery(
            pack: { order, progress in self.pack(rows, order, &progress) },
            send: { payload in await self.post(payload) },
            onSplit: { self.splits.increment() },
            noun: "row")
        return await delivery.export(rows, batches: batches, signal: signal, memory: progressMemory, redact: redact)
    }

    private func pack(_ rows: EncodedRecords, _ order: [Int], _ progress: inout ExportProgress) -> [Payload] {
        let limit = if case .dataCollector = config.api { SentinelConfig.dataCollectorMaxBytes } else { SentinelConfig.logsIngestionMaxBytes }
        var packer = PayloadPacker(limit: limit, gzip: config.http.gzip, ratio: ratio.withLock { $0 }, level: config.http.gzipLevel)
        packer.limitsRawBytes = true
        packer.framing = .jsonArray
        let (payloads, tooLarge) = packer.pack(rows, order)
        ratio.withLock { $0 = packer.ratio }
        for item in tooLarge { progress.refuse(item.record, "a row of \(item.bytes) bytes is over the \(apiName)'s \(limit) bytes per request") }
        return payloads
    }

    // MARK: Requests

    func post(_ payload: Payload) async -> PayloadAnswer {
        switch config.api {
        case .logsIngestion: return await postIngestion(payload, retriedToken: false)
        case .dataCollector(let collector): return await postDataCollector(payload, collector)
        }
    }

    /// The Logs Ingestion API: 204 taken; 401 the token (fetched anew once, since
    /// it may have been revoked or expired early); 403 the identity may not write
    /// to the rule; 404 a wrong rule or stream; 413 split; 429/5xx retry
    /// (https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview).
    private func postIngestion(_ payload: Payload, retriedToken: Bool) async -> PayloadAnswer {
        guard let token else { return .refused("no Entra ID token source") }
        let bearer: String
        switch await token.token() {
        case .success(let value):
            bearer = value
            recentTokens.withLock { tokens in
                if !tokens.contains(value) { tokens.append(value) }
                if tokens.count > 4 { tokens.removeFirst() }
            }
        case .failure(.refused(let reason)): return .refused(reason)
        case .failure(.retry(let reason)): return .retry(reason, after: nil)
        }
        var headers = config.http.headers([("Content-Type", "application/json"), ("Authorization", "Bearer \(bearer)")])
        if payload.gzipped { headers.add(name: "Content-Encoding", value: "gzip") }
        let response: HTTPClientResponse
        switch await send(headers, payload) {
        case .success(let answer): response = answer
        case .failure(let error): return .retry("cannot send to \(place): \(error)", after: nil)
        }
        let reason = "HTTP \(response.status.code) from \(place): \(ResponseClass.excerpt(response, masking: secrets))"
        switch ResponseClass.of(response) {
        case .success:
            return .accepted
        case .unauthorized where response.status.code == 401:
            await token.invalidate(bearer)
            if !retriedToken { return await postIngestion(payload, retriedToken: true) }
            return .refused("the Logs Ingestion API refused a fresh Entra ID token: \(reason); check that the token's tenant is the rule's and that the app registration is enabled")
        case .unauthorized:
            var who = ""
            if case .logsIngestion(let ingestion) = config.api { who = " (client_id \(ingestion.clientID))" }
            return .refused("\(reason); the identity\(who) may not write to the data collection rule: give it the Monitoring Metrics Publisher role on the rule")
        case .tooLarge:
            return .tooLarge(reason)
        case .retry(let after):
            return .retry(reason, after: after)
        case .refused where response.status.code == 404:
            return .refused("\(reason); check endpoint, dcr_immutable_id and stream_name (the rule's JSON view shows the immutableId and its streams)")
        case .refused:
            return .refused(reason)
        }
    }

    /// The Data Collector API: 200 taken; 403 a wrong key or a clock too far off;
    /// 429/5xx retry (https://learn.microsoft.com/azure/azure-monitor/logs/data-collector-api).
    private func postDataCollector(_ payload: Payload, _ collector: SentinelConfig.DataCollector) async -> PayloadAnswer {
        let date = HTTPDate.format(now())
        let signature = Self.sharedKeySignature(key: collector.key, contentLength: payload.body.count, date: date)
        let headers = config.http.headers([
            ("Content-Type", "application/json"), ("Log-Type", collector.logType), ("x-ms-date", date),
            ("time-generated-field", "timestamp"), ("Authorization", "SharedKey \(collector.workspaceID):\(signature)"),
        ])
        let response: HTTPClientResponse
        switch await send(headers, payload) {
        case .success(let answer): response = answer
        case .failure(let error): return .retry("cannot send to \(place): \(error)", after: nil)
        }
        let reason = "HTTP \(response.status.code) from \(place): \(ResponseClass.excerpt(response, masking: secrets))"
        // Read only for a refusal: parsing the Date header costs more than the rest.
        func skew() -> String {
            ResponseClass.clockSkewNote(response, now: now(), window: "the Data Collector API refuses an x-ms-date more than 15 minutes off")
        }
        switch ResponseClass.of(response) {
        case .success:
            return .accepted
        case .unauthorized:
            return .refused("\(reason)\(skew()); check workspace_id and shared_key (not shown here): the workspace's primary or secondary key")
        case .tooLarge:
            return .tooLarge(reason)
        case .retry(let after):
            return .retry(reason, after: after)
        case .refused:
            return .refused("\(reason)\(skew())")
        }
    }

    private func send(_ headers: HTTPHeaders, _ payload: Payload) async -> Result<HTTPClientResponse, any Error> {
        do {
            let response = try await transport.send(HTTPClientRequest(target: config.target, headers: headers, body: ByteBuffer(bytes: payload.body)))
            count(String(response.status.code))
            return .success(response)
        } catch {
            count("error")
            return .failure(error)
        }
    }

    /// The SharedKey signature of a Data Collector API request: base64 of the
    /// HMAC-SHA256, under the workspace key, of
    /// `POST\n<content length>\napplication/json\nx-ms-date:<date>\n/api/logs`
    /// (https://learn.microsoft.com/azure/azure-monitor/logs/data-collector-api#authorization).
    static func sharedKeySignature(key: [UInt8], contentLength: Int, date: String) -> String {
        let stringToSign = "POST\n\(contentLength)\napplication/json\nx-ms-date:\(date)\n/api/logs"
        return Data(Digest.hmacSHA256(key: key, Array(stringToSign.utf8))).base64EncodedString()
    }

    private func count(_ status: String) {
        metrics.counter("sluice_sentinel_requests_total", "Requests to Azure Monitor by HTTP status (error: no answer).",
                        labels: [("exporter", id.description), ("status", status)]).increment()
    }

    func redact(_ text: String) -> String { SecretMask(recentTokens.withLock { $0 })(secrets(text)) }
}

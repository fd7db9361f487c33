// The `awscloudwatchlogs` exporter: log records to CloudWatch Logs' PutLogEvents,
// signed with AWS Signature Version 4, with the OpenTelemetry Collector's option
// names (docs/cloudwatch.md).
//
// CloudWatchLogsConfig.swift reads the section and picks the credential source;
// LogEventEncoder.swift writes each record's event and names its stream;
// PutLogEventsBatcher.swift cuts requests within the API's limits;
// CloudWatchLogsResponse.swift reads answers. Credentials and signing are in
// Exporters/AWS/. Splitting, per-event refusals, retries and the dead-letter path
// are the exporter kit's (Exporters/Kit/).
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet
import Synchronization

public struct CloudWatchLogsExporterFactory: ExporterFactory {
    public let type = "awscloudwatchlogs"
    public let signals: Set<OTLPSignal> = [.logs]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        guard let settings = CloudWatchLogsConfig(config) else { return nil }
        let client = settings.http.client
        let transport: @Sendable (HTTPEndpoint) -> any HTTPTransport = { HTTPClient(endpoint: $0, settings: client) }
        let sts = AWSSecurityTokenService(endpoint: settings.stsEndpoint, region: settings.region)
        let provider = AWSCredentialsProvider(source: settings.credentials, roleARN: settings.roleARN, sts: sts, transport: transport)
        return CloudWatchLogsExporter(id: id, config: settings, transport: transport(settings.endpoint), credentials: provider,
                                      logger: context.logger, metrics: context.metrics)
    }
}

final class CloudWatchLogsExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs]
    let config: CloudWatchLogsConfig
    var retry: RetrySettings { config.http.retry }
    var queue: QueueSettings { config.http.queue }
    let encoder: LogEventEncoder
    let batcher: PutLogEventsBatcher
    let transport: any HTTPTransport
    let credentials: AWSCredentialsProvider
    let logger: Logger
    let secrets: SecretMask
    private let signer: AWSSigner
    private let progressMemory = ProgressMemory()
    private let metrics: MetricsRegistry
    private let payloadBytes: Counter
    private let created: Counter
    private let splits: Counter
    /// The temporary credentials' secrets, masked like the configured ones.
    private let fetchedSecrets = Mutex<(token: String, mask: SecretMask)>(("", SecretMask([])))
    private let nowMillis: @Sendable () -> Int64

    init(id: ComponentID, config: CloudWatchLogsConfig, transport: any HTTPTransport, credentials: AWSCredentialsProvider,
         logger: Logger, metrics: MetricsRegistry = .shared,
         nowMillis: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }) {
        self.id = id
        self.config = config
        self.transport = transport
        self.credentials = credentials
        self.logger = logger
        self.metrics = metrics
        self.nowMillis = nowMillis
        encoder = LogEventEncoder(logGroup: config.logGroup, logStream: config.logStream, rawLog: config.rawLog)
        var batcher = PutLogEventsBatcher()
        if config.retentionDays > 0 { batcher.limits.maxAgeMillis = min(batcher.limits.maxAgeMillis, Int64(config.retentionDays) * 86_400_000) }
        self.batcher = batcher
        signer = AWSSigner(region: config.region, service: "logs")
        secrets = SecretMask(config.secrets)
        let labels = [("exporter", id.description)]
        payloadBytes = metrics.counter("sluice_cloudwatchlogs_payload_bytes_total", "Bytes of PutLogEvents requests sent.", labels: labels)
        created = metrics.counter("sluice_cloudwatchlogs_created_total", "Log groups and streams created because they were missing.", labels: labels)
        splits = metrics.counter("sluice_cloudwatchlogs_split_requests_total", "PutLogEvents requests split in halves to find a refused event.", labels: labels)
    }

    func start() async throws {
        logger.info("awscloudwatchlogs exporter sending", metadata: [
            "exporter": "\(id)", "endpoint": "\(config.endpoint.scheme)://\(config.endpoint.authority)", "region": "\(config.region)",
            "log_group_name": "\(config.logGroup.source)", "log_stream_name": "\(config.logStream.source)",
            "signing_identity_from": "\(credentials.sourceDescription)"])
        for warning in config.http.warnings { logger.warning("\(warning)", metadata: ["exporter": "\(id)"]) }
        if config.credentials == nil { logger.error("\(AWSCredentialSource.noneFound)", metadata: ["exporter": "\(id)"]) }
        if config.regionMissing { logger.error("\(Self.noRegion)", metadata: ["exporter": "\(id)"]) }
    }

    func shutdown() async {
        await transport.close()
        await credentials.close()
    }

    static let noRegion = "no AWS region: set region on the exporter (like eu-west-1), or AWS_REGION in the environment"

    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        guard signal == .logs else { return .permanent(reason: "awscloudwatchlogs exports logs, not \(signal)") }
        guard !config.regionMissing || config.endpointGiven else { return .permanent(reason: Self.noRegion) }
        let now = nowMillis()
        let events = encoder.encode(batches, nowMillis: now)
        guard events.records.count > 0 else { return .delivered }
        var progress = progressMemory.take(batches, records: events.records.count)
        let delivery = PayloadDelivery(
            pack: { order, progress in
                let result = self.batcher.batch(events, order, nowMillis: now)
                for (record, reason) in result.unsendable { progress.refuse(record, reason) }
                return result.payloads
            },
            send: { payload in await self.put(payload, stream: events.streams[events.streamOf[payload.records[0]]]) },
            onSplit: { self.splits.increment() },
            noun: "event")
        let result = await delivery.run(&progress)
        if let retry = result.retry {
            progressMemory.keep(progress)
            return .retryable(reason: redact(retry.reason), after: retry.after)
        }
        return PayloadDelivery.outcome(progress, result, records: events.records, batches: batches, signal: signal, noun: "event", redact: redact)
    }

    /// One PutLogEvents call; a missing group or stream is created and the call made once more.
    private func put(_ payload: Payload, stream: LogStreamName) async -> PayloadAnswer {
        var answer = await call("PutLogEvents", payload.body)
        if case .answered(let response) = answer, response.kind == .missingStream {
            if let failure = await create(stream) { return failure }
            answer = await call("PutLogEvents", payload.body)
        }
        switch answer {
        case .failed(let failure):
            return failure
        case .answered(let response):
            count(response.errorType ?? String(response.status))
            payloadBytes.add(payload.body.count)
            let reason = "PutLogEvents to \(stream): \(response.summary)"
            switch response.kind {
            case .success:
                if let results = response.rejected(count: payload.records.count, retentionDays: config.retentionDays) { return .perRecord(results) }
                return .accepted
            case .alreadyAccepted:
                return .accepted
            case .missingStream:
                return .retry("\(reason) (just created; CloudWatch Logs may take a moment to show it)", after: nil)
            case .retry:
                return .retry(reason, after: nil)
            case .expiredCredentials:
                await credentials.invalidate()
                return .retry("\(reason); fetching new credentials", after: nil)
            case .credentialsRefused:
                return .refused("\(reason); credentials from \(credentials.sourceDescription)")
            case .badEvent:
                return .badRecord(reason, index: nil)
            case .tooLarge:
                return .tooLarge(reason)
            case .refused:
                return .refused(reason)
            }
        }
    }

    /// CreateLogGroup (with `tags`, then `log_retention`) when the group is missing,
    /// and CreateLogStream; "already exists" is success. nil when both exist now.
    private func create(_ name: LogStreamName) async -> PayloadAnswer? {
        let stream = Self.json(["logGroupName": name.group, "logStreamName": name.stream])
        var answer = await call("CreateLogStream", stream)
        if case .answered(let response) = answer, response.kind == .missingStream {
            var group: [String: Any] = ["logGroupName": name.group]
            if !config.tags.isEmpty { group["tags"] = Dictionary(config.tags, uniquingKeysWith: { a, _ in a }) }
            if let failure = Self.creation(await call("CreateLogGroup", Self.json(group)), "CreateLogGroup \(name.group)") { return failure }
            created.increment()
            logger.info("created a CloudWatch Logs group", metadata: ["exporter": "\(id)", "log_group": "\(name.group)", "retention_days": "\(config.retentionDays)"])
            if config.retentionDays > 0 {
                let policy = Self.json(["logGroupName": name.group, "retentionInDays": config.retentionDays])
                if let failure = Self.creation(await call("PutRetentionPolicy", policy), "PutRetentionPolicy \(name.group)") { return failure }
            }
            answer = await call("CreateLogStream", stream)
        }
        if let failure = Self.creation(answer, "CreateLogStream \(name)") { return failure }
        created.increment()
        return nil
    }

    private static func creation(_ answer: CallAnswer, _ what: String) -> PayloadAnswer? {
        switch answer {
        case .failed(let failure): return failure
        case .answered(let response):
            if response.kind == .success || response.errorType == "ResourceAlreadyExistsException" { return nil }
            let reason = "\(what): \(response.summary)"
            switch response.kind {
            case .retry, .missingStream, .expiredCredentials: return .retry(reason, after: nil)
            default: return .refused(reason + (response.kind == .credentialsRefused ? " (the credentials may not create log groups or streams; docs/cloudwatch.md has the IAM policy)" : ""))
            }
        }
    }

    private enum CallAnswer {
        case answered(CloudWatchLogsResponse)
        /// No answer to read: credentials could not be had, or the service could not be reached.
        case failed(PayloadAnswer)
    }

    /// One signed call of the CloudWatch Logs JSON API.
    private func call(_ action: String, _ body: [UInt8]) async -> CallAnswer {
        let credentials: AWSCredentials
        do {
            credentials = try await self.credentials.credentials()
        } catch {
            let reason = "cannot get AWS credentials from \(self.credentials.sourceDescription): \(error.message)"
            count("credentials")
            return .failed(error.permanent ? .refused(reason) : .retry(reason, after: nil))
        }
        if let token = credentials.sessionToken {
            // Built again only when the credentials were: not once per call.
            fetchedSecrets.withLock { if $0.token != token { $0 = (token, SecretMask([credentials.secretAccessKey, token])) } }
        }
        var headers: [(String, String)] = [("Host", config.endpoint.authority), ("Content-Type", "application/x-amz-json-1.1"),
                                           ("X-Amz-Target", "Logs_20140328.\(action)")]
        for (name, value) in config.http.shared.headers.sorted(by: { $0.key < $1.key }) { headers.append((name, value)) }
        let path = config.endpoint.path.isEmpty ? "/" : config.endpoint.path
        headers += signer.sign(method: "POST", path: path, headers: headers, body: body, credentials: credentials,
                               epochSeconds: UInt64(nowMillis() / 1000))
        do {
            let response = try await transport.send(HTTPClientRequest(target: path, headers: HTTPHeaders(headers), body: ByteBuffer(bytes: body)))
            return .answered(CloudWatchLogsResponse(response))
        } catch {
            count("error")
            return .failed(.retry("cannot reach CloudWatch Logs at \(config.endpoint.scheme)://\(config.endpoint.authority) (\(action)): \(error)", after: nil))
        }
    }

    private static func json(_ object: [String: Any]) -> [UInt8] {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])).map { [UInt8]($0) } ?? []
    }

    private func count(_ status: String) {
        metrics.counter("sluice_cloudwatchlogs_requests_total", "PutLogEvents calls by answer (an error type, a status, or error: no answer).",
                        labels: [("exporter", id.description), ("status", status)]).increment()
    }

    /// Credentials must never reach a log line, an error or the dead-letter file.
    func redact(_ text: String) -> String { fetchedSecrets.withLock { $0.mask }(secrets(text)) }
}

import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

/// `otlphttp`: forwards to another collector (a gateway tier), with the Collector's
/// option names. Batches are merged into one request by concatenating their
/// protobuf encodings, which protobuf defines as merging the messages (repeated
/// fields append): https://protobuf.dev/programming-guides/encoding/#last-one-wins
/// A request refused as too large (413) is split in halves down to one record
/// (the exporter kit), so one oversized request never sinks the rest.
public struct OTLPHTTPExporterFactory: ExporterFactory {
    public let type = "otlp_http"
    public let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        let before = config.diagnostics.all.count
        var endpoints: [OTLPSignal: (HTTPEndpoint, String)] = [:]
        let base = config.string("endpoint")
        if let base {
            if let endpoint = HTTPEndpoint(base) {
                for signal in OTLPSignal.allCases { endpoints[signal] = (endpoint, endpoint.path + signal.httpPath) }
            } else {
                config.report("endpoint", "expected an http:// or https:// URL, like http://gateway:4318")
            }
        }
        for (key, signal) in [("logs_endpoint", OTLPSignal.logs), ("traces_endpoint", .traces), ("metrics_endpoint", .metrics)] {
            guard let text = config.string(key) else { continue }
            if let endpoint = HTTPEndpoint(text) { endpoints[signal] = (endpoint, endpoint.path.isEmpty ? "/" : endpoint.path) } else {
                config.report(key, "expected an http:// or https:// URL")
            }
        }
        config.keysWithoutEffect([("profiles_endpoint", "Sluice carries logs, traces and metrics, not profiles")])
        if base == nil, endpoints.isEmpty { config.report("endpoint", "missing: set endpoint (or logs_endpoint / traces_endpoint / metrics_endpoint)") }
        let encoding = config.enumeration("encoding", ["proto", "json"]) ?? "proto"
        let settings = HTTPExporterSettings(config, auth: .extensions(context.extensions))
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        for warning in settings.warnings { context.logger.warning("\(warning)", metadata: ["exporter": "\(id)"]) }
        // One connection pool per scheme, host and port, shared by the signals.
        var clients: [String: HTTPClient] = [:]
        var targets: [OTLPSignal: (client: any HTTPTransport, endpoint: String, path: String)] = [:]
        for (signal, (endpoint, path)) in endpoints {
            let key = "\(endpoint.scheme)://\(endpoint.authority)"
            let client = clients[key] ?? HTTPClient(endpoint: endpoint, settings: settings.client)
            clients[key] = client
            targets[signal] = (client, "\(client.endpoint)", path)
        }
        let endpointSecrets = endpoints.values.flatMap { $0.0.credentials?.secretValues ?? [] }
        return OTLPHTTPExporter(id: id, targets: targets, json: encoding == "json", settings: settings, endpointSecrets: endpointSecrets)
    }
}

final class OTLPHTTPExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal>
    var retry: RetrySettings { settings.retry }
    var queue: QueueSettings { settings.queue }
    let json: Bool
    let settings: HTTPExporterSettings
    let targets: [OTLPSignal: (client: any HTTPTransport, endpoint: String, path: String)]
    private let progressMemory = ProgressMemory()
    /// The credentials this exporter sends, masked in every reason by `ExporterDelivery`.
    let secrets: SecretMask

    /// OTLP/HTTP: only 429, 502, 503 and 504 are retryable; other errors are final.
    /// https://opentelemetry.io/docs/specs/otlp/#retryable-response-codes
    static let retryable: Set<Int> = [429, 502, 503, 504]

    init(id: ComponentID, targets: [OTLPSignal: (client: any HTTPTransport, endpoint: String, path: String)], json: Bool, settings: HTTPExporterSettings,
         endpointSecrets: [String] = []) {
        self.id = id
        self.json = json
        self.settings = settings
        secrets = SecretMask(settings.secrets + endpointSecrets)
        self.targets = targets
        signals = Set(targets.keys)
    }

    func start() async throws {}

    func shutdown() async {
        for target in targets.values { await target.client.close() }
    }

    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        guard let target = targets[signal] else { return .permanent(reason: "no \(signal) endpoint configured") }
        let index = OTLPRecordIndex(batches, signal: signal)
        var progress = progressMemory.take(batches, records: index.count)
        let delivery = PayloadDelivery(
            pack: { records, _ in self.payloads(records, index: index, batches: batches, signal: signal) },
            send: { payload in await self.send(payload, target) })
        let result = await delivery.run(&progress)
        if let retry = result.retry {
            progressMemory.keep(progress)
            return .retryable(reason: retry.reason, after: retry.after)
        }
        return PayloadDelivery.outcome(progress, result, records: index, batches: batches, signal: signal, redact: secrets.callAsFunction)
    }

    /// Every record in one request, as received: concatenated protobuf encodings
    /// merge into one message. JSON has no such rule, so it is one request per batch.
    private func payloads(_ records: [Int], index: OTLPRecordIndex, batches: [OTLPBatch], signal: OTLPSignal) -> [Payload] {
        guard !records.isEmpty else { return [] }
        var groups = [records]
        if json {
            groups = []
            for record in records {
                if let last = groups.last?.last, index.locators[last].batch == index.locators[record].batch {
                    groups[groups.count - 1].append(record)
                } else {
                    groups.append([record])
                }
            }
        }
        return groups.map { index.payload($0, of: batches, signal: signal, json: json, settings: settings) }
    }

    private func send(_ payload: Payload, _ target: (client: any HTTPTransport, endpoint: String, path: String)) async -> PayloadAnswer {
        var headers = settings.headers([("Content-Type", json ? "application/json" : "application/x-protobuf")])
        if payload.gzipped { headers.add(name: "Content-Encoding", value: "gzip") }
        let response: HTTPClientResponse
        do {
            response = try await target.client.send(HTTPClientRequest(target: target.path, headers: headers, body: ByteBuffer(bytes: payload.body)))
        } catch {
            return .retry("\(target.endpoint): \(error)", after: nil)
        }
        let reason = "HTTP \(response.status.code) from \(target.endpoint)\(target.path)"
        switch ResponseClass.of(response, retryable: Self.retryable) {
        case .success: return .accepted
        case .retry(let after): return .retry(reason, after: after)
        case .tooLarge: return .tooLarge(reason)
        case .unauthorized: return .refused("\(reason): \(ResponseClass.excerpt(response, masking: secrets)); check the credential in headers or auth")
        case .refused where response.status.code == 404:
            return .refused("\(reason): \(ResponseClass.excerpt(response, masking: secrets)); check the endpoint and its path (<endpoint>/v1/logs, or logs_endpoint as the full URL)")
        case .refused: return .refused("\(reason): \(ResponseClass.excerpt(response, masking: secrets))")
        }
    }
}

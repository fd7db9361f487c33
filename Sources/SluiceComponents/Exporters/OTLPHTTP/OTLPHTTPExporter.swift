import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

/// `otlphttp`: forwards to another collector (a gateway tier), with the Collector's
/// option names. Batches are merged into one request by concatenating their
/// protobuf encodings, which protobuf defines as merging the messages (repeated
/// fields append): https://protobuf.dev/programming-guides/encoding/#last-one-wins
public struct OTLPHTTPExporterFactory: ExporterFactory {
    public let type = "otlphttp"
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
        if base == nil, endpoints.isEmpty { config.report("endpoint", "missing: set endpoint (or logs_endpoint / traces_endpoint / metrics_endpoint)") }
        let encoding = config.enumeration("encoding", ["proto", "json"]) ?? "proto"
        let http = HTTPClientSettings(config)
        var client = HTTPClient.Settings(exporterConfig: config, shared: http)
        if let connections = config.int("max_conns_per_host", min: 1, max: 256) { client.maxConnections = connections }
        let retry = RetrySettings(config.map("retry_on_failure"))
        let queue = QueueSettings(config.map("sending_queue"))
        config.accept("read_buffer_size", "write_buffer_size", "max_idle_conns", "max_idle_conns_per_host",
                      "idle_conn_timeout", "disable_keep_alives", "http2_read_idle_timeout", "http2_ping_timeout",
                      "cookies", "compression_params")
        config.refuseClientAuthenticator(instead: "send the credential as a header, e.g. headers: {authorization: \"Bearer ${env:TOKEN}\"}")
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        for warning in client.warnings { context.logger.warning("\(warning)", metadata: ["exporter": "\(id)"]) }
        return OTLPHTTPExporter(id: id, endpoints: endpoints, json: encoding == "json", http: http, client: client, retry: retry, queue: queue)
    }
}

final class OTLPHTTPExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal>
    let retry: RetrySettings
    let queue: QueueSettings
    let json: Bool
    let http: HTTPClientSettings
    let targets: [OTLPSignal: (client: HTTPClient, path: String)]

    init(id: ComponentID, endpoints: [OTLPSignal: (HTTPEndpoint, String)], json: Bool, http: HTTPClientSettings, client settings: HTTPClient.Settings,
         retry: RetrySettings, queue: QueueSettings) {
        self.id = id
        self.json = json
        self.http = http
        self.retry = retry
        self.queue = queue
        signals = Set(endpoints.keys)
        // One connection pool per scheme, host and port, shared by the signals.
        var clients: [String: HTTPClient] = [:]
        var targets: [OTLPSignal: (client: HTTPClient, path: String)] = [:]
        for (signal, (endpoint, path)) in endpoints {
            let key = "\(endpoint.scheme)://\(endpoint.authority)"
            let client = clients[key] ?? HTTPClient(endpoint: endpoint, settings: settings)
            clients[key] = client
            targets[signal] = (client, path)
        }
        self.targets = targets
    }

    func start() async throws {}

    func shutdown() async {
        for target in targets.values { await target.client.close() }
    }

    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        guard let target = targets[signal] else { return .permanent(reason: "no \(signal) endpoint configured") }
        var payload: [UInt8]
        if json {
            // JSON has no concatenation rule: send one request per batch.
            for batch in batches {
                let outcome = await send(batch.encodeJSON(), contentType: "application/json", target)
                guard outcome == .delivered else { return outcome }
            }
            return .delivered
        }
        payload = []
        for batch in batches { payload += batch.encodeProtobuf() }
        return await send(payload, contentType: "application/x-protobuf", target)
    }

    private func send(_ payload: [UInt8], contentType: String, _ target: (client: HTTPClient, path: String)) async -> ExportOutcome {
        var headers = HTTPHeaders([("Content-Type", contentType)])
        for (name, value) in http.headers { headers.replaceOrAdd(name: name, value: value) }
        var body = payload
        if http.compression == "gzip", let compressed = Compression.gzip(payload) {
            body = compressed
            headers.add(name: "Content-Encoding", value: "gzip")
        }
        let response: HTTPClientResponse
        do {
            response = try await target.client.send(HTTPClientRequest(target: target.path, headers: headers, body: ByteBuffer(bytes: body)))
        } catch {
            return .retryable(reason: "\(target.client.endpoint): \(error)", after: nil)
        }
        let code = Int(response.status.code)
        // OTLP/HTTP: only 429, 502, 503 and 504 are retryable; other errors are final.
        // https://opentelemetry.io/docs/specs/otlp/#retryable-response-codes
        switch code {
        case 200..<300:
            return .delivered
        case 429, 502, 503, 504:
            return .retryable(reason: "HTTP \(code) from \(target.client.endpoint)\(target.path)", after: response.retryAfter)
        default:
            let text = String(response.bodyText.prefix(300)).filter { !$0.isNewline }
            return .permanent(reason: "HTTP \(code) from \(target.client.endpoint)\(target.path): \(text)")
        }
    }
}

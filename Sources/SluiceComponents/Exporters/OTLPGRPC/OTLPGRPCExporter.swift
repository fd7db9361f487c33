// `otlp`: OTLP/gRPC to another collector or any OTLP/gRPC backend, with the
// Collector's option names (exporter/otlpexporter, config/configgrpc). Unary
// Export calls over HTTP/2 through SluiceNet's client: h2 by ALPN with TLS (the
// default, as in the Collector), prior-knowledge h2c with `tls.insecure: true`.
//
// Which answers are worth a retry is the OTLP specification's
// (https://opentelemetry.io/docs/specs/otlp/#failures): CANCELLED,
// DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are;
// RESOURCE_EXHAUSTED is only when the server sends RetryInfo; every other code is
// final and the data goes to the dead-letter file.
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

public struct OTLPGRPCExporterFactory: ExporterFactory {
    public let type = "otlp_grpc"
    public let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)? {
        let before = config.diagnostics.all.count
        var endpoint: HTTPEndpoint?
        let insecure = config.map("tls")?.bool("insecure") ?? false
        if let text = config.string("endpoint") {
            endpoint = Self.endpoint(text, insecure: insecure)
            if endpoint == nil { config.report("endpoint", "expected host:port (like gateway:4317), or an http:// or https:// URL") }
        } else {
            config.report("endpoint", "missing: set endpoint to the collector's gRPC host:port, like gateway:4317")
        }
        // configgrpc's default compression is gzip, as for OTLP/HTTP; an authenticator's
        // credential goes as call metadata (a header) on every call.
        var settings = HTTPExporterSettings(config, auth: .extensions(context.extensions))
        settings.client.http2 = .required
        if let authority = config.string("authority") { settings.client.authorityOverride = authority }
        config.keysWithoutEffect([("balancer_name", "one endpoint is dialled"), ("keepalive", "connections are checked by their calls' timeout"),
                                                       ("wait_for_ready", "a call to an unreachable server is retried with backoff")])
        config.finish()
        guard config.diagnostics.all.count == before, let endpoint else { return nil }
        if endpoint.scheme == "http" {
            context.logger.warning("OTLP/gRPC exporter sends without TLS (tls.insecure is true or the endpoint is http://)",
                                   metadata: ["exporter": "\(id)", "endpoint": "\(endpoint)"])
        }
        for warning in settings.warnings { context.logger.warning("\(warning)", metadata: ["exporter": "\(id)"]) }
        return OTLPGRPCExporter(id: id, client: HTTPClient(endpoint: endpoint, settings: settings.client), settings: settings)
    }

    /// The Collector takes `host:port` (TLS unless `tls.insecure`), or a URL whose
    /// scheme decides.
    static func endpoint(_ text: String, insecure: Bool) -> HTTPEndpoint? {
        if text.hasPrefix("http://") || text.hasPrefix("https://") { return HTTPEndpoint(text) }
        return HTTPEndpoint((insecure ? "http://" : "https://") + text)
    }
}

final class OTLPGRPCExporter: Exporter {
    let id: ComponentID
    let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    var retry: RetrySettings { settings.retry }
    var queue: QueueSettings { settings.queue }
    let client: HTTPClient
    let settings: HTTPExporterSettings
    var shared: HTTPClientSettings { settings.shared }
    /// The headers every call sends, worked out once.
    let callHeaders: HTTPHeaders
    let secrets: SecretMask
    private let progressMemory = ProgressMemory()

    init(id: ComponentID, client: HTTPClient, settings: HTTPExporterSettings) {
        self.id = id
        self.client = client
        self.settings = settings
        secrets = SecretMask(settings.secrets)
        let shared = settings.shared
        var headers = HTTPHeaders([("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "sluice/\(SluiceVersion.current)")])
        for (name, value) in shared.headers { headers.replaceOrAdd(name: name.lowercased(), value: value) }
        // gRPC's timeout header: "an ASCII string of at most 8 digits" and a unit.
        let (seconds, attoseconds) = shared.timeout.components
        headers.replaceOrAdd(name: "grpc-timeout", value: "\(max(1, min(99_999_999, seconds * 1000 + attoseconds / 1_000_000_000_000_000)))m")
        headers.add(name: "grpc-accept-encoding", value: "identity")
        callHeaders = headers
    }

    func start() async throws {}

    func shutdown() async { await client.close() }

    /// The service's full method name for each signal
    /// (opentelemetry/proto/collector/*/v1/*_service.proto).
    static func path(_ signal: OTLPSignal) -> String {
        switch signal {
        case .logs: "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        case .traces: "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        case .metrics: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        }
    }

    /// One call for every record, as received: concatenated encodings merge into one
    /// message. A message over the server's receive limit (4 MiB by default in gRPC
    /// servers, the Collector's among them) is split by the exporter kit in halves,
    /// down to single requests as they were received, the last one refused alone;
    /// what one half delivered is neither sent again nor dead-lettered because of
    /// the other.
    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        let index = OTLPRecordIndex(batches, signal: signal, wholeRequests: true)
        var progress = progressMemory.take(batches, records: index.count)
        let delivery = PayloadDelivery(
            pack: { records, _ in records.isEmpty ? [] : [index.payload(records, of: batches, signal: signal, settings: self.settings)] },
            send: { payload in await self.call(payload, signal: signal) })
        let result = await delivery.run(&progress)
        if let retry = result.retry {
            progressMemory.keep(progress)
            return .retryable(reason: retry.reason, after: retry.after)
        }
        return PayloadDelivery.outcome(progress, result, records: index, batches: batches, signal: signal, redact: secrets.callAsFunction)
    }

    private func call(_ payload: Payload, signal: OTLPSignal) async -> PayloadAnswer {
        var headers = callHeaders
        // Asked for on each call: a token file may have been rotated since the last.
        if let credential = settings.authenticator?.credentialHeader() { headers.replaceOrAdd(name: credential.name.lowercased(), value: credential.value) }
        if payload.gzipped { headers.add(name: "grpc-encoding", value: "gzip") }
        let request = HTTPClientRequest(target: Self.path(signal), headers: headers, body: GRPCMessage.framed(payload.body, compressed: payload.gzipped))
        let response: HTTPClientResponse
        do {
            response = try await client.send(request)
        } catch {
            return .retry("\(client.endpoint): \(error)", after: nil)
        }
        let status = GRPCStatus(headers: response.headers, trailers: response.trailers)
        if status?.code == .resourceExhausted, status?.retryAfter == nil {
            // Without RetryInfo, RESOURCE_EXHAUSTED is the server's receive limit.
            return .tooLarge("gRPC RESOURCE_EXHAUSTED from \(client.endpoint)\(Self.path(signal)): \(status?.message.prefix(300) ?? "")")
        }
        switch Self.outcome(of: response, status: status, endpoint: "\(client.endpoint)\(Self.path(signal))") {
        case .delivered: return .accepted
        case .retryable(let reason, let after): return .retry(reason, after: after)
        case .permanent(let reason), .partiallyDelivered(_, let reason), .partiallyRetryable(_, let reason, _): return .refused(reason)
        }
    }

    /// `status` is the gRPC status the response carries, if any.
    static func outcome(of response: HTTPClientResponse, status: GRPCStatus?, endpoint: String) -> ExportOutcome {
        guard response.status == .ok else {
            // Not gRPC's answer (a proxy, a load balancer): gRPC maps the HTTP status
            // (doc/http-grpc-status-mapping.md); 429/502/503/504 are UNAVAILABLE.
            let code = Int(response.status.code)
            let reason = "HTTP \(code) from \(endpoint) instead of a gRPC answer"
            return [429, 502, 503, 504].contains(code) ? .retryable(reason: reason, after: response.retryAfter) : .permanent(reason: reason)
        }
        guard let status else {
            return .retryable(reason: "\(endpoint) answered without grpc-status (the stream ended early)", after: nil)
        }
        let reason = "gRPC \(status.code.name) from \(endpoint)\(status.message.isEmpty ? "" : ": \(status.message.prefix(300))")"
        switch status.code {
        case .ok:
            return .delivered
        case .cancelled, .deadlineExceeded, .aborted, .outOfRange, .unavailable, .dataLoss:
            return .retryable(reason: reason, after: status.retryAfter)
        case .resourceExhausted where status.retryAfter != nil:
            return .retryable(reason: reason, after: status.retryAfter)
        default:
            return .permanent(reason: reason)
        }
    }
}

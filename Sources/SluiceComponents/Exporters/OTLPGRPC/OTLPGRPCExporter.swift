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
    public let type = "otlp"
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
        // configgrpc's default compression is gzip, as for OTLP/HTTP.
        let shared = HTTPClientSettings(config, defaultCompression: "gzip")
        var client = HTTPClient.Settings(exporterConfig: config, shared: shared)
        client.http2 = .required
        if let authority = config.string("authority") { client.authorityOverride = authority }
        let retry = RetrySettings(config.map("retry_on_failure"))
        let queue = QueueSettings(config.map("sending_queue"))
        config.refuseClientAuthenticator(instead: "send the credential as a header, e.g. headers: {authorization: \"Bearer ${env:TOKEN}\"}")
        config.accept("balancer_name", "keepalive", "read_buffer_size", "write_buffer_size", "wait_for_ready")
        config.finish()
        guard config.diagnostics.all.count == before, let endpoint else { return nil }
        if endpoint.scheme == "http" {
            context.logger.warning("OTLP/gRPC exporter sends without TLS (tls.insecure is true or the endpoint is http://)",
                                   metadata: ["exporter": "\(id)", "endpoint": "\(endpoint)"])
        }
        for warning in client.warnings { context.logger.warning("\(warning)", metadata: ["exporter": "\(id)"]) }
        return OTLPGRPCExporter(id: id, client: HTTPClient(endpoint: endpoint, settings: client), shared: shared, retry: retry, queue: queue)
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
    let retry: RetrySettings
    let queue: QueueSettings
    let client: HTTPClient
    let shared: HTTPClientSettings
    /// The headers every call sends, worked out once.
    let callHeaders: HTTPHeaders
    let secrets: SecretMask

    init(id: ComponentID, client: HTTPClient, shared: HTTPClientSettings, retry: RetrySettings, queue: QueueSettings) {
        self.id = id
        self.client = client
        self.shared = shared
        secrets = SecretMask(SecretMask.secrets(inHeaders: shared.headers))
        self.retry = retry
        self.queue = queue
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

    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome {
        let (outcome, tooLarge) = await send(batches, signal: signal)
        // A message over the server's receive limit (4 MiB by default in gRPC
        // servers, the Collector's among them) is sent again in halves, down to
        // single requests as they were received.
        guard tooLarge, batches.count > 1 else { return outcome }
        let half = batches.count / 2
        let first = Array(batches[..<half]), second = Array(batches[half...])
        return await Self.combine(await export(first, signal: signal), of: first, then: second) { await self.export(second, signal: signal) }
    }

    /// The outcome of sending `first` and then `second` as separate calls, so that
    /// what one half delivered is neither sent again nor dead-lettered because of
    /// the other half.
    static func combine(_ outcome: ExportOutcome, of first: [OTLPBatch], then second: [OTLPBatch],
                        _ sendSecond: () async -> ExportOutcome) async -> ExportOutcome {
        var rejected: [OTLPBatch] = []
        var rejectReason = ""
        var nothingDelivered = false
        switch outcome {
        case .retryable:
            return outcome  // nothing delivered: everything is tried again
        case .partiallyRetryable(let remaining, let reason, let after):
            return .partiallyRetryable(remaining: remaining + second, reason: reason, after: after)
        case .delivered:
            break
        case .permanent(let reason):
            rejected = first
            rejectReason = reason
            nothingDelivered = true
        case .partiallyDelivered(let refused, let reason):
            rejected = refused
            rejectReason = reason
        }
        switch await sendSecond() {
        case .delivered:
            return rejected.isEmpty ? .delivered : .partiallyDelivered(rejected: rejected, reason: rejectReason)
        case .permanent(let reason):
            return nothingDelivered ? .permanent(reason: reason) : .partiallyDelivered(rejected: rejected + second, reason: reason)
        case .partiallyDelivered(let refused, let reason):
            return .partiallyDelivered(rejected: rejected + refused, reason: reason)
        case .retryable(let reason, let after):
            // Refused items of the first half go round again with the second half
            // (and are refused again): the outcome cannot carry both.
            return .partiallyRetryable(remaining: rejected + second, reason: reason, after: after)
        case .partiallyRetryable(let remaining, let reason, let after):
            return .partiallyRetryable(remaining: rejected + remaining, reason: reason, after: after)
        }
    }

    private func send(_ batches: [OTLPBatch], signal: OTLPSignal) async -> (ExportOutcome, tooLarge: Bool) {
        // Concatenated encodings merge into one request (repeated fields append).
        var message: [UInt8] = []
        for batch in batches { message += batch.encodeProtobuf() }
        var headers = callHeaders
        var compressed = false
        if shared.compression == "gzip", let gzipped = Compression.gzip(message) {
            message = gzipped
            compressed = true
            headers.add(name: "grpc-encoding", value: "gzip")
        }
        let request = HTTPClientRequest(target: Self.path(signal), headers: headers, body: GRPCMessage.framed(message, compressed: compressed))
        let response: HTTPClientResponse
        do {
            response = try await client.send(request)
        } catch {
            return (.retryable(reason: "\(client.endpoint): \(error)", after: nil), false)
        }
        let status = GRPCStatus(headers: response.headers, trailers: response.trailers)
        let tooLarge = status?.code == .resourceExhausted && status?.retryAfter == nil
        return (Self.outcome(of: response, status: status, endpoint: "\(client.endpoint)\(Self.path(signal))"), tooLarge)
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

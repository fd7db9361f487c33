import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet
import Synchronization

/// `health_check`: 200 while the pipelines run, 503 while starting or shutting down,
/// on `endpoint` (default localhost:13133, as the Collector's since v0.104) and `path` (default `/`), as the
/// Collector's extension answers Kubernetes probes.
public struct HealthCheckExtensionFactory: ExtensionFactory {
    public let type = "health_check"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Extension)? {
        let before = config.diagnostics.all.count
        var endpoint = HostPort(host: "localhost", port: 13133)
        if let text = config.string("endpoint") {
            if let parsed = HostPort(text) { endpoint = parsed } else { config.report("endpoint", "expected host:port, like localhost:13133") }
        }
        let path = config.string("path") ?? "/"
        if !path.hasPrefix("/") { config.report("path", "must start with \"/\", like /health/status") }
        // `response_body`: the Collector's {healthy, unhealthy} texts in place of the JSON status.
        var bodies: HealthCheckExtension.Bodies?
        if let section = config.map("response_body") {
            bodies = HealthCheckExtension.Bodies(healthy: section.string("healthy") ?? "", unhealthy: section.string("unhealthy") ?? "")
            section.finish()
        }
        // `tls`: probes over HTTPS (the kubelet's httpGet with scheme: HTTPS).
        let tls = config.has("tls") ? ReceiverTLS(config, alpn: ["http/1.1"], transport: "health", context: context) : nil
        if config.has("auth") {
            config.accept("auth")
            config.report("auth", "not supported on health_check: it answers only whether Sluice runs; bind it to the pod's own address (or localhost) instead")
        }
        config.keysWithoutEffect([("check_collector_pipeline", "the Collector deprecated it; the answer is 503 while Sluice starts or stops, and exporters' health is on /status"),
                                  ("cors", "probes do not come from browsers")])
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        return HealthCheckExtension(id: id, endpoint: endpoint, path: path, bodies: bodies, tls: tls, context: context)
    }
}

final class HealthCheckExtension: Extension {
    let id: ComponentID
    let endpoint: HostPort
    let path: String
    let bodies: Bodies?
    let tls: ReceiverTLS?
    let context: ComponentContext
    private let server = Mutex<HTTPServer?>(nil)

    /// `response_body`: plain texts for the two answers.
    struct Bodies: Sendable {
        var healthy: String
        var unhealthy: String
    }

    init(id: ComponentID, endpoint: HostPort, path: String, bodies: Bodies? = nil, tls: ReceiverTLS? = nil, context: ComponentContext) {
        self.id = id
        self.endpoint = endpoint
        self.path = path
        self.bodies = bodies
        self.tls = tls
        self.context = context
    }

    struct Responder: HTTPRequestResponder {
        let path: String
        let bodies: Bodies?
        let health: HealthState
        func respond(to request: HTTPServerRequest, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPServerResponse> {
            guard request.path == path else { return eventLoop.makeSucceededFuture(.text(.notFound, "not found\n")) }
            let phase = health.current
            let status: HTTPResponseStatus = phase == .running ? .ok : .serviceUnavailable
            if let bodies {
                return eventLoop.makeSucceededFuture(.text(status, phase == .running ? bodies.healthy : bodies.unhealthy))
            }
            let body = "{\"status\":\"\(phase == .running ? "Server available" : "Server not available")\",\"phase\":\"\(phase.rawValue)\"}\n"
            return eventLoop.makeSucceededFuture(HTTPServerResponse(status: status, contentType: "application/json", body: Array(body.utf8)))
        }
    }

    func start(health: HealthState) async throws {
        let started = try await HTTPServer.start(at: endpoint, name: "\(id)", limits: HTTPServerLimits(maxBodyBytes: 4096),
                                                 responder: Responder(path: path, bodies: bodies, health: health), tls: tls?.context)
        server.withLock { $0 = started }
        context.logger.info("health check listening", metadata: ["extension": "\(id)", "endpoint": "\(endpoint)", "path": "\(path)", "tls": "\(tls == nil ? "off" : "on")"])
        for warning in tls?.warnings ?? [] { context.logger.warning("\(warning)", metadata: ["extension": "\(id)"]) }
        ListenerExposure.warnIfOpen(endpoint, listener: "extensions.\(id)", tls: tls != nil, auth: false, logger: context.logger)
    }

    func shutdown() async {
        let running = server.withLock { s -> HTTPServer? in defer { s = nil }; return s }
        await running?.close()
    }
}

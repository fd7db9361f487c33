import NIOCore
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
            if let parsed = HostPort(text) { endpoint = parsed } else { config.report("endpoint", "expected host:port, like localhost:13133 (0.0.0.0:13133 for the kubelet's probes from outside the pod)") }
        }
        var path = config.string("path") ?? "/"
        if !path.hasPrefix("/") { path = "/" + path }
        config.accept("check_collector_pipeline", "response_body", "tls", "cors", "auth")
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        return HealthCheckExtension(id: id, endpoint: endpoint, path: path, context: context)
    }
}

final class HealthCheckExtension: Extension {
    let id: ComponentID
    let endpoint: HostPort
    let path: String
    let context: ComponentContext
    private let server = Mutex<HTTPServer?>(nil)

    init(id: ComponentID, endpoint: HostPort, path: String, context: ComponentContext) {
        self.id = id
        self.endpoint = endpoint
        self.path = path
        self.context = context
    }

    struct Responder: HTTPRequestResponder {
        let path: String
        let health: HealthState
        func respond(to request: HTTPServerRequest, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPServerResponse> {
            guard request.path == path else { return eventLoop.makeSucceededFuture(.text(.notFound, "not found\n")) }
            let phase = health.current
            let body = "{\"status\":\"\(phase == .running ? "Server available" : "Server not available")\",\"phase\":\"\(phase.rawValue)\"}\n"
            return eventLoop.makeSucceededFuture(HTTPServerResponse(
                status: phase == .running ? .ok : .serviceUnavailable, contentType: "application/json", body: Array(body.utf8)))
        }
    }

    func start(health: HealthState) async throws {
        let started = try await HTTPServer.start(at: endpoint, name: "\(id)", limits: HTTPServerLimits(maxBodyBytes: 4096), responder: Responder(path: path, health: health))
        server.withLock { $0 = started }
        context.logger.info("health check listening", metadata: ["extension": "\(id)", "endpoint": "\(endpoint)", "path": "\(path)"])
        ListenerExposure.warnIfOpen(endpoint, listener: "extensions.\(id)", tls: false, auth: false, logger: context.logger)
    }

    func shutdown() async {
        let running = server.withLock { s -> HTTPServer? in defer { s = nil }; return s }
        await running?.close()
    }
}

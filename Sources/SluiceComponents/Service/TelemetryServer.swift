import NIOCore
import SluiceCore
import SluiceNet

/// `/metrics` (Prometheus text) and `/status` (per-exporter JSON) on
/// `service.telemetry.metrics.address`.
struct TelemetryResponder: HTTPRequestResponder {
    let metrics: MetricsRegistry
    let board: StatusBoard
    /// `service.telemetry`: its views and resource shape `/metrics`.
    var telemetry = TelemetryConfig()

    func respond(to request: HTTPServerRequest, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPServerResponse> {
        let response: HTTPServerResponse
        switch request.path {
        case "/metrics":
            response = HTTPServerResponse(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array((MetricsRegistry.targetInfo(telemetry.resource) + metrics.exposition(dropping: telemetry.drops)).utf8))
        case "/status":
            response = HTTPServerResponse(status: .ok, contentType: "application/json", body: board.json())
        default:
            response = .text(.notFound, "try /metrics or /status\n")
        }
        return eventLoop.makeSucceededFuture(response)
    }
}

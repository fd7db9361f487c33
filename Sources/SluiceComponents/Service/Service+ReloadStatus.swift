import Foundation
import NIOCore
import SluiceCore
import SluiceNet
import Synchronization

/// Counts reloads and remembers the last one, for `/metrics`
/// (`sluice_config_reloads_total{result=…}`) and `/status` (`"reload":{…}`).
final class ReloadRecorder: Sendable {
    struct Last: Sendable {
        let succeeded: Bool
        let at: Date
        let problems: [String]
    }

    private let succeeded: Counter
    private let failed: Counter
    private let last = Mutex<Last?>(nil)
    /// The gauge's value, kept apart so its closure captures a value, not `self`.
    private let lastSucceeded = Atomic<Bool>(true)

    init(metrics: MetricsRegistry) {
        succeeded = metrics.counter("sluice_config_reloads_total", "Configuration reloads, by result.", labels: [("result", "success")])
        failed = metrics.counter("sluice_config_reloads_total", "Configuration reloads, by result.", labels: [("result", "failure")])
        metrics.gauge("sluice_config_last_reload_successful", "1 when the last reload was applied, 0 when it was refused (1 before any).") { [weak self] in
            (self?.lastSucceeded.load(ordering: .relaxed) ?? true) ? 1 : 0
        }
    }

    func record(_ result: Service.ReloadResult) {
        switch result {
        case .applied:
            succeeded.increment()
            lastSucceeded.store(true, ordering: .relaxed)
            last.withLock { $0 = Last(succeeded: true, at: Date(), problems: []) }
        case .refused(let problems):
            failed.increment()
            lastSucceeded.store(false, ordering: .relaxed)
            last.withLock { $0 = Last(succeeded: false, at: Date(), problems: problems.map(\.description)) }
        }
    }

    /// `"reload":{"result":"failure","at":"…","problems":["collector.yaml:12 …"]}`, or
    /// `"reload":null` before the first.
    func json() -> [UInt8] {
        var out = JSONOutput()
        out.append(ascii: "\"reload\":")
        guard let last = last.withLock({ $0 }) else {
            out.appendNull()
            return out.bytes
        }
        out.append(ascii: "{\"result\":")
        out.appendString(last.succeeded ? "success" : "failure")
        out.append(ascii: ",\"at\":")
        out.appendString(ISO8601DateFormatter().string(from: last.at))
        out.append(ascii: ",\"problems\":[")
        for (i, problem) in last.problems.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.appendString(problem)
        }
        out.append(ascii: "]}")
        return out.bytes
    }
}

/// `/metrics` and `/status` for a service whose exporters a reload can change: the
/// status board is the current generation's, and `/status` adds the last reload.
struct ServiceTelemetryResponder: HTTPRequestResponder {
    let metrics: MetricsRegistry
    weak var service: Service?

    func respond(to request: HTTPServerRequest, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPServerResponse> {
        guard let service else { return eventLoop.makeSucceededFuture(.text(.serviceUnavailable, "stopping\n")) }
        let plain = TelemetryResponder(metrics: metrics, board: service.board, telemetry: service.telemetry)
        guard request.path == "/status" else { return plain.respond(to: request, on: eventLoop) }
        // The board writes `{"exporters":{…}}\n`; the reload goes in before the last brace.
        var body = service.board.json()
        while let last = body.last, last == UInt8(ascii: "\n") || last == UInt8(ascii: "}") {
            body.removeLast()
            if last == UInt8(ascii: "}") { break }
        }
        body += Array(",".utf8) + service.reloads.json() + Array("}\n".utf8)
        return eventLoop.makeSucceededFuture(HTTPServerResponse(status: .ok, contentType: "application/json", body: body))
    }
}

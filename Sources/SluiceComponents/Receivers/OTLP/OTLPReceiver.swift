import Logging
import NIOCore
import SluiceCore
import SluiceNet
import Synchronization

/// The `otlp` receiver: OTLP/HTTP (protobuf and JSON) on `protocols.http.endpoint`.
public struct OTLPReceiverFactory: ReceiverFactory {
    public let type = "otlp"
    public let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Receiver)? {
        guard let settings = OTLPReceiverConfig(config) else { return nil }
        return OTLPReceiver(id: id, config: settings, context: context)
    }
}

final class OTLPReceiver: Receiver {
    let id: ComponentID
    let config: OTLPReceiverConfig
    let context: ComponentContext
    private let server = Mutex<HTTPServer?>(nil)

    init(id: ComponentID, config: OTLPReceiverConfig, context: ComponentContext) {
        self.id = id
        self.config = config
        self.context = context
    }

    func start(sink: any ReceiverSink) async throws {
        if let grpc = config.grpcEndpoint {
            context.logger.warning("OTLP/gRPC is not served by this build; clients must use OTLP/HTTP",
                                   metadata: ["receiver": "\(id)", "grpc_endpoint": "\(grpc)"])
        }
        guard let http = config.http else { return }
        let responder = OTLPHTTPResponder(id: id, config: http, sink: sink,
                                          counters: ReceiverCounters(id: id, transport: "http", metrics: context.metrics))
        let limits = HTTPServerLimits(maxBodyBytes: http.maxRequestBodySize, readTimeout: http.readTimeout, idleTimeout: http.idleTimeout)
        let started = try await HTTPServer.start(at: http.endpoint, limits: limits, responder: responder)
        server.withLock { $0 = started }
        context.logger.info("OTLP/HTTP receiver listening", metadata: ["receiver": "\(id)", "endpoint": "\(started.localAddress.map { "\($0)" } ?? "\(http.endpoint)")"])
    }

    func shutdown() async {
        let running = server.withLock { s -> HTTPServer? in defer { s = nil }; return s }
        await running?.close()
    }
}

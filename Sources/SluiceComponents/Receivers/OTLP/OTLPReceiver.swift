import Logging
import NIOCore
import SluiceCore
import SluiceNet

/// The `otlp` receiver: OTLP/HTTP (protobuf and JSON) on `protocols.http.endpoint`
/// and OTLP/gRPC on `protocols.grpc.endpoint`, each on its own server.
public struct OTLPReceiverFactory: ReceiverFactory {
    public let type = "otlp"
    public let signals: Set<OTLPSignal> = [.logs, .traces, .metrics]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Receiver)? {
        guard let settings = OTLPReceiverConfig(config, context: context) else { return nil }
        return OTLPReceiver(id: id, config: settings, context: context)
    }
}

final class OTLPReceiver: Receiver {
    let id: ComponentID
    let config: OTLPReceiverConfig
    let context: ComponentContext
    private let servers: ReceiverServers

    init(id: ComponentID, config: OTLPReceiverConfig, context: ComponentContext) {
        self.id = id
        self.config = config
        self.context = context
        servers = ReceiverServers(id: id, context: context)
    }

    func start(sink: any ReceiverSink) async throws {
        if let http = config.http {
            let responder = OTLPHTTPResponder(id: id, config: http, sink: sink,
                                              counters: ReceiverCounters(id: id, transport: "http", metrics: context.metrics))
            try await servers.serve("OTLP/HTTP", listener: "receivers.\(id).protocols.http", settings: http.server, responder: responder)
        }
        if let grpc = config.grpc {
            let responder = OTLPGRPCResponder(id: id, config: grpc, sink: sink,
                                              counters: ReceiverCounters(id: id, transport: "grpc", metrics: context.metrics))
            // The body is one message and its 5-byte prefix; a larger one is
            // refused by the server as RESOURCE_EXHAUSTED before it is read whole.
            var limits = HTTPServerLimits(maxBodyBytes: grpc.maxRecvMsgSize + 5, headerTimeout: grpc.headerTimeout, readTimeout: grpc.readTimeout,
                                          idleTimeout: grpc.idleTimeout, maxConnections: grpc.maxConnections)
            if let streams = grpc.maxConcurrentStreams { limits.maxConcurrentStreams = streams }
            do {
                try await servers.serve("OTLP/gRPC", transport: "grpc", listener: "receivers.\(id).protocols.grpc", at: grpc.endpoint, limits: limits,
                                        responder: responder, tls: grpc.tls, auth: grpc.auth)
            } catch {
                await shutdown()  // the HTTP server, if it started
                throw error
            }
        }
    }

    func shutdown() async {
        await servers.shutdown()
    }
}

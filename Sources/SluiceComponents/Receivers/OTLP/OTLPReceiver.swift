import Logging
import NIOCore
import SluiceCore
import SluiceNet
import Synchronization

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
    private let servers = Mutex<[HTTPServer]>([])

    init(id: ComponentID, config: OTLPReceiverConfig, context: ComponentContext) {
        self.id = id
        self.config = config
        self.context = context
    }

    func start(sink: any ReceiverSink) async throws {
        if let http = config.http {
            let responder = OTLPHTTPResponder(id: id, config: http, sink: sink,
                                              counters: ReceiverCounters(id: id, transport: "http", metrics: context.metrics))
            let limits = HTTPServerLimits(maxBodyBytes: http.maxRequestBodySize, headerTimeout: http.headerTimeout, readTimeout: http.readTimeout,
                                          idleTimeout: http.idleTimeout, maxConnections: http.maxConnections)
            try await serve("OTLP/HTTP", transport: "http", at: http.endpoint, limits: limits, responder: responder, tls: http.tls, auth: http.auth)
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
                try await serve("OTLP/gRPC", transport: "grpc", at: grpc.endpoint, limits: limits, responder: responder, tls: grpc.tls, auth: grpc.auth)
            } catch {
                await shutdown()  // the HTTP server, if it started
                throw error
            }
        }
    }

    private func serve(_ name: String, transport: String, at endpoint: HostPort, limits: HTTPServerLimits, responder: any HTTPRequestResponder,
                       tls: ReceiverTLS?, auth: ReceiverAuth?) async throws {
        let started = try await HTTPServer.start(at: endpoint, name: "\(id):\(transport)", limits: limits, responder: responder, tls: tls?.context)
        servers.withLock { $0.append(started) }
        var metadata: Logger.Metadata = ["receiver": "\(id)", "endpoint": "\(started.localAddress.map { "\($0)" } ?? "\(endpoint)")",
                                         "tls": "\(tls == nil ? "off" : tls?.context.settings.clientCAFile == nil ? "on" : "mutual")"]
        if let auth { metadata["authenticator"] = "\(auth.id)" }
        for warning in tls?.warnings ?? [] { context.logger.warning("\(warning)", metadata: ["receiver": "\(id)"]) }
        context.logger.info("\(name) receiver listening", metadata: metadata)
        ListenerExposure.warnIfOpen(endpoint, listener: "receivers.\(id).protocols.\(transport)", tls: tls != nil, auth: auth != nil,
                                    logger: context.logger)
    }

    func shutdown() async {
        let running = servers.withLock { s -> [HTTPServer] in defer { s = [] }; return s }
        for server in running { await server.close() }
    }
}

import Logging
import SluiceCore
import SluiceNet
import Synchronization

/// The servers one receiver runs (one per protocol), started with the same log
/// lines and exposure warning, and closed together.
final class ReceiverServers: Sendable {
    let id: ComponentID
    let context: ComponentContext
    private let servers = Mutex<[HTTPServer]>([])

    init(id: ComponentID, context: ComponentContext) {
        self.id = id
        self.context = context
    }

    /// Starts a server for `responder` at `endpoint`; `transport` names it in
    /// metrics and in the configuration path of the exposure warning (`http`,
    /// `grpc`), `listener` that path itself.
    func serve(_ name: String, transport: String, listener: String, at endpoint: HostPort, limits: HTTPServerLimits,
               responder: any HTTPRequestResponder, tls: ReceiverTLS?, auth: ReceiverAuth?) async throws {
        let started = try await HTTPServer.start(at: endpoint, name: "\(id):\(transport)", limits: limits, responder: responder, tls: tls?.context)
        servers.withLock { $0.append(started) }
        var metadata: Logger.Metadata = ["receiver": "\(id)", "endpoint": "\(started.localAddress.map { "\($0)" } ?? "\(endpoint)")",
                                         "tls": "\(tls == nil ? "off" : tls?.context.settings.clientCAFile == nil ? "on" : "mutual")"]
        if let auth { metadata["authenticator"] = "\(auth.id)" }
        for warning in tls?.warnings ?? [] { context.logger.warning("\(warning)", metadata: ["receiver": "\(id)"]) }
        context.logger.info("\(name) receiver listening", metadata: metadata)
        ListenerExposure.warnIfOpen(endpoint, listener: listener, tls: tls != nil, auth: auth != nil, logger: context.logger)
    }

    /// An HTTP receiver's server, from its shared settings.
    func serve(_ name: String, listener: String, settings: HTTPReceiverSettings, responder: any HTTPRequestResponder) async throws {
        try await serve(name, transport: "http", listener: listener, at: settings.endpoint, limits: settings.serverLimits,
                        responder: responder, tls: settings.tls, auth: settings.auth)
    }

    func shutdown() async {
        let running = servers.withLock { s -> [HTTPServer] in defer { s = [] }; return s }
        for server in running { await server.close() }
    }
}

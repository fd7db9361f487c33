import SluiceCore
import SluiceNet

/// The `events` receiver: an AI gateway's own JSON decision events (docs/events.md)
/// posted to `/v1/events`, each turned into a log record (EventLogMapping), with
/// the OTLP receiver's limits, TLS, authentication, deadlines and backpressure
/// (the receiver kit). Logs only: in a traces or metrics pipeline it is a
/// configuration error.
public struct EventsReceiverFactory: ReceiverFactory {
    public let type = "events"
    public let signals: Set<OTLPSignal> = [.logs]
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Receiver)? {
        guard let settings = EventsReceiverConfig(config, context: context) else { return nil }
        return EventsReceiver(id: id, config: settings, context: context)
    }
}

final class EventsReceiver: Receiver {
    let id: ComponentID
    let config: EventsReceiverConfig
    let context: ComponentContext
    private let servers: ReceiverServers

    init(id: ComponentID, config: EventsReceiverConfig, context: ComponentContext) {
        self.id = id
        self.config = config
        self.context = context
        servers = ReceiverServers(id: id, context: context)
    }

    func start(sink: any ReceiverSink) async throws {
        let responder = EventsHTTPResponder(id: id, config: config, sink: sink,
                                            counters: ReceiverCounters(id: id, transport: "http", metrics: context.metrics))
        try await servers.serve("events", listener: "receivers.\(id)", settings: config.server, responder: responder)
    }

    func shutdown() async {
        await servers.shutdown()
    }
}

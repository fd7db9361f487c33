import Logging

/// What every component gets when it is built.
public struct ComponentContext: Sendable {
    public var logger: Logger
    public var metrics: MetricsRegistry
    /// Where components keep files by default (`./data`): the file exporter's
    /// output, dead-letter files.
    public var dataDirectory: String
    /// The extensions listed in `service.extensions`, built before any receiver so a
    /// receiver can find the authenticator its `auth.authenticator` names.
    public var extensions: [ComponentID: any Extension] = [:]

    public init(logger: Logger, metrics: MetricsRegistry = .shared, dataDirectory: String = "data") {
        self.logger = logger
        self.metrics = metrics
        self.dataDirectory = dataDirectory
    }
}

public enum ComponentKind: String, Sendable, CaseIterable {
    case receiver, processor, exporter, connector, `extension`

    public var section: String {
        switch self {
        case .receiver: "receivers"
        case .processor: "processors"
        case .exporter: "exporters"
        case .connector: "connectors"
        case .extension: "extensions"
        }
    }
}

// MARK: Receivers

/// Takes telemetry in and hands each decoded request to a `ReceiverSink`.
public protocol Receiver: AnyObject, Sendable {
    var id: ComponentID { get }
    func start(sink: ReceiverSink) async throws
    /// Stops accepting; requests in flight finish.
    func shutdown() async
}

/// What a receiver hears back for one request.
public enum AcceptResult: Sendable, Equatable {
    /// In the pipeline log (every pipeline the signal goes to). `rejected` items were
    /// dropped on purpose by processors, and the client is told so (partial success).
    case accepted(rejected: Int, message: String?)
    /// Not taken; the client should retry after the given time (429/503,
    /// RESOURCE_EXHAUSTED/UNAVAILABLE).
    case refused(RefusalReason, retryAfter: Duration)
}

public enum RefusalReason: Sendable, Equatable, CustomStringConvertible {
    case logFull(pipeline: String)
    /// The disk log could not store the request (disk full, I/O error).
    case storageUnavailable(pipeline: String)
    case memoryLimit
    case shuttingDown
    case noPipeline(OTLPSignal)
    /// A processor or connector could not handle the data as configured (an OTTL
    /// condition failed with `error_mode: propagate`): a retry would fail the same
    /// way, so the client hears 400 / INVALID_ARGUMENT and the reason.
    case unprocessable(String)

    public var description: String {
        switch self {
        case .logFull(let pipeline): "pipeline \(pipeline) is full; retry later"
        case .storageUnavailable(let pipeline): "pipeline \(pipeline) cannot store data right now; retry later"
        case .memoryLimit: "memory limit reached; retry later"
        case .shuttingDown: "the collector is shutting down"
        case .noPipeline(let signal): "no pipeline takes \(signal) from this receiver"
        case .unprocessable(let why): why
        }
    }

    /// 429 tells an OTLP client to slow down; 503 that the server cannot take it now.
    public var httpStatus: Int {
        switch self {
        case .logFull: 429
        case .unprocessable: 400
        case .memoryLimit, .shuttingDown, .noPipeline, .storageUnavailable: 503
        }
    }
}

/// Where a receiver delivers: runs the processors of every pipeline that takes the
/// signal from this receiver, then appends to their logs. `completion` is called
/// once, when every log has the data (for a disk log: written, and fsynced when
/// asked for) or when it was refused; the client is answered then.
public protocol ReceiverSink: Sendable {
    func accept(_ batch: OTLPBatch, completion: @escaping @Sendable (AcceptResult) -> Void)
    /// Whether any pipeline takes this signal from the receiver (else 404-like answers).
    func takes(_ signal: OTLPSignal) -> Bool
    /// Why a request of this signal and body size would be refused right now, before
    /// it is even decoded (a log without room for it): answering 429 early spares the
    /// decode. `nil` when there is room.
    func refusalBeforeDecoding(_ signal: OTLPSignal, bodyBytes: Int) -> AcceptResult?
}

// MARK: Processors

public enum ProcessOutcome: Sendable {
    /// Continue, with `dropped` items removed on purpose (filtering).
    case pass(dropped: Int)
    case refuse(RefusalReason, retryAfter: Duration)
}

/// Edits a batch in place before it is appended to the pipeline log.
public protocol Processor: Sendable {
    var id: ComponentID { get }
    func process(_ batch: OTLPBatch) -> ProcessOutcome
    /// How this processor shapes exporter payloads (only `batch` has one).
    var batchShape: BatchShape? { get }
    func start() async throws
    func shutdown() async
}

extension Processor {
    public var batchShape: BatchShape? { nil }
    public func start() async throws {}
    public func shutdown() async {}
}

/// A processor whose change depends on the order batches enter the pipeline log (a
/// hash chain): the fanout calls `seal` after every processor of the pipeline has
/// run, wherever this one is listed, and `seal` calls `append` while it holds
/// whatever keeps that order. When `append` returns false (the log refused the
/// batch) the seal is undone, so a client's retry does not leave a gap.
public protocol AppendOrderedProcessor: Processor {
    /// `nil` when sealing needed memory it could not get (the request is refused).
    /// `pipeline` names the log being appended to: one processor listed in two
    /// pipelines keeps an order per pipeline, since each delivers its own copy.
    func seal(_ batch: OTLPBatch, pipeline: String, append: () -> Bool) -> Bool?
}

/// The batch processor's settings: how exporter payloads are grouped. They shape
/// what is read from the pipeline log; acknowledged data is never held in memory
/// only to be batched.
public struct BatchShape: Sendable, Equatable {
    /// Send when this many items are waiting…
    public var sendBatchSize: Int = 8192
    /// …or when the oldest waiting item has waited this long.
    public var timeout: Duration = .milliseconds(200)
    /// Never more items than this in one payload (0 = no limit).
    public var sendBatchMaxSize: Int = 0

    public init(sendBatchSize: Int = 8192, timeout: Duration = .milliseconds(200), sendBatchMaxSize: Int = 0) {
        self.sendBatchSize = sendBatchSize
        self.timeout = timeout
        self.sendBatchMaxSize = sendBatchMaxSize
    }

    /// Without a batch processor each request is sent as it came.
    public static let unbatched = BatchShape(sendBatchSize: 1, timeout: .zero, sendBatchMaxSize: 0)
}

// MARK: Exporters

/// How one delivery attempt ended.
public enum ExportOutcome: Sendable, Equatable {
    case delivered
    /// Try again later; `after` is the destination's Retry-After, when it gave one.
    case retryable(reason: String, after: Duration?)
    /// The destination will never take this data: it goes to the dead-letter file.
    case permanent(reason: String)
    /// Everything was delivered except some items the destination refused for good
    /// (one oversized or malformed event must not sink its whole batch). `rejected`
    /// holds new batches with just those items: they go to the dead-letter file with
    /// `reason`, and the rest counts as delivered.
    case partiallyDelivered(rejected: [OTLPBatch], reason: String)
    /// Some batches were delivered and the rest failed in a way worth retrying (a
    /// payload split in halves whose second half met an outage): only `remaining`
    /// is tried again, so the destination does not get the delivered part twice.
    case partiallyRetryable(remaining: [OTLPBatch], reason: String, after: Duration?)

    // Batches have no value equality; the same batch objects are the same outcome.
    public static func == (lhs: ExportOutcome, rhs: ExportOutcome) -> Bool {
        switch (lhs, rhs) {
        case (.delivered, .delivered): true
        case let (.retryable(a, x), .retryable(b, y)): a == b && x == y
        case let (.permanent(a), .permanent(b)): a == b
        case let (.partiallyDelivered(x, a), .partiallyDelivered(y, b)):
            a == b && x.count == y.count && zip(x, y).allSatisfy { $0 === $1 }
        case let (.partiallyRetryable(x, a, p), .partiallyRetryable(y, b, q)):
            a == b && p == q && x.count == y.count && zip(x, y).allSatisfy { $0 === $1 }
        default: false
        }
    }
}

/// Sends batches to a destination. Retry, status, dead-letter and batching are done
/// for it by `ExporterDelivery`; an exporter only classifies each attempt.
public protocol Exporter: AnyObject, Sendable {
    var id: ComponentID { get }
    var signals: Set<OTLPSignal> { get }
    var retry: RetrySettings { get }
    var queue: QueueSettings { get }
    func start() async throws
    /// One attempt to send these batches (already shaped by the pipeline's batch
    /// settings) as one or more payloads.
    func export(_ batches: [OTLPBatch], signal: OTLPSignal) async -> ExportOutcome
    func shutdown() async
    /// The configured credentials this exporter sends. `ExporterDelivery` masks them
    /// in every reason before it reaches `/status`, the log or the dead-letter file,
    /// whatever a destination echoes back.
    var secrets: SecretMask { get }
}

extension Exporter {
    public var secrets: SecretMask { SecretMask([]) }
}

// MARK: Connectors

/// The exporter of one pipeline and the receiver of others (the Collector's
/// `connectors:`). Sluice resolves a connector when it assembles the pipelines: the
/// pipeline that exports to it hands each batch, after its own processors, to
/// `route`, and the pieces go on to the pipelines it names, through their
/// processors into their logs, before the client is answered. Nothing is held in
/// between, so what a client was told is stored is stored in every target.
public protocol Connector: Sendable {
    var id: ComponentID { get }
    /// Splits a batch among the pipelines that receive from this connector.
    func route(_ batch: OTLPBatch) -> ConnectorOutcome
}

public enum ConnectorOutcome {
    /// Each piece and the pipelines it goes to (each gets its own copy). `unrouted`
    /// items matched no route and have no default: dropped, reported to the client
    /// as a partial success.
    case routed([(pipelines: [ComponentID], batch: OTLPBatch)], unrouted: Int)
    case refuse(RefusalReason, retryAfter: Duration)
}

/// The pipelines a connector stands between.
public struct ConnectorPipelines: Sendable {
    /// Pipelines that list the connector among their exporters.
    public var from: [PipelineConfig]
    /// Pipelines that list it among their receivers: where it may send.
    public var to: [PipelineConfig]

    public init(from: [PipelineConfig], to: [PipelineConfig]) {
        self.from = from
        self.to = to
    }
}

public protocol ConnectorFactory: Sendable {
    var type: String { get }
    /// The signals it connects (each pipeline it joins carries the same signal on both sides).
    var signals: Set<OTLPSignal> { get }
    func make(id: ComponentID, config: ConfigMap, pipelines: ConnectorPipelines, context: ComponentContext) -> (any Connector)?
}

// MARK: Extensions

public protocol Extension: AnyObject, Sendable {
    var id: ComponentID { get }
    func start(health: HealthState) async throws
    func shutdown() async
}

/// An extension that decides whether a request may reach a receiver: the
/// Collector's `auth.authenticator` on a receiver protocol (extension/auth).
public protocol ServerAuthenticator: Extension {
    /// `header` looks a request header (or gRPC metadata) up by its lowercase name.
    /// Returns `nil` when the request may come in, or why not — never with the
    /// credential in it, since the reason is logged and sent back.
    func authenticate(header: (String) -> String?) -> String?
}

// MARK: Factories

public protocol ReceiverFactory: Sendable {
    var type: String { get }
    var signals: Set<OTLPSignal> { get }
    /// `nil` when the configuration had errors (reported into `config.diagnostics`).
    func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Receiver)?
}

public protocol ProcessorFactory: Sendable {
    var type: String { get }
    func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Processor)?
}

public protocol ExporterFactory: Sendable {
    var type: String { get }
    var signals: Set<OTLPSignal> { get }
    func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Exporter)?
}

public protocol ExtensionFactory: Sendable {
    var type: String { get }
    func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Extension)?
}

/// Every component type Sluice knows, by kind and type name.
public struct ComponentRegistry: Sendable {
    public var receivers: [String: any ReceiverFactory] = [:]
    public var processors: [String: any ProcessorFactory] = [:]
    public var exporters: [String: any ExporterFactory] = [:]
    public var connectors: [String: any ConnectorFactory] = [:]
    public var extensions: [String: any ExtensionFactory] = [:]
    /// Old type names still accepted, by kind: alias → current name. The Collector
    /// renamed components to lower_snake_case (its issue 14396: `otlp` → `otlp_grpc`,
    /// `otlphttp` → `otlp_http`, v0.144) and keeps the old names as deprecated aliases.
    public var deprecatedAliases: [ComponentKind: [String: String]] = [:]

    public init() {}

    /// Accepts `alias` for the component registered as `current`.
    public mutating func alias(_ alias: String, for current: String, kind: ComponentKind) {
        deprecatedAliases[kind, default: [:]][alias] = current
        switch kind {
        case .receiver: receivers[alias] = receivers[current]
        case .processor: processors[alias] = processors[current]
        case .exporter: exporters[alias] = exporters[current]
        case .connector: connectors[alias] = connectors[current]
        case .extension: extensions[alias] = extensions[current]
        }
    }

    /// What the log says at start for a component written with an old name, as the
    /// Collector words it; nil for a current name.
    public func deprecation(_ kind: ComponentKind, type: String) -> String? {
        deprecatedAliases[kind]?[type].map { "\"\(type)\" alias is deprecated; use \"\($0)\" instead" }
    }

    public mutating func register(_ factory: any ReceiverFactory) { receivers[factory.type] = factory }
    public mutating func register(_ factory: any ProcessorFactory) { processors[factory.type] = factory }
    public mutating func register(_ factory: any ExporterFactory) { exporters[factory.type] = factory }
    public mutating func register(_ factory: any ConnectorFactory) { connectors[factory.type] = factory }
    public mutating func register(_ factory: any ExtensionFactory) { extensions[factory.type] = factory }

    public func types(_ kind: ComponentKind) -> [String] {
        switch kind {
        case .receiver: receivers.keys.sorted()
        case .processor: processors.keys.sorted()
        case .exporter: exporters.keys.sorted()
        case .connector: connectors.keys.sorted()
        case .extension: extensions.keys.sorted()
        }
    }
}

/// An extension that gives an exporter's requests their credential: the client
/// side of the Collector's `auth.authenticator` (bearertokenauth, basicauth).
public protocol ClientAuthenticator: Extension {
    /// The header to send, with the credential as it is now (a token file may have
    /// been rotated since the last request). `nil` while there is no credential.
    func credentialHeader() -> (name: String, value: String)?
    /// The secret parts of that header, to mask wherever a destination echoes them.
    func secretValues() -> [String]
}

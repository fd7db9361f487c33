import SluiceCore

/// What a reload does with each part of the running service, decided from the old
/// and the new configuration alone (no sockets, no files), so it can be tested on
/// its own. docs/reload.md explains the rules; the short version:
/// - a component whose section says the same thing keeps its running instance
///   (a receiver also needs every extension it names to be unchanged);
/// - a pipeline that keeps its id keeps its log when the log would be built the same;
/// - an exporter's delivery from a pipeline keeps running when the log, the exporter
///   and the batch shape all stay; it restarts at its cursor when one of them changed.
struct ComponentChanges: Equatable, Sendable {
    var kept: Set<ComponentID> = []
    var changed: Set<ComponentID> = []
    var added: Set<ComponentID> = []
    var removed: Set<ComponentID> = []

    var isEmpty: Bool { changed.isEmpty && added.isEmpty && removed.isEmpty }
}

extension ComponentChanges {
    /// Compares the sections of the components in use, by id.
    init(old: [ComponentID: ConfigMap], new: [ComponentID: ConfigMap], alsoChanged: (ComponentID, ConfigMap) -> Bool = { _, _ in false }) {
        for (id, section) in new {
            guard let before = old[id] else { added.insert(id); continue }
            if before.sameContent(as: section), !alsoChanged(id, section) { kept.insert(id) } else { changed.insert(id) }
        }
        removed = Set(old.keys).subtracting(new.keys)
    }
}

/// The component-level difference between two configurations.
struct ConfigDiff: Sendable {
    var extensions: ComponentChanges
    var receivers: ComponentChanges
    var processors: ComponentChanges
    var exporters: ComponentChanges
    /// Connectors are rebuilt on every reload (they hold only their tables); this
    /// says which changed, for the log.
    var connectors: ComponentChanges
    /// By pipeline id; `kept` only says the id stays (its log is decided by `LogSpec`).
    var pipelines: ComponentChanges

    init(old: CollectorConfig, new: CollectorConfig) {
        extensions = ComponentChanges(old: Self.extensions(old), new: Self.extensions(new))
        let touched = extensions.changed.union(extensions.removed)
        // A receiver finds its authenticator by id when it is built: one whose
        // section names a changed extension must be built again to see the new one.
        receivers = ComponentChanges(old: Self.used(old, old.receivers, \.receivers), new: Self.used(new, new.receivers, \.receivers)) { _, section in
            touched.contains { section.mentions($0.description) }
        }
        processors = ComponentChanges(old: Self.used(old, old.processors, \.processors), new: Self.used(new, new.processors, \.processors))
        exporters = ComponentChanges(old: Self.used(old, old.exporters, \.exporters), new: Self.used(new, new.exporters, \.exporters))
        connectors = ComponentChanges(old: Self.used(old, old.connectors, \.connectorExporters), new: Self.used(new, new.connectors, \.connectorExporters))
        let oldPipelines = Set(old.pipelines.map(\.id)), newPipelines = Set(new.pipelines.map(\.id))
        pipelines = ComponentChanges(kept: oldPipelines.intersection(newPipelines), added: newPipelines.subtracting(oldPipelines),
                                     removed: oldPipelines.subtracting(newPipelines))
    }

    /// Sections of the components some pipeline uses (only those are built).
    private static func used(_ config: CollectorConfig, _ sections: [(id: ComponentID, config: ConfigMap)],
                             _ list: KeyPath<PipelineConfig, [ComponentID]>) -> [ComponentID: ConfigMap] {
        let used = Set(config.pipelines.flatMap { $0[keyPath: list] })
        return Dictionary(sections.filter { used.contains($0.id) }.map { ($0.id, $0.config) }, uniquingKeysWith: { _, last in last })
    }

    private static func extensions(_ config: CollectorConfig) -> [ComponentID: ConfigMap] {
        let enabled = Set(config.serviceExtensions)
        return Dictionary(config.extensions.filter { enabled.contains($0.id) }.map { ($0.id, $0.config) }, uniquingKeysWith: { _, last in last })
    }
}

/// How a pipeline's log is built: what must stay the same for a reload to keep it.
enum LogSpec: Equatable, Sendable {
    case memory(limitBytes: Int, limitEntries: Int? = nil, limitItems: Int? = nil)
    /// `directory` is the file_storage directory; the log lives in a folder named
    /// after the pipeline inside it.
    case disk(directory: String, settings: DiskLogSettings)

    enum Decision: Equatable, Sendable {
        /// The same log object goes on, with everything in it.
        case keep
        /// The disk log's own settings changed but not its directory: the open log
        /// keeps its settings (reopening it would mean refusing data while it is
        /// closed), and the new ones apply at the next start. The string says so.
        case keepUntilRestart(String)
        /// A new log; the old one is retired (drained when in memory, left on disk).
        case replace
    }

    static func decide(pipeline: ComponentID, old: LogSpec, new: LogSpec) -> Decision {
        if old == new { return .keep }
        if case .disk(let before, _) = old, case .disk(let after, _) = new, before == after {
            return .keepUntilRestart("pipeline \(pipeline): the disk log's settings (file_storage) changed; the open log keeps its current settings until Sluice restarts")
        }
        return .replace
    }
}

/// One exporter reading one pipeline's log.
struct DeliveryKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    let pipeline: ComponentID
    let exporter: ComponentID

    var description: String { "\(pipeline)→\(exporter)" }
    static func < (a: DeliveryKey, b: DeliveryKey) -> Bool { (a.pipeline, a.exporter) < (b.pipeline, b.exporter) }
}

/// What happens to each delivery loop on a reload.
struct DeliveryPlan: Equatable, Sendable {
    /// Runs on untouched.
    var keep: Set<DeliveryKey> = []
    /// The old loop stops after its current attempt; a new one (new exporter or new
    /// batch shape) then continues from the same cursor in the same log.
    var restart: Set<DeliveryKey> = []
    /// A new loop (a new pipeline, a new log, or an exporter added to a pipeline).
    var start: Set<DeliveryKey> = []
    /// The exporter left a pipeline whose log stays: it delivers what the log held
    /// at the reload, up to the shutdown timeout, then lets go of the log.
    var drain: Set<DeliveryKey> = []
    /// The log itself is retired: the loop goes with it (memory: drains it; disk:
    /// stops, the data stays on disk).
    var retire: Set<DeliveryKey> = []
}

extension DeliveryPlan {
    init(old: [DeliveryKey: BatchShape], new: [DeliveryKey: BatchShape], keptLogs: Set<ComponentID>, keptExporters: Set<ComponentID>) {
        for (key, shape) in new {
            guard let before = old[key], keptLogs.contains(key.pipeline) else { start.insert(key); continue }
            if keptExporters.contains(key.exporter), before == shape { keep.insert(key) } else { restart.insert(key) }
        }
        for key in old.keys where !keep.contains(key) && !restart.contains(key) {
            if keptLogs.contains(key.pipeline) { drain.insert(key) } else { retire.insert(key) }
        }
    }
}

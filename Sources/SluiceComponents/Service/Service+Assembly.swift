import SluiceCore

/// Building a configuration's components without starting anything or opening a
/// log: the same checks at startup and on a reload, so a reload refuses exactly
/// what `sluice validate` and a fresh start would refuse.
extension Service {
    /// One pipeline before its log is opened.
    struct PipelinePlan: Sendable {
        let config: PipelineConfig
        let processors: [any Processor]
        /// The connectors it exports to, in the order its exporters list them.
        let connectors: [any Connector]
        let shape: BatchShape
        let spec: LogSpec
    }

    /// A configuration's components, built but not started.
    struct Assembly: Sendable {
        var extensions: [(id: ComponentID, instance: any Extension)] = []
        var receivers: [ComponentID: any Receiver] = [:]
        var processors: [ComponentID: any Processor] = [:]
        var exporters: [ComponentID: any Exporter] = [:]
        var connectors: [ComponentID: any Connector] = [:]
        var plans: [PipelinePlan] = []
        var context: ComponentContext
    }

    /// Builds every component `config` uses. With `reuse` (a reload), a component
    /// the diff keeps is taken from the running generation instead of being built
    /// again. Problems go into `config.diagnostics`; `nil` when there were any.
    static func assemble(_ config: CollectorConfig, registry: ComponentRegistry, context: ComponentContext,
                         reuse: (old: Generation, diff: ConfigDiff)? = nil) -> Assembly? {
        let diagnostics = config.diagnostics
        let used = Set(config.pipelines.flatMap { $0.receivers + $0.processors + $0.exporters })
        // An old name works and is named once, as the Collector does.
        for (kind, sections) in [(ComponentKind.receiver, config.receivers), (.processor, config.processors), (.exporter, config.exporters), (.connector, config.connectors), (.extension, config.extensions)] {
            for (id, _) in sections {
                if let message = registry.deprecation(kind, type: id.type), let section = config.section(kind, id) {
                    diagnostics.warn(line: section.line, path: "\(kind.section).\(id)", message)
                }
            }
        }
        func unknown(_ kind: ComponentKind, _ id: ComponentID, _ line: Int?) {
            let known = registry.types(kind)
            let hint = closestMatch(to: id.type, in: known).map { " (did you mean \($0)?)" } ?? ""
            diagnostics.report(line: line, path: "\(kind.section).\(id)", "unknown \(kind.rawValue) type '\(id.type)'\(hint); known: \(known.joined(separator: ", "))")
        }
        let old = reuse?.old, diff = reuse?.diff
        var assembly = Assembly(context: context)

        // Extensions first: receivers look their authenticators up in the context.
        var storages: [ComponentID: FileStorageSettings] = [:]
        for (id, section) in config.extensions {
            guard let factory = registry.extensions[id.type] else { unknown(.extension, id, section.line); continue }
            let kept = diff?.extensions.kept.contains(id) == true ? old?.extensions.first { $0.id == id }?.instance : nil
            guard let made = kept ?? factory.make(id: id, config: section, context: context) else { continue }
            if config.serviceExtensions.contains(id) {
                assembly.extensions.append((id, made))
                if let storage = made as? any DiskStorageProvider { storages[id] = storage.settings }
            }
        }
        assembly.context.extensions = Dictionary(assembly.extensions.map { ($0.id, $0.instance) }, uniquingKeysWith: { first, _ in first })
        let built = assembly.context

        // Unused components are still built, for their diagnostics; a kept one is
        // the running instance.
        func instance<T>(_ id: ComponentID, kept: Set<ComponentID>?, running: [ComponentID: T]?, make: () -> T?) -> T? {
            guard used.contains(id) else { _ = make(); return nil }
            return (kept?.contains(id) == true ? running?[id] : nil) ?? make()
        }
        var receiverSignals: [ComponentID: Set<OTLPSignal>] = [:]
        for (id, section) in config.receivers {
            guard let factory = registry.receivers[id.type] else { unknown(.receiver, id, section.line); continue }
            receiverSignals[id] = factory.signals
            assembly.receivers[id] = instance(id, kept: diff?.receivers.kept, running: old?.receivers) { factory.make(id: id, config: section, context: built) }
        }
        for (id, section) in config.processors {
            guard let factory = registry.processors[id.type] else { unknown(.processor, id, section.line); continue }
            assembly.processors[id] = instance(id, kept: diff?.processors.kept, running: old?.processors) { factory.make(id: id, config: section, context: built) }
        }
        var exporterSignals: [ComponentID: Set<OTLPSignal>] = [:]
        for (id, section) in config.exporters {
            guard let factory = registry.exporters[id.type] else { unknown(.exporter, id, section.line); continue }
            exporterSignals[id] = factory.signals
            assembly.exporters[id] = instance(id, kept: diff?.exporters.kept, running: old?.exporters) { factory.make(id: id, config: section, context: built) }
        }
        for (id, exporter) in assembly.exporters {
            guard let storage = exporter.queue.storage, storages[storage] == nil else { continue }
            diagnostics.report(line: config.exporters.first { $0.id == id }?.config.line, path: "exporters.\(id).sending_queue.storage",
                               "\(storage) is not a file_storage extension listed in service.extensions")
        }
        // Connectors are rebuilt on every reload: they hold nothing but their
        // tables, and the fanouts that use them are rebuilt too.
        for (id, section) in config.connectors {
            guard let factory = registry.connectors[id.type] else { unknown(.connector, id, section.line); continue }
            let from = config.pipelines.filter { $0.connectorExporters.contains(id) }
            let to = config.pipelines.filter { $0.connectorReceivers.contains(id) }
            for pipeline in from + to where !factory.signals.contains(pipeline.signal) {
                diagnostics.report(line: pipeline.line, path: "service.pipelines.\(pipeline.id)",
                                   "\(id) does not connect \(pipeline.signal) (it connects \(factory.signals.map(\.description).sorted().joined(separator: " and ")))")
            }
            if let signal = from.first?.signal, let other = (from + to).first(where: { $0.signal != signal }) {
                diagnostics.report(line: other.line, path: "service.pipelines.\(other.id)",
                                   "\(id) joins \(signal) pipelines; \(other.id) carries \(other.signal)")
            }
            // An unused connector is still built, for its diagnostics, against every pipeline.
            let pipelines = from.isEmpty && to.isEmpty ? ConnectorPipelines(from: [], to: config.pipelines) : ConnectorPipelines(from: from, to: to)
            let made = factory.make(id: id, config: section, pipelines: pipelines, context: built)
            if !from.isEmpty { assembly.connectors[id] = made }
        }
        for pipeline in config.pipelines {
            for id in pipeline.receivers {
                guard let signals = receiverSignals[id], !signals.contains(pipeline.signal) else { continue }
                let names = signals.map(\.rawValue).sorted()
                diagnostics.report(line: pipeline.line, path: "service.pipelines.\(pipeline.id).receivers",
                                   "\(id) does not receive \(pipeline.signal) (it receives \(names.joined(separator: ", ")) only); use it in a \(names.joined(separator: " or ")) pipeline")
            }
            for id in pipeline.exporters where exporterSignals[id].map({ !$0.contains(pipeline.signal) }) ?? false {
                diagnostics.report(line: pipeline.line, path: "service.pipelines.\(pipeline.id).exporters", "\(id) does not export \(pipeline.signal)")
            }
        }
        guard diagnostics.isEmpty else { return nil }

        for pipeline in config.pipelines where pipeline.exporters.isEmpty {
            // A pipeline that only feeds connectors appends to no log, so a sealer there would never seal.
            for id in pipeline.processors where assembly.processors[id] is any AppendOrderedProcessor {
                diagnostics.report(line: pipeline.line, path: "service.pipelines.\(pipeline.id).processors",
                                   "\(id) seals records as they enter a pipeline's log, and \(pipeline.id) only feeds connectors; list \(id) in the pipelines they send to")
            }
        }
        guard diagnostics.isEmpty else { return nil }
        for pipeline in config.pipelines {
            let chain = pipeline.processors.compactMap { assembly.processors[$0] }
            let queues = pipeline.exporters.compactMap { assembly.exporters[$0]?.queue }
            // Bytes always bound a memory log; a requests or items sizer bounds it too.
            let limit = queues.map { $0.sizer == .bytes ? $0.queueSize : 64 << 20 }.max() ?? 64 << 20
            let entries = queues.allSatisfy { $0.sizer == .requests } && !queues.isEmpty ? queues.map(\.queueSize).max() : nil
            let items = queues.allSatisfy { $0.sizer == .items } && !queues.isEmpty ? queues.map(\.queueSize).max() : nil
            // The pipeline's log is on disk when any of its exporters asks for the
            // Collector's persistent queue (docs/architecture.md).
            let spec: LogSpec = queues.compactMap(\.storage).first.flatMap { storages[$0] }
                .map { .disk(directory: $0.directory, settings: $0.log) } ?? .memory(limitBytes: limit, limitEntries: entries, limitItems: items)
            assembly.plans.append(PipelinePlan(config: pipeline, processors: chain, connectors: pipeline.connectorExporters.compactMap { assembly.connectors[$0] },
                                               shape: chain.compactMap(\.batchShape).last ?? .unbatched, spec: spec))
        }
        return assembly
    }

    /// Opens (or creates) the log a plan asks for.
    static func openPipeline(_ plan: PipelinePlan, context: ComponentContext) throws -> Pipeline {
        let name = plan.config.id.description
        let log: any PipelineLog
        switch plan.spec {
        case .memory(let limit, let entries, let items):
            log = MemoryPipelineLog(name: name, limitBytes: limit, limitEntries: entries, limitItems: items)
        case .disk(let directory, let settings):
            log = try DiskPipelineLog.open(directory: directory, name: name, signal: plan.config.signal, readers: plan.config.exporters,
                                           settings: settings, logger: context.logger, metrics: context.metrics)
        }
        return Pipeline(config: plan.config, log: log, spec: plan.spec, processors: plan.processors, connectors: plan.connectors, shape: plan.shape)
    }
}

extension Service {
    /// Builds every component without starting one or opening a pipeline log (so
    /// `sluice validate` never takes the lock of a running instance's disk log);
    /// problems go into `config.diagnostics`.
    public static func check(_ config: CollectorConfig, registry: ComponentRegistry = .builtIn, context: ComponentContext) {
        _ = assemble(config, registry: registry, context: context)
    }
}

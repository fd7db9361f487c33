import Foundation
import Logging
import SluiceCore
import SluiceNet
import Synchronization

/// A running collector: the components a configuration names, wired into
/// pipelines, started in order (exporters → processors → receivers) and stopped in
/// reverse, with the log drained to the exporters on the way down.
public final class Service: Sendable {
    struct Pipeline: Sendable {
        let config: PipelineConfig
        let log: any PipelineLog
        let processors: [any Processor]
        let shape: BatchShape
    }

    let receivers: [ComponentID: any Receiver]
    let processors: [ComponentID: any Processor]
    let exporters: [ComponentID: any Exporter]
    let extensions: [any Extension]
    let pipelines: [Pipeline]
    let sinks: [ComponentID: PipelineFanout]
    let statuses: [ComponentID: ExporterStatus]
    let telemetry: TelemetryConfig
    let shutdownTimeout: Duration
    let context: ComponentContext
    public let health = HealthState()
    public let board = StatusBoard()
    private let deliveryTasks = Mutex<[Task<Void, Never>]>([])
    private let telemetryServer = Mutex<HTTPServer?>(nil)
    private let undeliveredAtShutdown: Counter

    /// Builds every component; problems go into `config.diagnostics` and the result
    /// is `nil` when there were any.
    public static func build(_ config: CollectorConfig, registry: ComponentRegistry = .builtIn, context: ComponentContext) -> Service? {
        let diagnostics = config.diagnostics
        let used = Set(config.pipelines.flatMap { $0.receivers + $0.processors + $0.exporters })

        func unknown(_ kind: ComponentKind, _ id: ComponentID, _ line: Int?) {
            let known = registry.types(kind)
            let hint = closestMatch(to: id.type, in: known).map { " (did you mean \($0)?)" } ?? ""
            diagnostics.report(line: line, path: "\(kind.section).\(id)", "unknown \(kind.rawValue) type '\(id.type)'\(hint); known: \(known.joined(separator: ", "))")
        }

        // Extensions first: receivers look their authenticators up in the context.
        var extensions: [any Extension] = []
        var storages: [ComponentID: FileStorageSettings] = [:]
        for (id, section) in config.extensions {
            guard let factory = registry.extensions[id.type] else { unknown(.extension, id, section.line); continue }
            guard let made = factory.make(id: id, config: section, context: context) else { continue }
            if config.serviceExtensions.contains(id) {
                extensions.append(made)
                if let storage = made as? any DiskStorageProvider { storages[id] = storage.settings }
            }
        }
        var context = context
        context.extensions = Dictionary(extensions.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })

        var receivers: [ComponentID: any Receiver] = [:]
        var receiverSignals: [ComponentID: Set<OTLPSignal>] = [:]
        for (id, section) in config.receivers {
            guard let factory = registry.receivers[id.type] else { unknown(.receiver, id, section.line); continue }
            receiverSignals[id] = factory.signals
            if let made = factory.make(id: id, config: section, context: context), used.contains(id) { receivers[id] = made }
        }
        var processors: [ComponentID: any Processor] = [:]
        for (id, section) in config.processors {
            guard let factory = registry.processors[id.type] else { unknown(.processor, id, section.line); continue }
            if let made = factory.make(id: id, config: section, context: context), used.contains(id) { processors[id] = made }
        }
        var exporters: [ComponentID: any Exporter] = [:]
        var exporterSignals: [ComponentID: Set<OTLPSignal>] = [:]
        for (id, section) in config.exporters {
            guard let factory = registry.exporters[id.type] else { unknown(.exporter, id, section.line); continue }
            exporterSignals[id] = factory.signals
            if let made = factory.make(id: id, config: section, context: context), used.contains(id) { exporters[id] = made }
        }
        for (id, exporter) in exporters {
            guard let storage = exporter.queue.storage, storages[storage] == nil else { continue }
            diagnostics.report(line: config.exporters.first { $0.id == id }?.config.line, path: "exporters.\(id).sending_queue.storage",
                               "\(storage) is not a file_storage extension listed in service.extensions")
        }
        for pipeline in config.pipelines {
            for id in pipeline.receivers where receiverSignals[id].map({ !$0.contains(pipeline.signal) }) ?? false {
                diagnostics.report(line: pipeline.line, path: "service.pipelines.\(pipeline.id).receivers", "\(id) does not receive \(pipeline.signal)")
            }
            for id in pipeline.exporters where exporterSignals[id].map({ !$0.contains(pipeline.signal) }) ?? false {
                diagnostics.report(line: pipeline.line, path: "service.pipelines.\(pipeline.id).exporters", "\(id) does not export \(pipeline.signal)")
            }
        }
        guard diagnostics.isEmpty else { return nil }

        var pipelines: [Pipeline] = []
        for pipeline in config.pipelines {
            let chain = pipeline.processors.compactMap { processors[$0] }
            let queues = pipeline.exporters.compactMap { exporters[$0]?.queue }
            let limit = queues.map { $0.sizer == .bytes ? $0.queueSize : 64 << 20 }.max() ?? 64 << 20
            // The pipeline's log is on disk when any of its exporters asks for the
            // Collector's persistent queue (DESIGN.md).
            let log: any PipelineLog
            if let storage = queues.compactMap(\.storage).first.flatMap({ storages[$0] }) {
                do {
                    log = try DiskPipelineLog.open(directory: storage.directory, name: pipeline.id.description, signal: pipeline.signal,
                                                   readers: pipeline.exporters, settings: storage.log, logger: context.logger, metrics: context.metrics)
                } catch {
                    diagnostics.report(line: pipeline.line, path: "service.pipelines.\(pipeline.id)", "\(error)")
                    continue
                }
            } else {
                log = MemoryPipelineLog(name: pipeline.id.description, limitBytes: limit)
            }
            let shape = chain.compactMap(\.batchShape).last ?? .unbatched
            pipelines.append(Pipeline(config: pipeline, log: log, processors: chain, shape: shape))
            context.metrics.gauge("sluice_pipeline_log_bytes", "Bytes held in the pipeline log.", labels: [("pipeline", log.name)]) { Double(log.usedBytes) }
            context.metrics.gauge("sluice_pipeline_log_limit_bytes", "The pipeline log's byte limit.", labels: [("pipeline", log.name)]) { Double(log.limitBytes) }
        }
        guard diagnostics.isEmpty else {
            for pipeline in pipelines { pipeline.log.close() }
            return nil
        }
        var sinks: [ComponentID: PipelineFanout] = [:]
        for id in receivers.keys {
            var routes: [OTLPSignal: [PipelineRoute]] = [:]
            for pipeline in pipelines where pipeline.config.receivers.contains(id) {
                routes[pipeline.config.signal, default: []].append(PipelineRoute(name: pipeline.log.name, processors: pipeline.processors, log: pipeline.log))
            }
            sinks[id] = PipelineFanout(routes: routes, refusedFull: context.metrics.counter(
                "sluice_receiver_log_full_refusals_total", "Requests refused because a pipeline log was full.", labels: [("receiver", id.description)]))
        }
        return Service(receivers: receivers, processors: processors, exporters: exporters, extensions: extensions, pipelines: pipelines,
                       sinks: sinks, telemetry: config.telemetry, shutdownTimeout: config.shutdownTimeout, context: context)
    }

    private init(receivers: [ComponentID: any Receiver], processors: [ComponentID: any Processor], exporters: [ComponentID: any Exporter],
                 extensions: [any Extension], pipelines: [Pipeline], sinks: [ComponentID: PipelineFanout], telemetry: TelemetryConfig,
                 shutdownTimeout: Duration, context: ComponentContext) {
        self.receivers = receivers
        self.processors = processors
        self.exporters = exporters
        self.extensions = extensions
        self.pipelines = pipelines
        self.sinks = sinks
        self.telemetry = telemetry
        self.shutdownTimeout = shutdownTimeout
        self.context = context
        statuses = Dictionary(uniqueKeysWithValues: exporters.keys.map { ($0, ExporterStatus(id: $0)) })
        undeliveredAtShutdown = context.metrics.counter("sluice_shutdown_undelivered_items_total",
                                                        "Items still in the memory log when the shutdown deadline passed.")
    }

    public func start() async throws {
        health.set(.starting)
        let metrics = context.metrics
        metrics.gauge("sluice_process_resident_memory_bytes", "Resident memory of the Sluice process.") { Double(ProcessMemory.residentBytes()) }
        metrics.gauge("sluice_process_cpu_seconds_total", "CPU time used by the Sluice process.") { ProcessMemory.cpuSeconds() }
        for ext in extensions { try await ext.start(health: health) }
        for (id, exporter) in exporters.sorted(by: { $0.key < $1.key }) {
            try await exporter.start()
            let status = statuses[id]!
            let cursors = pipelines.filter { $0.config.exporters.contains(id) }.map { ($0, $0.log) }
            board.register(status) {
                cursors.reduce(CursorLag(entries: 0, items: 0, bytes: 0, oldestAgeSeconds: 0)) { total, pair in
                    let lag = pair.1.lag(id)
                    return CursorLag(entries: total.entries + lag.entries, items: total.items + lag.items, bytes: total.bytes + lag.bytes,
                                     oldestAgeSeconds: max(total.oldestAgeSeconds, lag.oldestAgeSeconds))
                }
            }
            metrics.gauge("sluice_exporter_up", "1 active, 0.5 degraded, 0 failed.", labels: [("exporter", id.description)]) {
                switch status.snapshot.state { case .active: 1; case .degraded: 0.5; case .failed: 0 }
            }
            for (pipeline, log) in cursors {
                metrics.gauge("sluice_exporter_lag_items", "Items in the log not yet delivered by the exporter.",
                              labels: [("exporter", id.description), ("pipeline", log.name)]) { Double(log.lag(id).items) }
                let delivery = ExporterDelivery(
                    exporter: exporter, signal: pipeline.config.signal, pipeline: log.name, cursor: log.cursor(id), shape: pipeline.shape,
                    status: status, deadLetter: DeadLetterFile(path: "\(context.dataDirectory)/dead-letter/\(id.fileSafe).ndjson"),
                    logger: context.logger, metrics: metrics)
                let task = Task { await delivery.run() }
                deliveryTasks.withLock { $0.append(task) }
            }
        }
        for processor in processors.values { try await processor.start() }
        if let address = telemetry.metricsAddress {
            guard let hostPort = HostPort(address) else { throw ServiceError.badAddress(address) }
            let server = try await HTTPServer.start(at: hostPort, limits: HTTPServerLimits(maxBodyBytes: 4096),
                                                    responder: TelemetryResponder(metrics: metrics, board: board))
            telemetryServer.withLock { $0 = server }
            context.logger.info("metrics and status listening", metadata: ["address": "\(address)", "paths": "/metrics /status"])
        }
        for (id, receiver) in receivers.sorted(by: { $0.key < $1.key }) {
            try await receiver.start(sink: sinks[id]!)
        }
        health.set(.running)
        context.logger.info("sluice running", metadata: [
            "pipelines": "\(pipelines.map(\.log.name).joined(separator: ","))", "version": "\(SluiceVersion.current)"])
    }

    /// Stops accepting, gives exporters until the shutdown timeout to deliver what
    /// the log holds, then stops them. Returns the number of items left undelivered.
    @discardableResult
    public func shutdown() async -> Int {
        health.set(.stopping)
        context.logger.info("shutting down", metadata: ["timeout": "\(shutdownTimeout)"])
        for receiver in receivers.values { await receiver.shutdown() }
        for pipeline in pipelines { pipeline.log.close() }
        let tasks = deliveryTasks.withLock { $0 }
        let deadline = ContinuousClock.now + shutdownTimeout
        let drained = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for task in tasks { await task.value }
                return true
            }
            group.addTask {
                // At the deadline the delivery loops are cancelled: the group waits for
                // both children, and the other one waits for the loops.
                try? await Task.sleep(until: deadline)
                if !Task.isCancelled { for task in tasks { task.cancel() } }
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        var left = 0
        if !drained {
            for task in tasks { task.cancel() }
            for task in tasks { await task.value }
            var kept = 0
            for pipeline in pipelines {
                let lag = pipeline.config.exporters.reduce(0) { $0 + pipeline.log.lag($1).items }
                if pipeline.log is DiskPipelineLog { kept += lag } else { left += lag }
            }
            if kept > 0 {
                context.logger.info("shutdown timeout passed; undelivered data stays in the disk log for the next start",
                                    metadata: ["items": "\(kept)", "shutdown_timeout": "\(shutdownTimeout)"])
            }
            if left > 0 {
                undeliveredAtShutdown.add(left)
                context.logger.error("shutdown timeout passed with data undelivered; it is lost with the memory log",
                                     metadata: ["items": "\(left)", "shutdown_timeout": "\(shutdownTimeout)"])
            }
        }
        for processor in processors.values { await processor.shutdown() }
        for exporter in exporters.values { await exporter.shutdown() }
        let server = telemetryServer.withLock { s -> HTTPServer? in defer { s = nil }; return s }
        await server?.close()
        for ext in extensions { await ext.shutdown() }
        context.logger.info("stopped", metadata: ["undelivered_items": "\(left)"])
        return left
    }
}

enum ServiceError: Error, CustomStringConvertible {
    case badAddress(String)
    var description: String {
        switch self {
        case .badAddress(let address): "service.telemetry.metrics.address '\(address)' is not host:port"
        }
    }
}

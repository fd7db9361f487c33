import Foundation
import Logging
import SluiceCore
import SluiceNet
import Synchronization

/// A running collector: the components a configuration names, wired into
/// pipelines, started in order (exporters → processors → receivers) and stopped in
/// reverse, with the log drained to the exporters on the way down. What runs is one
/// `Generation`; a reload (Service+Reload.swift) replaces it piece by piece, keeping
/// what did not change.
public final class Service: Sendable {
    struct Pipeline: Sendable {
        let config: PipelineConfig
        let log: any PipelineLog
        /// How the log was built (a reload keeps the log while this stays the same).
        let spec: LogSpec
        let processors: [any Processor]
        /// Where the pipeline's batches go besides its log: the connectors it exports to.
        let connectors: [any Connector]
        let shape: BatchShape
    }

    /// One delivery loop (an exporter reading one pipeline's log) and its handle.
    struct Delivery: Sendable {
        let key: DeliveryKey
        let exporter: any Exporter
        let log: any PipelineLog
        let control: DeliveryControl
        let task: Task<Void, Never>
    }

    /// Everything one configuration runs.
    struct Generation: Sendable {
        var config: CollectorConfig
        var extensions: [(id: ComponentID, instance: any Extension)]
        var receivers: [ComponentID: any Receiver]
        var processors: [ComponentID: any Processor]
        var exporters: [ComponentID: any Exporter]
        var pipelines: [Pipeline]
        /// The sink each receiver was started with; a reload swaps what is behind it.
        var slots: [ComponentID: ReceiverSinkSlot]
        var deliveries: [DeliveryKey: Delivery]
        var board: StatusBoard
        var context: ComponentContext
        var shutdownTimeout: Duration { config.shutdownTimeout }
    }

    let registry: ComponentRegistry
    /// The context given at build, without extensions (each generation adds its own).
    let baseContext: ComponentContext
    let telemetry: TelemetryConfig
    public let health = HealthState()
    let current: Mutex<Generation>
    /// Exporter status by id, kept across reloads: a rebuilt exporter continues it.
    let statuses = Mutex<[ComponentID: ExporterStatus]>([:])
    /// Loops and clean-ups a reload left running in the background: exporters
    /// draining a pipeline they left, retired logs, old exporters waiting to stop.
    let background = Mutex<[Task<Void, Never>]>([])
    /// Loops of exporters draining a pipeline they left, by delivery, so that adding
    /// the exporter back waits for its drain instead of reading the cursor twice.
    let draining = Mutex<[DeliveryKey: Delivery]>([:])
    /// Disk logs being retired, by directory: a reopen waits for the close (flock).
    let retiringDisk = Mutex<[String: Task<Void, Never>]>([:])
    let reloads: ReloadRecorder
    private let telemetryServer = Mutex<HTTPServer?>(nil)
    /// `readers[].periodic`: the loop pushing Sluice's own metrics, when configured.
    private let metricsPush = Mutex<Task<Void, Never>?>(nil)
    let undeliveredAtShutdown: Counter

    /// The current generation's exporters and their lag, for `/status`.
    public var board: StatusBoard { current.withLock { $0.board } }
    var generation: Generation { current.withLock { $0 } }

    /// Builds every component and opens the pipeline logs; problems go into
    /// `config.diagnostics` and the result is `nil` when there were any.
    public static func build(_ config: CollectorConfig, registry: ComponentRegistry = .builtIn, context: ComponentContext) -> Service? {
        guard let assembly = assemble(config, registry: registry, context: context, reuse: nil) else { return nil }
        var pipelines: [Pipeline] = []
        for plan in assembly.plans {
            do {
                pipelines.append(try openPipeline(plan, context: assembly.context))
            } catch {
                config.diagnostics.report(line: plan.config.line, path: "service.pipelines.\(plan.config.id)", "\(error)")
            }
        }
        guard config.diagnostics.isEmpty else {
            for pipeline in pipelines { pipeline.log.close() }
            return nil
        }
        var slots: [ComponentID: ReceiverSinkSlot] = [:]
        for id in assembly.receivers.keys {
            slots[id] = ReceiverSinkSlot(fanout(for: id, pipelines: pipelines, metrics: context.metrics))
        }
        let generation = Generation(config: config, extensions: assembly.extensions, receivers: assembly.receivers,
                                    processors: assembly.processors, exporters: assembly.exporters, pipelines: pipelines,
                                    slots: slots, deliveries: [:], board: StatusBoard(), context: assembly.context)
        return Service(registry: registry, context: context, generation: generation)
    }

    private init(registry: ComponentRegistry, context: ComponentContext, generation: Generation) {
        self.registry = registry
        baseContext = context
        telemetry = generation.config.telemetry
        current = Mutex(generation)
        reloads = ReloadRecorder(metrics: context.metrics)
        undeliveredAtShutdown = context.metrics.counter("sluice_shutdown_undelivered_items_total",
                                                        "Items still in the memory log when the shutdown deadline passed.")
    }

    /// The fanout of receiver `id` into the pipelines that take from it, and on
    /// through their connectors into the pipelines those feed.
    static func fanout(for id: ComponentID, pipelines: [Pipeline], metrics: MetricsRegistry) -> PipelineFanout {
        func route(_ pipeline: Pipeline) -> PipelineRoute {
            let connections = zip(pipeline.config.connectorExporters, pipeline.connectors).map { connectorID, connector in
                ConnectorRoute(connector: connector, targets: Dictionary(
                    pipelines.filter { $0.config.connectorReceivers.contains(connectorID) }.map { ($0.config.id, route($0)) },
                    uniquingKeysWith: { first, _ in first }))
            }
            // A pipeline that only feeds connectors has a log no exporter reads: nothing is appended to it.
            return PipelineRoute(name: pipeline.log.name, processors: pipeline.processors,
                                 log: pipeline.config.exporters.isEmpty ? nil : pipeline.log, connectors: connections)
        }
        var routes: [OTLPSignal: [PipelineRoute]] = [:]
        for pipeline in pipelines where pipeline.config.receivers.contains(id) {
            routes[pipeline.config.signal, default: []].append(route(pipeline))
        }
        return PipelineFanout(routes: routes, refusedFull: metrics.counter(
            "sluice_receiver_log_full_refusals_total", "Requests refused because a pipeline log was full.", labels: [("receiver", id.description)]))
    }

    public func start() async throws {
        health.set(.starting)
        let metrics = baseContext.metrics
        metrics.gauge("sluice_process_resident_memory_bytes", "Resident memory of the Sluice process.") { Double(ProcessMemory.residentBytes()) }
        metrics.gauge("sluice_process_cpu_seconds_total", "CPU time used by the Sluice process.") { ProcessMemory.cpuSeconds() }
        var g = generation
        for ext in g.extensions { try await ext.instance.start(health: health) }
        for (_, exporter) in g.exporters.sorted(by: { $0.key < $1.key }) { try await exporter.start() }
        for pipeline in g.pipelines { registerGauges(pipeline) }
        for pipeline in g.pipelines {
            for id in pipeline.config.exporters {
                guard let exporter = g.exporters[id] else { continue }
                let key = DeliveryKey(pipeline: pipeline.config.id, exporter: id)
                g.deliveries[key] = launch(key, pipeline: pipeline, exporter: exporter, after: nil, context: g.context)
            }
        }
        register(g, on: g.board)
        current.withLock { $0 = g }
        for processor in g.processors.values { try await processor.start() }
        if let address = telemetry.metricsAddress {
            guard let hostPort = HostPort(address) else { throw ServiceError.badAddress(address) }
            let server = try await HTTPServer.start(at: hostPort, name: "telemetry", limits: HTTPServerLimits(maxBodyBytes: 4096),
                                                    responder: ServiceTelemetryResponder(metrics: metrics, service: self))
            telemetryServer.withLock { $0 = server }
            baseContext.logger.info("metrics and status listening", metadata: ["address": "\(address)", "paths": "/metrics /status"])
            ListenerExposure.warnIfOpen(hostPort, listener: "service.telemetry.metrics", tls: false, auth: false, logger: baseContext.logger)
        }
        if let pusher = MetricsPusher(telemetry, metrics: metrics, logger: baseContext.logger) {
            baseContext.logger.info("pushing Sluice's metrics", metadata: ["endpoint": "\(pusher.push.endpoint)", "interval": "\(pusher.push.interval)"])
            metricsPush.withLock { $0 = Task { await pusher.run() } }
        }
        for (id, receiver) in g.receivers.sorted(by: { $0.key < $1.key }) {
            try await receiver.start(sink: g.slots[id]!)
        }
        health.set(.running)
        baseContext.logger.info("sluice running", metadata: [
            "pipelines": "\(g.pipelines.map(\.log.name).joined(separator: ","))", "version": "\(SluiceVersion.current)"])
    }

    /// The status object of exporter `id`, the same one across reloads.
    func status(_ id: ComponentID) -> ExporterStatus {
        statuses.withLock { all in
            if let existing = all[id] { return existing }
            let made = ExporterStatus(id: id)
            all[id] = made
            return made
        }
    }

    /// Puts a generation's exporters on a status board, with their lag summed over
    /// the pipelines they read.
    func register(_ g: Generation, on board: StatusBoard) {
        for id in g.exporters.keys.sorted() {
            let logs = g.pipelines.filter { $0.config.exporters.contains(id) }.map(\.log)
            board.register(status(id), deadLetter: DeadLetterFile.path(of: id, in: g.context.dataDirectory)) {
                logs.reduce(CursorLag(entries: 0, items: 0, bytes: 0, oldestAgeSeconds: 0)) { total, log in
                    let lag = log.lag(id)
                    return CursorLag(entries: total.entries + lag.entries, items: total.items + lag.items, bytes: total.bytes + lag.bytes,
                                     oldestAgeSeconds: max(total.oldestAgeSeconds, lag.oldestAgeSeconds))
                }
            }
        }
    }

    /// Gauges read the current generation when scraped, so they follow a pipeline
    /// whose log a reload replaced (and read 0 once it is gone).
    func registerGauges(_ pipeline: Pipeline) {
        let metrics = baseContext.metrics
        let id = pipeline.config.id
        let name = pipeline.log.name
        metrics.gauge("sluice_pipeline_log_bytes", "Bytes held in the pipeline log.", labels: [("pipeline", name)]) { [weak self] in
            Double(self?.log(of: id)?.usedBytes ?? 0)
        }
        metrics.gauge("sluice_pipeline_log_limit_bytes", "The pipeline log's byte limit.", labels: [("pipeline", name)]) { [weak self] in
            Double(self?.log(of: id)?.limitBytes ?? 0)
        }
        for exporter in pipeline.config.exporters {
            metrics.gauge("sluice_exporter_lag_items", "Items in the log not yet delivered by the exporter.",
                          labels: [("exporter", exporter.description), ("pipeline", name)]) { [weak self] in
                Double(self?.log(of: id)?.lag(exporter).items ?? 0)
            }
            // How long the oldest record this exporter has not delivered has waited:
            // what a dashboard or an alert needs to tell "behind" from "stuck".
            metrics.gauge("sluice_exporter_lag_oldest_age_seconds", "Age of the oldest item in the log not yet delivered by the exporter (0 when none).",
                          labels: [("exporter", exporter.description), ("pipeline", name)]) { [weak self] in
                self?.log(of: id)?.lag(exporter).oldestAgeSeconds ?? 0
            }
            let status = status(exporter)
            metrics.gauge("sluice_exporter_up", "1 active, 0.5 degraded, 0 failed.", labels: [("exporter", exporter.description)]) {
                switch status.snapshot.state { case .active: 1; case .degraded: 0.5; case .failed: 0 }
            }
        }
    }

    private func log(of pipeline: ComponentID) -> (any PipelineLog)? {
        current.withLock { g in g.pipelines.first { $0.config.id == pipeline }?.log }
    }

    /// How an exporter's reads of a pipeline's log are batched: its own
    /// `sending_queue.batch` when set, else the pipeline's batch processor.
    static func shape(_ pipeline: Pipeline, _ exporter: any Exporter) -> BatchShape { exporter.queue.batch ?? pipeline.shape }

    /// Starts the loop of one exporter on one pipeline's log. With `after`, it starts
    /// once that loop (the previous reader of the same cursor) has ended: two loops on
    /// one cursor could rewind each other past entries in flight.
    func launch(_ key: DeliveryKey, pipeline: Pipeline, exporter: any Exporter, after previous: Task<Void, Never>?,
                context: ComponentContext) -> Delivery {
        let control = DeliveryControl()
        let log = pipeline.log
        let delivery = ExporterDelivery(
            exporter: exporter, signal: pipeline.config.signal, pipeline: log.name,
            cursor: ControlledCursor(inner: log.cursor(key.exporter), control: control), shape: Self.shape(pipeline, exporter),
            status: status(key.exporter), deadLetter: DeadLetterFile(path: DeadLetterFile.path(of: key.exporter, in: context.dataDirectory)),
            logger: context.logger, metrics: context.metrics, sleep: { try await control.sleep($0) })
        let task = Task {
            await previous?.value
            await delivery.run()
        }
        control.attach(task)
        return Delivery(key: key, exporter: exporter, log: log, control: control, task: task)
    }

    /// Waits for `tasks` until `deadline`, then cancels what still runs and waits for
    /// it to end (a cancelled loop stops after rewinding its cursor). True when all
    /// ended by themselves. Cancelling the caller counts as reaching the deadline.
    static func finish(_ tasks: [Task<Void, Never>], by deadline: ContinuousClock.Instant) async -> Bool {
        let ended = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for task in tasks { await task.value }
                return true
            }
            group.addTask {
                // At the deadline the loops are cancelled: the group waits for both
                // children, and the other one waits for the loops.
                try? await Task.sleep(until: deadline)
                for task in tasks { task.cancel() }
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !ended {
            for task in tasks { task.cancel() }
            for task in tasks { await task.value }
        }
        return ended
    }

    /// Stops accepting, gives exporters until the shutdown timeout to deliver what
    /// the log holds, then stops them. Returns the number of items left undelivered.
    @discardableResult
    public func shutdown() async -> Int {
        health.set(.stopping)
        metricsPush.withLock { $0?.cancel() }
        let g = generation
        let logger = baseContext.logger
        logger.info("shutting down", metadata: ["timeout": "\(g.shutdownTimeout)"])
        for receiver in g.receivers.values { await receiver.shutdown() }
        for pipeline in g.pipelines { pipeline.log.close() }
        let deadline = ContinuousClock.now + g.shutdownTimeout
        let drained = await Self.finish(g.deliveries.values.map(\.task), by: deadline)
        var left = 0
        if !drained {
            var kept = 0
            for pipeline in g.pipelines {
                let lag = pipeline.config.exporters.reduce(0) { $0 + pipeline.log.lag($1).items }
                if pipeline.log is DiskPipelineLog { kept += lag } else { left += lag }
            }
            if kept > 0 {
                logger.info("shutdown timeout passed; undelivered data stays in the disk log for the next start",
                            metadata: ["items": "\(kept)", "shutdown_timeout": "\(g.shutdownTimeout)"])
            }
            if left > 0 {
                undeliveredAtShutdown.add(left)
                logger.error("shutdown timeout passed with data undelivered; it is lost with the memory log",
                             metadata: ["items": "\(left)", "shutdown_timeout": "\(g.shutdownTimeout)"])
            }
        }
        // What reloads left running (drains, retired logs, old exporters) ends at
        // the same deadline; each cleans up (closes its log, stops its exporter).
        let leftovers = background.withLock { $0 }
        _ = await Self.finish(leftovers, by: deadline)
        for processor in g.processors.values { await processor.shutdown() }
        for exporter in g.exporters.values { await exporter.shutdown() }
        let server = telemetryServer.withLock { s -> HTTPServer? in defer { s = nil }; return s }
        await server?.close()
        for ext in g.extensions.reversed() { await ext.instance.shutdown() }
        logger.info("stopped", metadata: ["undelivered_items": "\(left)"])
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

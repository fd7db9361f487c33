import Foundation
import Logging
import SluiceCore

/// Reloading the configuration without a restart (issue #5 item 6, docs/reload.md).
///
/// Two phases. *Prepare* does everything that can fail and can be undone: build the
/// new components (the same checks as `sluice validate`), open new logs, start new
/// extensions, exporters, processors and receivers (a new receiver takes requests
/// into the old pipelines until the commit). Any failure undoes what was started and
/// the old generation runs on untouched. *Commit* cannot fail: it swaps every
/// receiver's sink to the new pipelines, then retires what the new configuration no
/// longer has — in the background, so data in flight is delivered, not dropped.
extension Service {
    public enum ReloadResult: Sendable, Equatable {
        /// Applied; `changes` says what changed, for the log.
        case applied(changes: String)
        /// Refused; the old configuration still runs. Each problem as `sluice
        /// validate` prints it.
        case refused([ConfigDiagnostic])
    }

    /// Switches to `config`, or refuses it and keeps the running one. Calls must not
    /// overlap (Run's loop makes them one at a time).
    public func reload(_ config: CollectorConfig) async -> ReloadResult {
        let result = await apply(config)
        reloads.record(result)
        let logger = baseContext.logger
        switch result {
        case .applied(let changes):
            for warning in config.diagnostics.warnings { logger.warning("\(warning)") }
            logger.info("configuration reloaded", metadata: ["file": "\(config.file)", "changes": "\(changes)"])
        case .refused(let problems):
            for problem in problems { logger.error("\(problem)", metadata: ["reload": "refused"]) }
            logger.error("configuration reload refused; the previous configuration keeps running",
                         metadata: ["file": "\(config.file)", "problems": "\(problems.count)"])
        }
        return result
    }

    private func apply(_ config: CollectorConfig) async -> ReloadResult {
        guard config.diagnostics.isEmpty else { return .refused(config.diagnostics.all) }
        let old = generation
        let diff = ConfigDiff(old: old.config, new: config)
        guard let assembly = Self.assemble(config, registry: registry, context: baseContext, reuse: (old, diff)) else {
            return .refused(config.diagnostics.all)
        }
        var undo = Undo()
        let pipelines: [Pipeline]
        do {
            pipelines = try await preparePipelines(assembly, old: old, undo: &undo)
            try await startNew(assembly, config: config, old: old, diff: diff, undo: &undo)
        } catch let failure as PrepareFailure {
            await undo.run(health: health)
            config.diagnostics.report(line: failure.line, path: failure.path, failure.message)
            return .refused(config.diagnostics.all)
        } catch {
            await undo.run(health: health)
            config.diagnostics.report(line: nil, path: "", "\(error)")
            return .refused(config.diagnostics.all)
        }
        await commit(config: config, assembly: assembly, pipelines: pipelines, old: old, diff: diff, interim: undo.interimSlots)
        return .applied(changes: Self.describe(diff, pipelines: pipelines, old: old))
    }

    // MARK: Prepare

    /// A step of the prepare phase that failed, with where in the file it points.
    struct PrepareFailure: Error {
        let line: Int?
        let path: String
        let message: String
    }

    /// What the prepare phase started, to stop again if a later step fails.
    struct Undo {
        var logs: [any PipelineLog] = []
        var started: [@Sendable () async -> Void] = []
        /// Old instances stopped to free their port, to start again.
        var restart: [@Sendable () async throws -> Void] = []
        var interimSlots: [ComponentID: ReceiverSinkSlot] = [:]

        func run(health: HealthState) async {
            for stop in started.reversed() { await stop() }
            for log in logs { log.close() }
            for start in restart { try? await start() }
        }
    }

    /// The new generation's pipelines: a log kept where its spec allows, else opened.
    private func preparePipelines(_ assembly: Assembly, old: Generation, undo: inout Undo) async throws -> [Pipeline] {
        var result: [Pipeline] = []
        for plan in assembly.plans {
            if let before = old.pipelines.first(where: { $0.config.id == plan.config.id }) {
                switch LogSpec.decide(pipeline: plan.config.id, old: before.spec, new: plan.spec) {
                case .keep, .keepUntilRestart:
                    result.append(Pipeline(config: plan.config, log: before.log, spec: before.spec, processors: plan.processors,
                                           connectors: plan.connectors, shape: plan.shape))
                    continue
                case .replace:
                    break
                }
            }
            if case .disk(let directory, _) = plan.spec, let closing = retiringDisk.withLock({ $0[Self.diskKey(directory, plan.config.id)] }) {
                // The same directory is still being let go by an earlier reload.
                await closing.value
            }
            do {
                let pipeline = try Self.openPipeline(plan, context: assembly.context)
                undo.logs.append(pipeline.log)
                result.append(pipeline)
            } catch {
                throw PrepareFailure(line: plan.config.line, path: "service.pipelines.\(plan.config.id)", message: "\(error)")
            }
        }
        return result
    }

    /// Starts the new and changed components. A receiver or extension that cannot
    /// bind because its old instance holds the port gets the port after the old one
    /// is stopped; if it still cannot start, the old one starts again.
    private func startNew(_ assembly: Assembly, config: CollectorConfig, old: Generation, diff: ConfigDiff, undo: inout Undo) async throws {
        func failure(_ section: String, _ id: ComponentID, _ error: any Error) -> PrepareFailure {
            let line = config.section(section, id)?.line
            return PrepareFailure(line: line, path: "\(section).\(id)", message: "cannot start: \(error)")
        }
        let health = self.health
        for (id, ext) in assembly.extensions where !diff.extensions.kept.contains(id) {
            let previous = old.extensions.first(where: { $0.id == id }).map { OldInstance($0.instance, health: health) }
            do {
                try await Self.start(replacing: previous, undo: &undo) { try await ext.start(health: health) }
            } catch { throw failure("extensions", id, error) }
            undo.started.append { await ext.shutdown() }
        }
        for (id, exporter) in assembly.exporters.sorted(by: { $0.key < $1.key }) where !diff.exporters.kept.contains(id) {
            do { try await exporter.start() } catch { throw failure("exporters", id, error) }
            undo.started.append { await exporter.shutdown() }
        }
        for (id, processor) in assembly.processors where !diff.processors.kept.contains(id) {
            do { try await processor.start() } catch { throw failure("processors", id, error) }
            undo.started.append { await processor.shutdown() }
        }
        for (id, receiver) in assembly.receivers.sorted(by: { $0.key < $1.key }) where !diff.receivers.kept.contains(id) {
            // Until the commit it delivers where its old instance did (or asks
            // clients to retry in a moment, when it is new).
            var interim = old.slots[id]?.fanout ?? Self.fanout(for: id, pipelines: [], metrics: baseContext.metrics)
            if old.slots[id] == nil { interim.wiring = true }
            let slot = ReceiverSinkSlot(interim)
            var previous: OldInstance?
            if let running = old.receivers[id], let runningSlot = old.slots[id] { previous = OldInstance(running, sink: runningSlot) }
            do {
                try await Self.start(replacing: previous, undo: &undo) { try await receiver.start(sink: slot) }
            } catch { throw failure("receivers", id, error) }
            undo.started.append { await receiver.shutdown() }
            undo.interimSlots[id] = slot
        }
    }

    /// The running instance a new receiver or extension replaces: how to stop it to
    /// free its port, and how to start it again if the new one fails anyway.
    struct OldInstance {
        let stop: @Sendable () async -> Void
        let restart: @Sendable () async throws -> Void

        init(_ receiver: any Receiver, sink: ReceiverSinkSlot) {
            stop = { await receiver.shutdown() }
            restart = { try await receiver.start(sink: sink) }
        }

        init(_ ext: any Extension, health: HealthState) {
            stop = { await ext.shutdown() }
            restart = { try await ext.start(health: health) }
        }
    }

    /// Starts a new instance; when that fails and an old instance exists, stops the
    /// old one (it may hold the port) and tries once more.
    private static func start(replacing old: OldInstance?, undo: inout Undo, _ start: () async throws -> Void) async throws {
        do {
            try await start()
        } catch {
            guard let old else { throw error }
            await old.stop()
            undo.restart.append(old.restart)
            try await start()
        }
    }

    // MARK: Commit

    private func commit(config: CollectorConfig, assembly: Assembly, pipelines: [Pipeline], old: Generation, diff: ConfigDiff,
                        interim: [ComponentID: ReceiverSinkSlot]) async {
        let logger = baseContext.logger
        let timeout = config.shutdownTimeout
        var next = Generation(config: config, extensions: assembly.extensions, receivers: assembly.receivers, processors: assembly.processors,
                              exporters: assembly.exporters, pipelines: pipelines, slots: [:], deliveries: [:], board: StatusBoard(),
                              context: assembly.context)
        for plan in assembly.plans {
            guard let before = old.pipelines.first(where: { $0.config.id == plan.config.id }),
                  case .keepUntilRestart(let why) = LogSpec.decide(pipeline: plan.config.id, old: before.spec, new: plan.spec) else { continue }
            logger.warning("\(why)")
        }

        // 1. Every receiver delivers into the new pipelines from its next request on.
        for id in assembly.receivers.keys {
            let slot = old.slots[id].flatMap { diff.receivers.kept.contains(id) ? $0 : nil } ?? interim[id]!
            slot.swap(Self.fanout(for: id, pipelines: pipelines, metrics: baseContext.metrics))
            next.slots[id] = slot
        }
        // 2. Receivers that were replaced or removed stop; requests in flight finish
        //    against the logs they were appended to.
        for (id, receiver) in old.receivers where !diff.receivers.kept.contains(id) { await receiver.shutdown() }

        // 3. Delivery loops.
        let oldShapes = Dictionary(uniqueKeysWithValues: old.deliveries.map { key, delivery in
            (key, Self.shape(old.pipelines.first { $0.config.id == key.pipeline }!, delivery.exporter))
        })
        var newShapes: [DeliveryKey: BatchShape] = [:]
        for pipeline in pipelines {
            for id in pipeline.config.exporters {
                guard let exporter = assembly.exporters[id] else { continue }
                newShapes[DeliveryKey(pipeline: pipeline.config.id, exporter: id)] = Self.shape(pipeline, exporter)
            }
        }
        let keptLogs = Set(pipelines.filter { p in old.pipelines.contains { $0.config.id == p.config.id && $0.log === p.log } }.map(\.config.id))
        let plan = DeliveryPlan(old: oldShapes, new: newShapes, keptLogs: keptLogs, keptExporters: diff.exporters.kept)
        for key in plan.keep { next.deliveries[key] = old.deliveries[key] }
        for key in plan.restart.union(plan.start).sorted() {
            let pipeline = pipelines.first { $0.config.id == key.pipeline }!
            var previous: Task<Void, Never>?
            if plan.restart.contains(key), let running = old.deliveries[key] {
                running.control.stop()
                previous = running.task
            } else if let drainingNow = draining.withLock({ $0[key] }), drainingNow.log === pipeline.log {
                // Added back while still draining from an earlier reload.
                drainingNow.control.stop()
                previous = drainingNow.task
            }
            next.deliveries[key] = launch(key, pipeline: pipeline, exporter: assembly.exporters[key.exporter]!, after: previous, context: next.context)
        }
        for pipeline in pipelines { registerGauges(pipeline) }
        register(next, on: next.board)
        current.withLock { $0 = next }

        let deadline = ContinuousClock.now + timeout
        for key in plan.drain.sorted() { drain(old.deliveries[key]!, deadline: deadline) }
        // 4. Logs no pipeline uses any more.
        for before in old.pipelines where !pipelines.contains(where: { $0.log === before.log }) {
            retire(before, deliveries: old.deliveries.values.filter { $0.log === before.log }, deadline: deadline, timeout: timeout)
        }
        // 5. Old instances, once nothing runs on them.
        for (id, exporter) in old.exporters where !diff.exporters.kept.contains(id) {
            let loops = old.deliveries.values.filter { $0.exporter === exporter }.map(\.task)
            inBackground {
                _ = await Self.finish(loops, by: deadline)
                await exporter.shutdown()
            }
        }
        for (id, processor) in old.processors where !diff.processors.kept.contains(id) { await processor.shutdown() }
        for (id, ext) in old.extensions where !diff.extensions.kept.contains(id) { await ext.shutdown() }
        if !Self.sameTelemetry(old.config.telemetry, config.telemetry) {
            logger.warning("service.telemetry changed; the metrics address and log settings apply at the next restart")
        }
    }

    /// An exporter left a pipeline whose log stays: it delivers what the log held at
    /// the reload, then lets go of its cursor (which held entries back).
    private func drain(_ delivery: Delivery, deadline: ContinuousClock.Instant) {
        let log = delivery.log, key = delivery.key
        let target = log.lastSequence
        let held = log.lag(key.exporter)
        delivery.control.drain(through: target, alreadyDone: held.entries == 0)
        draining.withLock { $0[key] = delivery }
        let logger = baseContext.logger
        if held.items > 0 {
            logger.info("exporter removed from the pipeline; delivering what it still holds before letting go",
                        metadata: ["exporter": "\(key.exporter)", "pipeline": "\(log.name)", "items": "\(held.items)"])
        }
        inBackground { [weak self] in
            let done = await Self.finish([delivery.task], by: deadline)
            let left = log.lag(key.exporter)
            // Added back meanwhile: the new loop reads this cursor now.
            let readdedHere = self?.generation.deliveries[key].map { $0.log === log } ?? false
            self?.draining.withLock { if $0[key]?.task == delivery.task { $0[key] = nil } }
            guard !readdedHere else { return }
            log.detach(key.exporter)
            guard !done, left.items > 0 else { return }
            if log is DiskPipelineLog {
                logger.warning("shutdown timeout passed while a removed exporter drained; its undelivered entries stay on disk until the pipeline's other exporters pass them (its cursor file is kept: adding it back resumes there)",
                               metadata: ["exporter": "\(key.exporter)", "pipeline": "\(log.name)", "items": "\(left.items)"])
            } else {
                self?.undeliveredAtShutdown.add(left.items)
                logger.error("shutdown timeout passed while a removed exporter drained; what it had not delivered is dropped with its cursor",
                             metadata: ["exporter": "\(key.exporter)", "pipeline": "\(log.name)", "items": "\(left.items)"])
            }
        }
    }

    /// A pipeline's log the new configuration does not use: a memory log is closed
    /// and drained by its old exporters up to the shutdown timeout; a disk log's
    /// loops stop after their current attempt and the log is closed with its data
    /// and cursors on disk, for when the pipeline comes back.
    private func retire(_ pipeline: Pipeline, deliveries: [Delivery], deadline: ContinuousClock.Instant, timeout: Duration) {
        let log = pipeline.log, logger = baseContext.logger
        let tasks = deliveries.map(\.task)
        if case .disk(let directory, _) = pipeline.spec {
            for delivery in deliveries { delivery.control.stop() }
            let key = Self.diskKey(directory, pipeline.config.id)
            let task = inBackground { [weak self] in
                _ = await Self.finish(tasks, by: deadline)
                let held = pipeline.config.exporters.reduce(0) { $0 + log.lag($1).items }
                log.close()
                self?.retiringDisk.withLock { $0[key] = nil }
                logger.info("pipeline's disk log closed by a reload; its undelivered data stays on disk and is delivered when the pipeline is configured again",
                            metadata: ["pipeline": "\(log.name)", "directory": "\((log as? DiskPipelineLog)?.directory ?? directory)", "items": "\(held)"])
            }
            retiringDisk.withLock { $0[key] = task }
        } else {
            log.close()
            inBackground { [weak self] in
                guard !(await Self.finish(tasks, by: deadline)) else { return }
                let left = pipeline.config.exporters.reduce(0) { $0 + log.lag($1).items }
                guard left > 0 else { return }
                self?.undeliveredAtShutdown.add(left)
                logger.error("pipeline retired by a reload: shutdown timeout passed with data undelivered; it is lost with the memory log",
                             metadata: ["pipeline": "\(log.name)", "items": "\(left)", "shutdown_timeout": "\(timeout)"])
            }
        }
    }

    @discardableResult
    private func inBackground(_ work: @escaping @Sendable () async -> Void) -> Task<Void, Never> {
        let task = Task { await work() }
        background.withLock { tasks in
            tasks.removeAll { $0.isCancelled }
            tasks.append(task)
        }
        return task
    }

    static func diskKey(_ directory: String, _ pipeline: ComponentID) -> String { "\(directory)/\(pipeline)" }

    static func sameTelemetry(_ a: TelemetryConfig, _ b: TelemetryConfig) -> Bool {
        a.metricsAddress == b.metricsAddress && a.logLevel == b.logLevel && a.logEncoding == b.logEncoding
    }

    /// One line for the log: what the reload changed.
    static func describe(_ diff: ConfigDiff, pipelines: [Pipeline], old: Generation) -> String {
        var parts: [String] = []
        for (kind, changes) in [("extensions", diff.extensions), ("receivers", diff.receivers), ("processors", diff.processors), ("exporters", diff.exporters),
                                ("connectors", diff.connectors)] {
            for (verb, ids) in [("added", changes.added), ("changed", changes.changed), ("removed", changes.removed)] where !ids.isEmpty {
                parts.append("\(kind) \(verb): \(ids.sorted().map(\.description).joined(separator: ","))")
            }
        }
        if !diff.pipelines.added.isEmpty { parts.append("pipelines added: \(diff.pipelines.added.sorted().map(\.description).joined(separator: ","))") }
        if !diff.pipelines.removed.isEmpty { parts.append("pipelines removed: \(diff.pipelines.removed.sorted().map(\.description).joined(separator: ","))") }
        let replaced = pipelines.filter { p in old.pipelines.contains { $0.config.id == p.config.id && $0.log !== p.log } }
        if !replaced.isEmpty { parts.append("pipeline logs replaced: \(replaced.map(\.log.name).joined(separator: ","))") }
        return parts.isEmpty ? "none" : parts.joined(separator: "; ")
    }
}

extension CollectorConfig {
    /// The section of component `id` under `section` (receivers, exporters, …).
    func section(_ section: String, _ id: ComponentID) -> ConfigMap? {
        let list: [(id: ComponentID, config: ConfigMap)]
        switch section {
        case "receivers": list = receivers
        case "processors": list = processors
        case "exporters": list = exporters
        default: list = extensions
        }
        return list.first { $0.id == id }?.config
    }
}

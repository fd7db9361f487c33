import Foundation
import Logging

/// The loop that moves one pipeline's data through one exporter: read at the
/// exporter's cursor (shaped by the batch settings), try, classify, retry with
/// backoff, dead-letter what can never be delivered, commit. Every exporter gets this
/// behaviour from here, so none of them implements retry or status on its own.
public struct ExporterDelivery: Sendable {
    public let exporter: any Exporter
    public let signal: OTLPSignal
    public let pipeline: String
    public let cursor: any LogCursor
    public let shape: BatchShape
    public let status: ExporterStatus
    public let deadLetter: DeadLetterFile
    public let logger: Logger
    /// Sleeping is injected so tests can pass hours of backoff in milliseconds.
    public let sleep: @Sendable (Duration) async throws -> Void
    public let now: @Sendable () -> ContinuousClock.Instant
    public let counters: Counters

    public struct Counters: Sendable {
        public let sent: Counter
        let failed: Counter
        let retries: Counter
        public let deadLettered: Counter
        /// Items per delivered payload, as a Prometheus summary's _sum and _count.
        let batchItemsSum: Counter
        let batchCount: Counter
    }

    public init(
        exporter: any Exporter, signal: OTLPSignal, pipeline: String, cursor: any LogCursor, shape: BatchShape,
        status: ExporterStatus, deadLetter: DeadLetterFile, logger: Logger, metrics: MetricsRegistry = .shared,
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
    ) {
        self.exporter = exporter
        self.signal = signal
        self.pipeline = pipeline
        self.cursor = cursor
        self.shape = shape
        self.status = status
        self.deadLetter = deadLetter
        self.logger = logger
        self.sleep = sleep
        self.now = now
        let labels = [("exporter", exporter.id.description), ("signal", signal.rawValue)]
        counters = Counters(
            sent: metrics.counter("sluice_exporter_sent_items_total", "Items delivered to the destination.", labels: labels),
            failed: metrics.counter("sluice_exporter_send_failed_items_total", "Items in attempts that failed (each attempt counts).", labels: labels),
            retries: metrics.counter("sluice_exporter_retries_total", "Delivery attempts retried.", labels: labels),
            deadLettered: metrics.counter("sluice_exporter_dead_lettered_items_total", "Items written to the dead-letter file.", labels: labels),
            batchItemsSum: metrics.counter("sluice_exporter_batch_items_sum", "Items in delivered payloads (sum; divide by _count for the mean batch size).", labels: labels),
            batchCount: metrics.counter("sluice_exporter_batch_items_count", "Delivered payloads.", labels: labels))
    }

    /// Runs until the log is closed and drained, or the task is cancelled (the
    /// shutdown deadline). Whatever is not committed then stays in the log.
    public func run() async {
        while !Task.isCancelled {
            let entries = await cursor.read(shape)
            guard let last = entries.last else { return }
            let delivered = await deliver(entries)
            if delivered {
                cursor.commit(through: last.sequence)
            } else {
                cursor.rewind()
                return
            }
        }
    }

    /// One group of entries, until delivered or dead-lettered (true), or cancelled (false).
    func deliver(_ entries: [LogEntry]) async -> Bool {
        var batches = entries.map(\.batch)
        var items = entries.reduce(0) { $0 + $1.items }
        let retry = exporter.retry
        let started = now()
        var attempt = 0
        while true {
            if Task.isCancelled { return false }
            var retryable: (reason: String, after: Duration?)?
            switch masked(await exporter.export(batches, signal: signal)) {
            case .delivered:
                counters.sent.add(items)
                counters.batchItemsSum.add(items)
                counters.batchCount.increment()
                if status.set(.active) {
                    logger.info("exporter recovered", metadata: ["exporter": "\(exporter.id)", "pipeline": "\(pipeline)"])
                }
                return true
            case .partiallyDelivered(let rejected, let reason):
                let refused = min(items, rejected.reduce(0) { $0 + $1.itemCount })
                counters.sent.add(items - refused)
                counters.batchItemsSum.add(items - refused)
                counters.batchCount.increment()
                counters.failed.add(refused)
                // The destination is taking data, so the exporter is active; the refusal
                // is its last error until the next one.
                if status.set(.active, error: reason) {
                    logger.info("exporter recovered", metadata: ["exporter": "\(exporter.id)", "pipeline": "\(pipeline)"])
                }
                logger.error("destination refused some items permanently; writing them to the dead-letter file",
                             metadata: ["exporter": "\(exporter.id)", "reason": "\(reason)", "items": "\(refused)",
                                        "delivered": "\(items - refused)", "dead_letter": "\(deadLetter.path)"])
                return await writeDeadLetter(rejected, items: refused, reason: reason)
            case .permanent(let reason):
                // The destination refused the whole request (a bad token, a wrong URL):
                // nothing gets through until someone acts, which is what `failed` says.
                // The next delivery that succeeds makes the exporter active again.
                counters.failed.add(items)
                let why = "\(reason) (refused for good; \(whatToDo))"
                if status.set(.failed, error: why) {
                    logger.error("exporter failed: the destination refused a request for good; its data goes to the dead-letter file",
                                 metadata: ["exporter": "\(exporter.id)", "pipeline": "\(pipeline)", "reason": "\(why)",
                                            "items": "\(items)", "dead_letter": "\(deadLetter.path)"])
                } else {
                    // Already failed and said so: one error line per transition, not per request.
                    logger.debug("destination refused data permanently; writing it to the dead-letter file",
                                 metadata: ["exporter": "\(exporter.id)", "reason": "\(reason)", "items": "\(items)", "dead_letter": "\(deadLetter.path)"])
                }
                return await writeDeadLetter(batches, items: items, reason: reason)
            case .partiallyRetryable(let remaining, let reason, let after):
                // The delivered part counts as sent; only the rest is retried.
                let left = min(items, remaining.reduce(0) { $0 + $1.itemCount })
                counters.sent.add(items - left)
                batches = remaining
                items = left
                retryable = (reason, after)
            case .retryable(let reason, let after):
                retryable = (reason, after)
            }
            if let (reason, after) = retryable {
                counters.failed.add(items)
                let elapsed = now() - started
                guard retry.enabled, retry.maxElapsedTime == .zero || elapsed < retry.maxElapsedTime else {
                    let cause = retry.enabled ? "retries exhausted after \(retry.maxElapsedTime): \(reason)" : "retry_on_failure is disabled: \(reason)"
                    let why = "\(cause) (\(whatToDo))"
                    if status.set(.failed, error: why) {
                        logger.error("exporter failed; its data goes to the dead-letter file",
                                     metadata: ["exporter": "\(exporter.id)", "reason": "\(why)", "dead_letter": "\(deadLetter.path)"])
                    }
                    return await writeDeadLetter(batches, items: items, reason: cause)
                }
                if status.set(.degraded, error: reason) {
                    logger.warning("exporter degraded; data waits in the pipeline log and is retried",
                                   metadata: ["exporter": "\(exporter.id)", "pipeline": "\(pipeline)", "reason": "\(reason)"])
                }
                counters.retries.increment()
                var delay = retry.delay(attempt: attempt, retryAfter: after, random: Double.random(in: 0..<1))
                if retry.maxElapsedTime > .zero {
                    // Wake up for one last attempt at the deadline rather than sleep past it.
                    delay = min(delay, max(.milliseconds(1), retry.maxElapsedTime - elapsed))
                }
                attempt += 1
                do { try await sleep(delay) } catch { return false }
            }
        }
    }

    /// What an operator does about a failed exporter, in `/status` and the log.
    private var whatToDo: String {
        "the data is in the dead-letter file \(deadLetter.path); fix the cause (the token or credentials, the URL, the destination), "
            + "reload the configuration, then send it again with sluice replay --exporter \(exporter.id)"
    }

    /// The outcome with the exporter's secrets masked in its reason, whatever the
    /// destination echoed back, and the reason cut to `SecretMask.reasonLength`: it
    /// goes to `/status`, the log and the dead-letter file.
    private func masked(_ outcome: ExportOutcome) -> ExportOutcome {
        let secrets = exporter.secrets
        let clean = { (reason: String) in secrets.clean(reason, limit: SecretMask.reasonLength) }
        switch outcome {
        case .delivered: return outcome
        case .retryable(let reason, let after): return .retryable(reason: clean(reason), after: after)
        case .permanent(let reason): return .permanent(reason: clean(reason))
        case .partiallyDelivered(let rejected, let reason): return .partiallyDelivered(rejected: rejected, reason: clean(reason))
        case .partiallyRetryable(let remaining, let reason, let after):
            return .partiallyRetryable(remaining: remaining, reason: clean(reason), after: after)
        }
    }

    private func writeDeadLetter(_ batches: [OTLPBatch], items: Int, reason: String) async -> Bool {
        var backoff: Duration = .seconds(1)
        while true {
            do {
                try deadLetter.write(batches, exporter: exporter.id, reason: reason)
                counters.deadLettered.add(items)
                status.deadLettered(items)
                return true
            } catch {
                // Without the dead-letter file the data has nowhere safe to go: keep it
                // in the log and try again.
                logger.error("cannot write the dead-letter file; keeping the data and retrying",
                             metadata: ["exporter": "\(exporter.id)", "error": "\(error)"])
                do { try await sleep(backoff) } catch { return false }
                backoff = min(backoff * 2, .seconds(60))
            }
        }
    }
}

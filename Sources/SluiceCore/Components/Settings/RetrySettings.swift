/// `retry_on_failure`, with the Collector's names and Sluice's defaults: an audit
/// trail is retried for a day before anything is given up.
/// (Collector: exporter/exporterhelper, configretry.BackOffConfig.)
public struct RetrySettings: Sendable, Equatable {
    public var enabled = true
    public var initialInterval: Duration = .seconds(5)
    public var maxInterval: Duration = .seconds(30)
    /// Give up (dead-letter) after retrying this long; zero means never give up.
    public var maxElapsedTime: Duration = .seconds(24 * 3600)
    public var multiplier: Double = 1.5
    public var randomizationFactor: Double = 0.5

    public init() {}

    public init(_ config: ConfigMap?) {
        guard let config else { return }
        if let v = config.bool("enabled") { enabled = v }
        if let v = config.duration("initial_interval") { initialInterval = v }
        if let v = config.duration("max_interval") { maxInterval = v }
        if let v = config.duration("max_elapsed_time") { maxElapsedTime = v }
        if let v = config.double("multiplier") {
            if v < 1 { config.report("multiplier", "must be at least 1") } else { multiplier = v }
        }
        if let v = config.double("randomization_factor") {
            if v < 0 || v > 1 { config.report("randomization_factor", "must be between 0 and 1") } else { randomizationFactor = v }
        }
        config.finish()
    }

    /// The wait before retry number `attempt` (0-based), with jitter drawn from `random`
    /// in [0, 1). A destination's Retry-After replaces the schedule when given.
    public func delay(attempt: Int, retryAfter: Duration?, random: Double) -> Duration {
        if let retryAfter { return min(retryAfter, .seconds(3600)) }
        var base = Double(initialInterval.components.seconds) + Double(initialInterval.components.attoseconds) / 1e18
        let cap = Double(maxInterval.components.seconds) + Double(maxInterval.components.attoseconds) / 1e18
        for _ in 0..<min(attempt, 64) { base = min(base * multiplier, cap) }
        let spread = base * randomizationFactor
        let jittered = base - spread + 2 * spread * random
        return .milliseconds(Int64(max(0, jittered) * 1000))
    }
}

/// `sending_queue`: how much an exporter may have waiting. In Sluice the queue is the
/// pipeline log itself (docs/architecture.md); these settings size it.
public struct QueueSettings: Sendable, Equatable {
    public enum Sizer: String, Sendable { case requests, items, bytes }

    public var queueSize: Int = 64 << 20
    public var sizer: Sizer = .bytes
    /// Set for the disk log (`file_storage`); kept for when that exists.
    public var storage: ComponentID?
    /// `batch`: the exporter's own batching (the Collector's exporterhelper), which
    /// takes the place of the pipeline's batch processor for this exporter.
    public var batch: BatchShape?

    public init() {}

    public init(_ config: ConfigMap?) {
        guard let config else { return }
        if config.bool("enabled") == false {
            config.warn("enabled", "false has no effect in Sluice: every pipeline keeps its log (in memory, or on disk with storage), and a request is answered once it is in it")
        }
        if let v = config.enumeration("sizer", ["requests", "items", "bytes"]) {
            sizer = Sizer(rawValue: v)!
            if !config.has("queue_size") {
                queueSize = sizer == .bytes ? 64 << 20 : (sizer == .items ? 200_000 : 1000)
            }
        }
        if let v = config.int("queue_size", min: 1) {
            queueSize = v
            // The Collector's default sizer is requests; a queue_size without a sizer
            // is read that way so an existing config means what it meant.
            if !config.has("sizer") { sizer = .requests }
        }
        if let v = config.string("storage") {
            if let id = ComponentID(v) { storage = id } else { config.report("storage", "'\(v)' is not a component id") }
        }
        if config.has("batch") {
            var shape = BatchShape()
            if let section = config.map("batch") {
                if let v = section.duration("flush_timeout") { shape.timeout = v }
                if let v = section.int("min_size", min: 0) { shape.sendBatchSize = max(1, v) }
                if let v = section.int("max_size", min: 0) { shape.sendBatchMaxSize = v }
                if let v = section.enumeration("sizer", ["items", "requests", "bytes"]), v != "items" {
                    section.report("sizer", "Sluice batches by items (records, spans, points); use sizer: items, or the batch processor's send_batch_size")
                }
                if shape.sendBatchMaxSize > 0, shape.sendBatchMaxSize < shape.sendBatchSize {
                    section.report("max_size", "\(shape.sendBatchMaxSize) is below min_size \(shape.sendBatchSize)")
                }
                section.finish()
            }
            batch = shape
        }
        // Kept for Collector configs; named, since they change nothing here.
        if config.int("num_consumers", min: 1) != nil {
            config.warn("num_consumers", "has no effect in Sluice: an exporter sends one call at a time, in log order, so that a retry never reorders or repeats data; raise the batch size for throughput")
        }
        config.keysWithoutEffect([
            ("blocking", "a full log answers clients 429/503, which they retry; the Collector deprecated blocking"),
            ("block_on_overflow", "a full log answers clients 429/503, which they retry (file_storage's when_full chooses block or drop_oldest)"),
            ("wait_for_result", "a request is answered once it is in the pipeline's log, on disk with file_storage"),
        ])
        config.finish()
    }
}

/// `timeout`, `headers`, `compression`: settings every HTTP exporter reads the same way.
public struct HTTPClientSettings: Sendable {
    public var timeout: Duration = .seconds(30)
    public var headers: [String: String] = [:]
    public var compression: String = "gzip"

    public init() {}

    /// Reads the shared keys from an exporter's section (the rest is the exporter's).
    public init(_ config: ConfigMap, defaultCompression: String = "gzip") {
        compression = defaultCompression
        if let v = config.duration("timeout") { timeout = v }
        if let v = config.stringMap("headers") { headers = v }
        if let v = config.enumeration("compression", ["gzip", "none", ""]) { compression = v.isEmpty ? "none" : v }
    }
}

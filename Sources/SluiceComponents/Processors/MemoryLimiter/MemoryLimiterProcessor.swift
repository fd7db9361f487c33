import Foundation
import Logging
import SluiceCore
import Synchronization

/// `memory_limiter`: above the soft limit (`limit_mib - spike_limit_mib`) receivers
/// refuse with 503 / UNAVAILABLE and a Retry-After, so clients back off while
/// exporters drain the log; below it they accept again. The process's resident set
/// is sampled every `check_interval`, and on every request once above the limit.
public struct MemoryLimiterProcessorFactory: ProcessorFactory {
    public let type = "memory_limiter"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Processor)? {
        let before = config.diagnostics.all.count
        let interval = config.duration("check_interval") ?? .seconds(1)
        if interval <= .zero { config.report("check_interval", "must be greater than 0") }
        var limit = config.int("limit_mib", min: 1).map { $0 << 20 }
        var spike = config.int("spike_limit_mib", min: 0).map { $0 << 20 }
        if let percentage = config.int("limit_percentage", min: 1, max: 100) {
            if limit != nil { config.report("limit_percentage", "set limit_mib or limit_percentage, not both") }
            limit = MemoryLimiterProcessor.availableMemory() / 100 * percentage
            if let spikePercentage = config.int("spike_limit_percentage", min: 0, max: 100) {
                spike = MemoryLimiterProcessor.availableMemory() / 100 * spikePercentage
            }
        }
        if config.has("spike_limit_percentage"), !config.has("limit_percentage") {
            _ = config.int("spike_limit_percentage", min: 0, max: 100)
            config.report("spike_limit_percentage", "goes with limit_percentage; with limit_mib set spike_limit_mib")
        }
        config.keysWithoutEffect([("min_gc_interval_when_soft_limited", "Swift has no garbage collector to run"),
                                  ("min_gc_interval_when_hard_limited", "Swift has no garbage collector to run")])
        config.finish()
        guard let limit else {
            if config.diagnostics.all.count == before { config.report("limit_mib", "missing: set limit_mib (or limit_percentage)") }
            return nil
        }
        let spikeBytes = spike ?? limit / 5
        if spikeBytes >= limit { config.report("spike_limit_mib", "must be less than limit_mib") }
        guard config.diagnostics.all.count == before else { return nil }
        return MemoryLimiterProcessor(id: id, softLimit: limit - spikeBytes, hardLimit: limit, interval: interval,
                                      logger: context.logger, metrics: context.metrics)
    }
}

final class MemoryLimiterProcessor: Processor {
    let id: ComponentID
    let softLimit: Int
    let hardLimit: Int
    let interval: Duration
    let logger: Logger
    private let refusing = Atomic<Bool>(false)
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let refusedRequests: Counter

    init(id: ComponentID, softLimit: Int, hardLimit: Int, interval: Duration, logger: Logger, metrics: MetricsRegistry) {
        self.id = id
        self.softLimit = softLimit
        self.hardLimit = hardLimit
        self.interval = interval
        self.logger = logger
        refusedRequests = metrics.counter("sluice_memory_limiter_refused_requests_total", "Requests refused above the memory limit.",
                                          labels: [("processor", id.description)])
        metrics.gauge("sluice_process_memory_limit_bytes", "The memory limiter's hard limit.", labels: [("processor", id.description)]) {
            Double(hardLimit)
        }
    }

    func start() async throws {
        sample()
        let interval = self.interval
        task.withLock { task in
            task = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    self?.sample()
                }
            }
        }
    }

    func shutdown() async {
        task.withLock { $0?.cancel() }
    }

    private func sample() {
        let rss = ProcessMemory.residentBytes()
        let wasRefusing = refusing.load(ordering: .relaxed)
        let nowRefusing = wasRefusing ? rss >= softLimit - softLimit / 20 : rss >= softLimit
        if nowRefusing != wasRefusing {
            refusing.store(nowRefusing, ordering: .relaxed)
            if nowRefusing {
                logger.warning("memory above the soft limit; refusing data until exporters drain",
                               metadata: ["processor": "\(id)", "rss_mib": "\(rss >> 20)", "soft_limit_mib": "\(softLimit >> 20)"])
            } else {
                logger.info("memory below the soft limit again; accepting data", metadata: ["processor": "\(id)", "rss_mib": "\(rss >> 20)"])
            }
        }
    }

    func process(_ batch: OTLPBatch) -> ProcessOutcome {
        if refusing.load(ordering: .relaxed) {
            // Recheck: memory may have dropped since the last sample.
            sample()
            if refusing.load(ordering: .relaxed) {
                refusedRequests.increment()
                return .refuse(.memoryLimit, retryAfter: .seconds(1))
            }
        }
        return .pass(dropped: 0)
    }

    /// Memory this process may use: the cgroup limit when there is one (a pod's
    /// memory limit), else the machine's memory.
    static func availableMemory() -> Int {
        availableMemory(physical: Int(ProcessInfo.processInfo.physicalMemory)) { path in
            try? String(contentsOfFile: path, encoding: .utf8)
        }
    }

    /// cgroup v2 names the limit `memory.max` ("max" when there is none); cgroup v1,
    /// still the default on older nodes (the clusters that run the classic sidecar
    /// form), `memory/memory.limit_in_bytes`, with a huge number for none. Without
    /// the v1 file, limit_percentage of a pod on such a node was a share of the
    /// node's memory, and the kernel killed the container before the limiter acted.
    static func availableMemory(physical: Int, read: (String) -> String?) -> Int {
        for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            if let text = read(path), let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), value < physical {
                return value
            }
        }
        return physical
    }
}

/// The process's resident memory and CPU time, from /proc.
public enum ProcessMemory {
    public static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    public static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }
}

import Synchronization

/// Whether the collector is serving: starting, running, or shutting down. The
/// health_check extension answers from this.
public final class HealthState: Sendable {
    public enum Phase: String, Sendable { case starting, running, stopping }
    private let phase = Mutex(Phase.starting)

    public init() {}

    public var current: Phase { phase.withLock { $0 } }
    public func set(_ value: Phase) { phase.withLock { $0 = value } }
}

import SluiceCore
import Synchronization

/// Lets a reload stop one delivery loop (`ExporterDelivery.run`) between attempts,
/// or have it deliver only up to a point, without touching the loop itself: the loop
/// reads through `ControlledCursor` and sleeps through `sleep(_:)`, both of which
/// answer "stop" once asked.
///
/// The phases are a small state machine so a stop never cuts an attempt short:
/// reading (waiting for data: safe to cancel, nothing is in flight), exporting (an
/// attempt is on the wire: let it finish, the next read or sleep sees the stop) and
/// sleeping (a retry backoff: safe to cancel, the entries are rewound and the next
/// loop starts at the same cursor). At-least-once either way: what was not
/// committed is read again by whoever reads this cursor next.
final class DeliveryControl: Sendable {
    enum Phase: Sendable { case idle, reading, exporting, sleeping }

    private struct State {
        var phase: Phase = .idle
        var stopping = false
        /// Deliver entries up to here, then end (an exporter leaving a pipeline).
        var drainThrough: UInt64?
        var task: Task<Void, Never>?
    }

    private let state = Mutex(State())

    /// The loop's task, so a stop can cancel a wait (set right after the task starts).
    func attach(_ task: Task<Void, Never>) {
        let cancelNow = state.withLock { s -> Bool in
            s.task = task
            return s.stopping && s.phase != .exporting
        }
        if cancelNow { task.cancel() }
    }

    /// Ends the loop after its current attempt.
    func stop() {
        let task = state.withLock { s -> Task<Void, Never>? in
            s.stopping = true
            return s.phase == .exporting ? nil : s.task
        }
        task?.cancel()
    }

    /// Ends the loop once everything through `sequence` is delivered. When the reader
    /// is already past it, that is at once.
    func drain(through sequence: UInt64, alreadyDone: Bool) {
        if alreadyDone { return stop() }
        state.withLock { $0.drainThrough = sequence }
    }

    var isStopping: Bool { state.withLock { $0.stopping } }
    var drainTarget: UInt64? { state.withLock { $0.drainThrough } }

    /// Moves to `phase` unless a stop came first (then false: the caller gives up).
    func enter(_ phase: Phase) -> Bool {
        state.withLock { s in
            guard !s.stopping else { return false }
            s.phase = phase
            return true
        }
    }

    /// The retry backoff `ExporterDelivery` sleeps through: throws at once when
    /// stopping, and is cancelled by `stop()` while it sleeps.
    func sleep(_ duration: Duration) async throws {
        guard enter(.sleeping) else { throw CancellationError() }
        defer { _ = enter(.exporting) }
        try await Task.sleep(for: duration)
    }

    func drained(through sequence: UInt64) {
        state.withLock { s in
            if let target = s.drainThrough, sequence >= target { s.stopping = true }
        }
    }
}

/// The cursor a controlled delivery loop reads through (see `DeliveryControl`).
struct ControlledCursor: LogCursor {
    let inner: any LogCursor
    let control: DeliveryControl

    func read(_ shape: BatchShape) async -> [LogEntry] {
        guard control.enter(.reading) else { return [] }
        var entries = await inner.read(shape)
        if let target = control.drainTarget {
            // Entries appended after the reload are not this reader's any more.
            entries.removeAll { $0.sequence > target }
        }
        guard !entries.isEmpty, control.enter(.exporting) else {
            // Stopped while reading (or nothing left before the drain target): put
            // the read position back so whoever reads this cursor next starts at the
            // last commit.
            inner.rewind()
            _ = control.enter(.idle)
            if control.drainTarget != nil { control.stop() }
            return []
        }
        return entries
    }

    func commit(through sequence: UInt64) {
        inner.commit(through: sequence)
        control.drained(through: sequence)
    }

    func rewind() { inner.rewind() }
}

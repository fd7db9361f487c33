// Every server connection of the process, so that a listener at its limit — its
// own `max_connections`, or the descriptors the process may open — closes its
// oldest quiet connection to take a new one instead of running out of file
// descriptors (then every listener stops answering). Without a connection it may
// close, the new one is refused (closed at once), which the kernel tells the client.
import Foundation
import NIOCore
import SluiceCore
import Synchronization

public final class ConnectionTable: Sendable {
    /// The process's table: every listener shares the descriptor budget.
    public static let shared = ConnectionTable(budget: ConnectionTable.descriptorBudget())

    struct Entry {
        let listener: String
        let channel: any Channel
        let admittedAt: NIODeadline
        var rank: ConnectionDeadlines.EvictionRank
    }

    private struct State {
        var entries: [Int: Entry] = [:]
        var perListener: [String: Int] = [:]
        var nextID = 0
    }

    /// Connections of all listeners together: the descriptors left once the
    /// process's own files (logs, segments, exporters' connections) are set aside.
    let budget: Int
    private let state = Mutex(State())

    init(budget: Int) { self.budget = budget }

    /// What happened to a new connection.
    enum Admission: Equatable {
        /// Taken; `evicted` connections were closed to make room.
        case admitted(id: Int, evicted: Int)
        /// At the limit with nothing to close: the connection is closed unanswered.
        case refused
    }

    /// Takes a new connection of `listener` (quiet: it has sent nothing) if the
    /// listener's limit and the process's budget allow, closing the oldest quiet or
    /// slow connection to make room when they do not.
    func admit(_ channel: any Channel, listener: String, maxConnections: Int, now: NIODeadline = .now()) -> Admission {
        let (admission, victims) = state.withLock { s -> (Admission, [any Channel]) in
            var victims: [any Channel] = []
            if s.perListener[listener, default: 0] >= maxConnections {
                guard let victim = Self.oldestEvictable(in: s.entries, listener: listener, now: now) else { return (.refused, []) }
                victims.append(Self.remove(victim, from: &s).channel)
            }
            if s.entries.count >= budget {
                guard let victim = Self.oldestEvictable(in: s.entries, listener: nil, now: now) else { return (.refused, victims) }
                victims.append(Self.remove(victim, from: &s).channel)
            }
            let id = s.nextID
            s.nextID += 1
            s.entries[id] = Entry(listener: listener, channel: channel, admittedAt: now, rank: .quiet(since: now))
            s.perListener[listener, default: 0] += 1
            return (.admitted(id: id, evicted: victims.count), victims)
        }
        for victim in victims { victim.close(promise: nil) }
        return admission
    }

    /// Closes the oldest quiet or slow connection of any listener (the process ran
    /// out of descriptors). Returns whether there was one.
    func evictOne(now: NIODeadline = .now()) -> Bool {
        let victim = state.withLock { s -> (any Channel)? in
            guard let id = Self.oldestEvictable(in: s.entries, listener: nil, now: now) else { return nil }
            return Self.remove(id, from: &s).channel
        }
        victim?.close(promise: nil)
        return victim != nil
    }

    /// How long accepting should wait: when a new connection of `listener` would
    /// have to close one accepted less than `settlingTime` ago (a flood's first
    /// second), it waits in the kernel's backlog instead, until the oldest of those
    /// has settled, rather than costing a good client its connection. `nil`: accept.
    func acceptDelay(listener: String, maxConnections: Int, now: NIODeadline = .now()) -> TimeAmount? {
        state.withLock { s -> TimeAmount? in
            let atListenerLimit = s.perListener[listener, default: 0] >= maxConnections
            guard atListenerLimit || s.entries.count >= budget else { return nil }
            guard let id = Self.oldestEvictable(in: s.entries, listener: atListenerLimit ? listener : nil, now: now) else { return nil }
            let settlesAt = s.entries[id]!.admittedAt + Self.settlingTime
            return settlesAt > now ? max(settlesAt - now, .milliseconds(10)) : nil
        }
    }

    func update(_ id: Int, rank: ConnectionDeadlines.EvictionRank) {
        state.withLock { s in s.entries[id]?.rank = rank }
    }

    func remove(_ id: Int) {
        state.withLock { s in if s.entries[id] != nil { _ = Self.remove(id, from: &s) } }
    }

    func count(listener: String) -> Int { state.withLock { $0.perListener[listener, default: 0] } }
    var count: Int { state.withLock { $0.entries.count } }

    private static func remove(_ id: Int, from s: inout State) -> Entry {
        let entry = s.entries.removeValue(forKey: id)!
        s.perListener[entry.listener, default: 1] -= 1
        return entry
    }

    /// A connection this young is not closed while an older one can be: between
    /// its accept and the first read of its request (which may wait behind a
    /// flood's accepts on a busy event loop) it looks as quiet as an idle one.
    static let settlingTime = TimeAmount.seconds(1)

    /// Quiet connections first, then slow ones, each oldest first; those younger
    /// than `settlingTime` only when no older one is left.
    private static func oldestEvictable(in entries: [Int: Entry], listener: String?, now: NIODeadline) -> Int? {
        var best: (id: Int, tier: Int, since: NIODeadline)?
        let settled = now - settlingTime
        for (id, entry) in entries where listener == nil || entry.listener == listener {
            let tier: Int
            let since: NIODeadline
            switch entry.rank {
            case .quiet(let s): (tier, since) = (entry.admittedAt <= settled ? 0 : 2, s)
            case .slowHeaders(let s): (tier, since) = (entry.admittedAt <= settled ? 1 : 3, s)
            case .busy: continue
            }
            if let current = best, current.tier < tier || (current.tier == tier && current.since <= since) { continue }
            best = (id, tier, since)
        }
        return best?.id
    }

    // MARK: The descriptor budget

    /// Raises the soft limit on open files to the hard one (as Go's runtime does at
    /// start), then keeps an eighth of it, at least 64, for everything but server
    /// connections.
    static func descriptorBudget() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 4096 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let open = Int(min(limit.rlim_cur, 1 << 20))  // RLIM_INFINITY is the largest value
        return max(16, open - max(64, open / 8))
    }
}

/// `max_connections` of a listener when the configuration does not set one: a
/// sidecar's clients are few, and a connection costs a descriptor and buffers.
public enum ConnectionLimits {
    public static let defaultMaxConnections = 1024
}

/// One warning for a recurring event, then at most one per interval with how many
/// happened since: a flood says what happened once, not once per connection.
final class ThrottledWarning: Sendable {
    private let interval: TimeAmount
    private let state = Mutex<(last: NIODeadline?, suppressed: Int)>((nil, 0))

    init(interval: TimeAmount = .seconds(60)) { self.interval = interval }

    /// Whether to log now, and how many events were not logged since the last line.
    func shouldLog(now: NIODeadline = .now()) -> (log: Bool, suppressed: Int) {
        state.withLock { s in
            if let last = s.last, now - last < interval {
                s.suppressed += 1
                return (false, 0)
            }
            let suppressed = s.suppressed
            s = (now, 0)
            return (true, suppressed)
        }
    }
}

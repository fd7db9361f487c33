// Every server connection of the process, so that a listener at its limit closes
// its own oldest quiet connection to take a new one at once, instead of running out
// of file descriptors (then every listener stops answering) or leaving new
// connections in the kernel's backlog (a full backlog drops their SYNs, and a client
// retries only after a second).
//
// The listeners' limits together stay under what the process may open: a listener
// without a configured `max_connections` gets a share of the descriptor budget, so a
// flood against one port (the metrics port, say) closes that port's connections and
// never takes the descriptors the OTLP listeners need. Configured limits that add up
// to more are warned about; then the process's budget is the last guard, and a new
// connection closes the oldest quiet one of its own listener, else of any. Without a
// connection it may close, the new one is refused (closed at once), which the kernel
// tells the client.
//
// A connection counts from its accept until its descriptor is closed (an evicted one
// too, while its close waits for its event loop), so the table's count is what the
// process holds: at the budget, accepting waits for closes instead of failing with
// EMFILE (AcceptGuard).
import Foundation
import NIOCore
import SluiceCore
import Synchronization

public final class ConnectionTable: Sendable {
    /// The process's table: every listener shares the descriptor budget.
    public static let shared = ConnectionTable(openFileLimit: ConnectionTable.raiseOpenFileLimit())

    /// A connection as eviction sees it: plain values, so the scan for the oldest
    /// quiet one of a listener copies no references.
    struct Slot {
        let admittedAt: NIODeadline
        /// Its channel's event loop: closing a connection of the loop that admits
        /// frees its descriptor at once; another loop's close waits for that loop.
        let loop: ObjectIdentifier
        var rank: ConnectionDeadlines.EvictionRank
        /// Its `ConnectionGuard` has looked at it (`attach`). Before, between accept
        /// and its first turn on its own event loop, nothing is known of it.
        var seen = false
    }

    /// A connection's listener and channel.
    struct Open {
        let listener: Int
        let listenerName: String
        let channel: any Channel
    }

    /// A listening socket: its name (the metrics' `listener` label) and its
    /// `max_connections` when configured (`nil`: a share of the budget).
    struct Listener {
        let name: String
        let configured: Int?
    }

    /// A connection is known by its channel, which the table keeps alive.
    typealias ConnectionID = ObjectIdentifier

    private struct State {
        var open: [ConnectionID: Open] = [:]
        /// By listener, then connection.
        var slots: [Int: [ConnectionID: Slot]] = [:]
        /// Open connections by listener name: a listener restarted by a reload shares its name.
        var perName: [String: Int] = [:]
        var listeners: [Int: Listener] = [:]
        var nextID = 0
        /// Connections closed to make room whose descriptors are not closed yet: a
        /// close runs on the connection's own event loop, maybe behind a flood's
        /// accepts. They count against the budget until then.
        var closing: Set<ConnectionID> = []
    }

    /// `RLIMIT_NOFILE` as the process runs with it (after raising the soft limit).
    let openFileLimit: Int
    /// Connections of all listeners together: the descriptors left once the
    /// process's own files (logs, segments, exporters' connections) are set aside.
    let budget: Int
    private let state = Mutex(State())

    /// `budget`: the connections of all listeners, when not what `openFileLimit` leaves.
    init(openFileLimit: Int, budget: Int? = nil) {
        self.openFileLimit = openFileLimit
        self.budget = budget ?? Self.budget(openFileLimit: openFileLimit)
    }

    /// Descriptors kept for everything but server connections: an eighth, at least 64.
    static func budget(openFileLimit: Int) -> Int {
        max(16, openFileLimit - max(64, openFileLimit / 8))
    }

    // MARK: Listeners

    /// The limit of each listener, when together they exceed the budget.
    typealias Overcommit = [(name: String, maxConnections: Int, configured: Bool)]

    /// Adds a listening socket; its connections are admitted with the returned id.
    /// `overcommitted` is set when this listener takes the limits past the budget
    /// (configured `max_connections` too large for `ulimit -n`), to be warned about.
    func register(name: String, maxConnections configured: Int?) -> (id: Int, overcommitted: Overcommit?) {
        state.withLock { s in
            let wasOver = Self.overcommit(in: s, budget: budget) != nil
            let id = s.nextID
            s.nextID += 1
            s.listeners[id] = Listener(name: name, configured: configured)
            return (id, wasOver ? nil : Self.overcommit(in: s, budget: budget))
        }
    }

    /// The listening socket closed: its share goes back to the others. Its open
    /// connections stay counted until they close.
    func unregister(_ listener: Int) {
        state.withLock { s in
            s.listeners[listener] = nil
            if s.slots[listener]?.isEmpty == true { s.slots[listener] = nil }
        }
    }

    /// The connections `listener` may hold now.
    func maxConnections(_ listener: Int) -> Int {
        state.withLock { s in Self.limit(of: listener, in: s, budget: budget) }
    }

    /// The limit of the listener named `name` (the newest, if a reload left two).
    func maxConnections(listenerNamed name: String) -> Int? {
        state.withLock { s in
            s.listeners.filter { $0.value.name == name }.keys.max().map { Self.limit(of: $0, in: s, budget: budget) }
        }
    }

    /// A listener's limit: its configured `max_connections`, or an equal share of
    /// what the configured ones leave of the budget — at most the default, at least
    /// `minimumShare`.
    private static func limit(of listener: Int, in s: State, budget: Int) -> Int {
        guard let registered = s.listeners[listener] else { return 0 }
        if let configured = registered.configured { return configured }
        let configuredTotal = s.listeners.values.reduce(0) { $0 + ($1.configured ?? 0) }
        let sharing = s.listeners.values.filter { $0.configured == nil }.count
        return min(ConnectionLimits.defaultMaxConnections, max(ConnectionLimits.minimumShare, (budget - configuredTotal) / sharing))
    }

    private static func overcommit(in s: State, budget: Int) -> Overcommit? {
        let limits = s.listeners.sorted { $0.key < $1.key }.map { id, listener in
            (name: listener.name, maxConnections: limit(of: id, in: s, budget: budget), configured: listener.configured != nil)
        }
        return limits.reduce(0) { $0 + $1.maxConnections } > budget ? limits : nil
    }

    // MARK: Connections

    /// What happened to a new connection.
    enum Admission: Equatable {
        /// Taken; `evicted` connections were closed to make room.
        case admitted(evicted: Int)
        /// At the limit with nothing to close: the connection is closed unanswered.
        case refused
    }

    /// Takes a new connection of `listener` if the listener's limit allows, closing
    /// its oldest quiet or slow connection to make room when it does not. Called as
    /// the connection is accepted, on `loop` (the listener's), so that every
    /// descriptor the process holds is counted from accept until `remove` (its close).
    func admit(_ channel: any Channel, listener: Int, on loop: (any EventLoop)? = nil, now: NIODeadline = .now()) -> Admission {
        let search = VictimSearch(now: now, loop: loop.map { ObjectIdentifier($0) })
        let (admission, victims) = state.withLock { s -> (Admission, [any Channel]) in
            var victims: [any Channel] = []
            if s.slots[listener]?.count ?? 0 >= Self.limit(of: listener, in: s, budget: budget) {
                guard let victim = search.oldest(in: s.slots[listener]) else { return (.refused, []) }
                victims.append(Self.evict(victim, from: &s))
            }
            // Only configured limits past the budget get here: this listener's own
            // quiet connections first, so that a flood on one port costs the others
            // as little as it can.
            if s.open.count >= budget {
                guard let victim = search.oldest(in: s.slots[listener]) ?? search.oldest(in: s.slots) else { return (.refused, victims) }
                victims.append(Self.evict(victim, from: &s))
            }
            let id = ConnectionID(channel)
            let name = s.listeners[listener]?.name ?? ""
            s.open[id] = Open(listener: listener, listenerName: name, channel: channel)
            s.slots[listener, default: [:]][id] = Slot(admittedAt: now, loop: ObjectIdentifier(channel.eventLoop), rank: .quiet(since: now))
            s.perName[name, default: 0] += 1
            return (.admitted(evicted: victims.count), victims)
        }
        for victim in victims { victim.close(promise: nil) }
        return admission
    }

    /// Whether descriptors being closed hold the process at its budget: accepting
    /// waits for their closes (each on its connection's event loop) rather than
    /// fail with EMFILE.
    var waitingForCloses: Bool {
        state.withLock { s in !s.closing.isEmpty && s.open.count + s.closing.count >= budget }
    }

    /// Closes the oldest quiet or slow connection of `listener`, or of any listener
    /// when it has none (the process ran out of descriptors accepting for it).
    /// Returns whether there was one.
    func evictOne(preferring listener: Int, on loop: (any EventLoop)? = nil, now: NIODeadline = .now()) -> Bool {
        let search = VictimSearch(now: now, loop: loop.map { ObjectIdentifier($0) })
        let victim = state.withLock { s -> (any Channel)? in
            guard let id = search.oldest(in: s.slots[listener]) ?? search.oldest(in: s.slots) else { return nil }
            return Self.evict(id, from: &s)
        }
        victim?.close(promise: nil)
        return victim != nil
    }

    /// The connection's guard has looked at it: from now on it ranks as `rank`.
    func attach(_ id: ConnectionID, rank: ConnectionDeadlines.EvictionRank) {
        state.withLock { s in
            guard let listener = s.open[id]?.listener else { return }
            s.slots[listener]?[id]?.rank = rank
            s.slots[listener]?[id]?.seen = true
        }
    }

    func update(_ id: ConnectionID, rank: ConnectionDeadlines.EvictionRank) {
        state.withLock { s in
            guard let listener = s.open[id]?.listener else { return }
            s.slots[listener]?[id]?.rank = rank
        }
    }

    /// The connection closed (its descriptor with it).
    func remove(_ id: ConnectionID) {
        state.withLock { s in
            if s.open[id] != nil { _ = Self.remove(id, from: &s) }
            s.closing.remove(id)
        }
    }

    /// Open connections of the listeners named `name`.
    func count(listenerNamed name: String) -> Int { state.withLock { $0.perName[name, default: 0] } }
    func count(listener: Int) -> Int { state.withLock { $0.slots[listener]?.count ?? 0 } }
    var count: Int { state.withLock { $0.open.count } }
    /// Connections closed to make room whose close has not completed.
    var closingCount: Int { state.withLock { $0.closing.count } }

    /// Out of its listener, counted as closing until `remove`; the caller closes it.
    private static func evict(_ id: ConnectionID, from s: inout State) -> any Channel {
        s.closing.insert(id)
        return remove(id, from: &s).channel
    }

    private static func remove(_ id: ConnectionID, from s: inout State) -> Open {
        let open = s.open.removeValue(forKey: id)!
        s.slots[open.listener]?[id] = nil
        if s.slots[open.listener]?.isEmpty == true, s.listeners[open.listener] == nil { s.slots[open.listener] = nil }
        s.perName[open.listenerName, default: 1] -= 1
        return open
    }

    /// A connection this young is not closed while an older one can be: between
    /// its accept and the first read of its request (which may wait behind a
    /// flood's accepts on a busy event loop) it looks as quiet as an idle one.
    static let settlingTime = TimeAmount.seconds(1)

    /// Which connection makes room: quiet ones first, then slow ones, each oldest
    /// first; those younger than `settlingTime` only when no older one is left, and
    /// those not yet seen by their guard last of all. Among equals, one of `loop`
    /// first, as its close frees the descriptor at once.
    struct VictimSearch {
        let now: NIODeadline
        let loop: ObjectIdentifier?

        private typealias Candidate = (id: ConnectionID, tier: Int, otherLoop: Bool, since: NIODeadline)

        func oldest(in slots: [ConnectionID: Slot]?) -> ConnectionID? {
            var best: Candidate?
            consider(slots ?? [:], &best)
            return best?.id
        }

        func oldest(in slotsByListener: [Int: [ConnectionID: Slot]]) -> ConnectionID? {
            var best: Candidate?
            for slots in slotsByListener.values { consider(slots, &best) }
            return best?.id
        }

        private func consider(_ slots: [ConnectionID: Slot], _ best: inout Candidate?) {
            let settled = now - ConnectionTable.settlingTime
            for (id, slot) in slots {
                let tier: Int
                let since: NIODeadline
                switch slot.rank {
                case .quiet(let s): (tier, since) = (slot.admittedAt <= settled ? 0 : 2, s)
                case .slowHeaders(let s): (tier, since) = (slot.admittedAt <= settled ? 1 : 3, s)
                case .busy: continue
                }
                let candidate = (id: id, tier: slot.seen ? tier : 4, otherLoop: loop != nil && slot.loop != loop, since: since)
                if let current = best,
                   (current.tier, current.otherLoop ? 1 : 0, current.since) <= (candidate.tier, candidate.otherLoop ? 1 : 0, candidate.since) {
                    continue
                }
                best = candidate
            }
        }
    }

    // MARK: The descriptor limit

    /// Raises the soft limit on open files to the hard one (as Go's runtime does at
    /// start) and returns it.
    static func raiseOpenFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 4096 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(min(limit.rlim_cur, 1 << 20))  // RLIM_INFINITY is the largest value
    }
}

/// `max_connections` of a listener when the configuration does not set one.
public enum ConnectionLimits {
    /// A sidecar's clients are few, and a connection costs a descriptor and buffers.
    public static let defaultMaxConnections = 1024
    /// The least a listener without `max_connections` gets when the budget is
    /// shared out (health probes and scrapes still get through).
    public static let minimumShare = 16
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

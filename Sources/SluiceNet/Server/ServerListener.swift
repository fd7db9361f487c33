// One listening socket's guards: its connection limit, what happens when accept()
// fails for want of descriptors, and the metrics and warnings of both.
import Foundation
import Logging
import NIOCore
import SluiceCore

/// What a listener needs to guard its connections; one per `HTTPServer`.
final class ServerListener: Sendable {
    /// `otlp:http`, `telemetry`, `health_check`: the `listener` label.
    let name: String
    let table: ConnectionTable
    /// This listener in the table.
    let id: Int
    let logger: Logger

    let refusedAtLimit: Counter
    let evicted: Counter
    let acceptErrors: Counter
    private let closedByTimeout: [ConnectionDeadlines.Expiry: Counter]

    let limitWarning = ThrottledWarning()
    let acceptWarning = ThrottledWarning()
    private let timeoutWarnings: [ConnectionDeadlines.Expiry: ThrottledWarning]

    /// `maxConnections`: the configured `max_connections`, or `nil` for a share of
    /// the process's connection budget.
    init(name: String, maxConnections: Int?, table: ConnectionTable, logger: Logger, metrics: MetricsRegistry = .shared) {
        self.name = name
        self.table = table
        self.logger = logger
        let (id, overcommitted) = table.register(name: name, maxConnections: maxConnections)
        self.id = id
        let label = ("listener", name)
        metrics.gauge("sluice_server_connections", "Server connections open, per listener.", labels: [label]) {
            Double(table.count(listenerNamed: name))
        }
        metrics.gauge("sluice_server_max_connections",
                      "Connections a listener holds before it closes its oldest quiet one for a new one: max_connections, or a share of what ulimit -n allows.",
                      labels: [label]) {
            Double(table.maxConnections(listenerNamed: name) ?? 0)
        }
        refusedAtLimit = metrics.counter("sluice_server_connections_refused_total",
                                         "Connections closed as soon as they were accepted: the listener was at max_connections, or the process at its descriptor budget, with no quiet connection to close instead.",
                                         labels: [label])
        let closedHelp = "Server connections closed by Sluice: a deadline passed (header_timeout, read_timeout, idle_timeout) or the oldest quiet connection made room for a new one (evicted)."
        evicted = metrics.counter("sluice_server_connections_closed_total", closedHelp, labels: [label, ("reason", "evicted")])
        var counters: [ConnectionDeadlines.Expiry: Counter] = [:]
        var warnings: [ConnectionDeadlines.Expiry: ThrottledWarning] = [:]
        for expiry in [ConnectionDeadlines.Expiry.headerTimeout, .readTimeout, .idleTimeout] {
            counters[expiry] = metrics.counter("sluice_server_connections_closed_total", closedHelp, labels: [label, ("reason", expiry.rawValue)])
            warnings[expiry] = ThrottledWarning()
        }
        closedByTimeout = counters
        timeoutWarnings = warnings
        acceptErrors = metrics.counter("sluice_server_accept_errors_total",
                                       "accept() failures for want of file descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM); accepting pauses briefly after each.",
                                       labels: [label])
        if let overcommitted { warnOvercommitted(overcommitted) }
    }

    /// The connections this listener may hold now.
    var maxConnections: Int { table.maxConnections(id) }

    /// The listening socket closed.
    func close() { table.unregister(id) }

    /// Configured limits that the descriptors cannot back: at the budget a new
    /// connection closes an older one even below its listener's limit (another
    /// listener's, when its own has none to close).
    private func warnOvercommitted(_ limits: ConnectionTable.Overcommit) {
        let total = limits.reduce(0) { $0 + $1.maxConnections }
        let each = limits.map { "\($0.name) \($0.maxConnections)\($0.configured ? "" : " (shared out)")" }.joined(separator: ", ")
        logger.warning("""
            max_connections of the listeners add up to \(total), more than the \(table.budget) connections the process's descriptors allow \
            (RLIMIT_NOFILE \(table.openFileLimit), less \(table.openFileLimit - table.budget) kept for files and exporters): \(each); \
            with \(table.budget) open, a new connection closes the oldest quiet one of its listener, or of another; \
            raise ulimit -n (its hard limit) or lower max_connections
            """, metadata: ["listener": "\(name)", "max_connections_total": "\(total)", "process_connection_budget": "\(table.budget)",
                            "rlimit_nofile": "\(table.openFileLimit)"])
    }

    /// A connection closed because a deadline passed: counted, and said once per
    /// interval (a slow client is hostile or broken; either way an operator wants
    /// to know, but not once per connection).
    func closed(by expiry: ConnectionDeadlines.Expiry, peer: SocketAddress?) {
        closedByTimeout[expiry]?.increment()
        guard expiry.requestStarted, let warning = timeoutWarnings[expiry] else { return }
        let (log, suppressed) = warning.shouldLog()
        guard log else { return }
        var metadata: Logger.Metadata = ["listener": "\(name)", "peer": "\(peer.map { "\($0)" } ?? "unknown")", "deadline": "\(expiry.rawValue)"]
        if suppressed > 0 { metadata["more_since_last_warning"] = "\(suppressed)" }
        let what = expiry == .headerTimeout ? "its request headers within read_header_timeout" : "its whole request within read_timeout"
        logger.warning("closed a connection that did not send \(what) (a request it had begun was answered 408); more are counted in sluice_server_connections_closed_total",
                       metadata: metadata)
    }

    /// A connection was taken by closing older quiet ones, or refused.
    func admitted(_ admission: ConnectionTable.Admission) {
        let evictedNow: Int
        switch admission {
        case .admitted(let count): evictedNow = count
        case .refused: evictedNow = 0
        }
        if evictedNow > 0 { evicted.add(evictedNow) }
        if admission == .refused { refusedAtLimit.increment() }
        guard evictedNow > 0 || admission == .refused else { return }
        let (log, suppressed) = limitWarning.shouldLog()
        guard log else { return }
        var metadata: Logger.Metadata = ["listener": "\(name)", "max_connections": "\(maxConnections)",
                                         "process_connection_budget": "\(table.budget)", "open": "\(table.count(listener: id))"]
        if suppressed > 0 { metadata["more_since_last_warning"] = "\(suppressed)" }
        logger.warning(admission == .refused
                       ? "connection limit reached and every connection is busy: refusing new connections; see sluice_server_connections_refused_total"
                       : "connection limit reached: closing the oldest idle or slow connections to take new ones; see sluice_server_connections_closed_total{reason=\"evicted\"}",
                       metadata: metadata)
    }

    /// accept() failed for want of descriptors or memory.
    func acceptFailed(_ error: IOError, pause: TimeAmount) {
        acceptErrors.increment()
        let (log, suppressed) = acceptWarning.shouldLog()
        guard log else { return }
        var metadata: Logger.Metadata = ["listener": "\(name)", "error": "\(error)", "pause_ms": "\(pause.nanoseconds / 1_000_000)",
                                         "server_connections": "\(table.count)", "closing": "\(table.closingCount)",
                                         "process_connection_budget": "\(table.budget)", "rlimit_nofile": "\(table.openFileLimit)"]
        if suppressed > 0 { metadata["more_since_last_warning"] = "\(suppressed)" }
        logger.warning("cannot accept connections: out of file descriptors or memory; pausing accept and closing the oldest idle connection (raise ulimit -n, or lower max_connections)",
                       metadata: metadata)
    }
}

/// On the listening socket, where connections are accepted.
///
/// Each accepted connection is admitted to the connection table right here, on the
/// listener's event loop, before it is handed to an event loop of its own (a task
/// that waits behind whatever that loop is doing): so every descriptor the process
/// holds is counted from accept on, and at the limit the oldest quiet connection is
/// closed at once. Accepting never waits for room: a connection left in the
/// kernel's backlog may find it full, lose its SYN and be retried a second later.
/// It waits only while the process is at its descriptor budget and connections
/// closed to make room have not released theirs yet (milliseconds: their closes
/// run on their own event loops).
///
/// accept() failing with EMFILE and its kin leaves the socket readable, so
/// accepting again at once spins. This pauses accepting briefly, closes the oldest
/// quiet connection (of this listener if it has one) to free a descriptor, and says
/// so once per interval (nginx does the first; Go's server backs off the same way).
final class AcceptGuard: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    static let pause = TimeAmount.milliseconds(50)
    /// While closes are under way: how often to look again, and how long at most
    /// before accepting anyway (then EMFILE, if it comes, pauses as above).
    static let closesPoll = TimeAmount.milliseconds(2)
    static let closesWaitLimit = TimeAmount.milliseconds(200)

    private let listener: ServerListener
    private var resumeAt: NIODeadline?
    private var waitingSince: NIODeadline?
    private var scheduledRead: Scheduled<Void>?

    init(listener: ServerListener) { self.listener = listener }

    static func isResourceShortage(_ error: IOError) -> Bool {
        [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let accepted = unwrapInboundIn(data)
        let admission = listener.table.admit(accepted, listener: listener.id, on: context.eventLoop)
        listener.admitted(admission)
        guard admission != .refused else {
            accepted.close(promise: nil)
            return
        }
        // Counted until its descriptor is closed, whichever way it closes.
        let table = listener.table
        let id = ConnectionTable.ConnectionID(accepted)
        accepted.closeFuture.whenComplete { _ in table.remove(id) }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let ioError = error as? IOError, Self.isResourceShortage(ioError) else {
            context.fireErrorCaught(error)
            return
        }
        listener.acceptFailed(ioError, pause: Self.pause)
        _ = listener.table.evictOne(preferring: listener.id, on: context.eventLoop)
        resumeAt = .now() + Self.pause
    }

    func read(context: ChannelHandlerContext) {
        guard scheduledRead == nil else { return }
        let now = NIODeadline.now()
        if let resumeAt, resumeAt <= now { self.resumeAt = nil }
        if resumeAt == nil {
            // Descriptors of connections closed to make room are still being closed:
            // wait for them (briefly, and only so long) rather than fail with EMFILE.
            if listener.table.waitingForCloses, (waitingSince.map { now - $0 < Self.closesWaitLimit } ?? true) {
                waitingSince = waitingSince ?? now
                resumeAt = now + Self.closesPoll
            } else {
                waitingSince = nil
            }
        }
        guard let resumeAt else {
            context.read()
            return
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        scheduledRead = context.eventLoop.scheduleTask(deadline: resumeAt) {
            let (handler, context) = loopBound.value
            handler.scheduledRead = nil
            handler.read(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        scheduledRead?.cancel()
        scheduledRead = nil
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension AcceptGuard: Sendable {}


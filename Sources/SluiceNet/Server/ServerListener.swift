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
    let maxConnections: Int
    let table: ConnectionTable
    let logger: Logger

    let refusedAtLimit: Counter
    let evicted: Counter
    let acceptErrors: Counter
    private let closedByTimeout: [ConnectionDeadlines.Expiry: Counter]

    let limitWarning = ThrottledWarning()
    let acceptWarning = ThrottledWarning()
    private let timeoutWarnings: [ConnectionDeadlines.Expiry: ThrottledWarning]

    init(name: String, maxConnections: Int, table: ConnectionTable, logger: Logger, metrics: MetricsRegistry = .shared) {
        self.name = name
        self.maxConnections = maxConnections
        self.table = table
        self.logger = logger
        let label = ("listener", name)
        metrics.gauge("sluice_server_connections", "Server connections open, per listener.", labels: [label]) {
            Double(table.count(listener: name))
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
        case .admitted(_, let count): evictedNow = count
        case .refused: evictedNow = 0
        }
        if evictedNow > 0 { evicted.add(evictedNow) }
        if admission == .refused { refusedAtLimit.increment() }
        guard evictedNow > 0 || admission == .refused else { return }
        let (log, suppressed) = limitWarning.shouldLog()
        guard log else { return }
        var metadata: Logger.Metadata = ["listener": "\(name)", "max_connections": "\(maxConnections)",
                                         "process_connection_budget": "\(table.budget)", "open": "\(table.count(listener: name))"]
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
        var metadata: Logger.Metadata = ["listener": "\(name)", "error": "\(error)", "pause_ms": "\(pause.nanoseconds / 1_000_000)"]
        if suppressed > 0 { metadata["more_since_last_warning"] = "\(suppressed)" }
        logger.warning("cannot accept connections: out of file descriptors or memory; pausing accept and closing the oldest idle connection (raise ulimit -n, or lower max_connections)",
                       metadata: metadata)
    }
}

/// On the listening socket: accept() failing with EMFILE and its kin leaves the
/// socket readable, so accepting again at once spins. This pauses accepting
/// briefly, closes the oldest quiet connection to free a descriptor, and says so
/// once per interval (nginx does the first; Go's server backs off the same way).
final class AcceptGuard: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    static let pause = TimeAmount.milliseconds(50)

    private let listener: ServerListener
    private var resumeAt: NIODeadline?
    private var scheduledRead: Scheduled<Void>?

    init(listener: ServerListener) { self.listener = listener }

    static func isResourceShortage(_ error: IOError) -> Bool {
        [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is ConnectionRefusedError { return }  // counted and logged at admission
        guard let ioError = error as? IOError, Self.isResourceShortage(ioError) else {
            context.fireErrorCaught(error)
            return
        }
        listener.acceptFailed(ioError, pause: Self.pause)
        _ = listener.table.evictOne()
        resumeAt = .now() + Self.pause
    }

    func read(context: ChannelHandlerContext) {
        guard scheduledRead == nil else { return }
        if resumeAt == nil || resumeAt! <= .now(),
           let delay = listener.table.acceptDelay(listener: listener.name, maxConnections: listener.maxConnections) {
            resumeAt = .now() + delay
        }
        guard let resumeAt, resumeAt > .now() else {
            self.resumeAt = nil
            context.read()
            return
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        scheduledRead = context.eventLoop.scheduleTask(deadline: resumeAt) {
            let (handler, context) = loopBound.value
            handler.scheduledRead = nil
            handler.resumeAt = nil
            context.read()
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

/// The child channel initializer's failure for a connection refused at the limit.
struct ConnectionRefusedError: Error {}

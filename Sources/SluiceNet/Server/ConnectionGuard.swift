// First in every server connection's pipeline (below TLS): keeps the connection's
// deadlines (ConnectionDeadlines) on one timer, tells the connection table how the
// connection ranks when room must be made, and removes it from the table when it
// closes. The protocol handlers above report their requests' progress to it.
import NIOCore

/// Sent up the pipeline when a deadline passed: the handler that speaks the
/// protocol answers 408 if a request had started, then closes.
struct ConnectionDeadlineEvent {
    let expiry: ConnectionDeadlines.Expiry
}

final class ConnectionGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// After a deadline event, the protocol handler has this long to send its 408;
    /// then the connection is closed regardless.
    static let closeGrace = TimeAmount.seconds(2)

    private var deadlines: ConnectionDeadlines
    private let listener: ServerListener
    private let tableID: ConnectionTable.ConnectionID
    private var rank: ConnectionDeadlines.EvictionRank
    /// HTTP/2 sets the phase from its streams instead of from bytes.
    private var tracksBytes = true
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var context: ChannelHandlerContext?
    private var expired = false

    init(limits: HTTPServerLimits, listener: ServerListener, tableID: ConnectionTable.ConnectionID, now: NIODeadline = .now()) {
        deadlines = ConnectionDeadlines(headerTimeout: limits.headerTimeout, readTimeout: limits.readTimeout,
                                        idleTimeout: limits.idleTimeout, openedAt: now)
        self.listener = listener
        self.tableID = tableID
        rank = deadlines.evictionRank
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        armTimer()
        // Tell the table what this connection is now that it has been looked at: a
        // request the client sent before it was accepted is in the kernel's buffer,
        // so the connection is not quiet, though nothing was read yet.
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.channel.tcpBytesReceived().whenSuccess { received in
            loopBound.value.attach(bytesWaiting: (received ?? 0) > 0)
        }
    }

    private func attach(bytesWaiting: Bool) {
        if bytesWaiting, tracksBytes { deadlines.bytesReceived(at: .now()) }
        rank = deadlines.evictionRank
        listener.table.attach(tableID, rank: rank)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
        listener.table.remove(tableID)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if tracksBytes { change { $0.bytesReceived(at: .now()) } }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        listener.table.remove(tableID)
        context.fireChannelInactive()
    }

    // MARK: What the protocol handlers report

    func headReceived() { change { $0.headReceived(at: .now()) } }
    func requestComplete() { change { $0.requestComplete() } }
    func answered() { change { $0.answered(at: .now()) } }

    /// HTTP/2: the phase follows the session's streams from now on.
    func setPhase(_ phase: ConnectionDeadlines.Phase) {
        tracksBytes = false
        change { $0.set(phase) }
    }

    private func change(_ body: (inout ConnectionDeadlines) -> Void) {
        body(&deadlines)
        let newRank = deadlines.evictionRank
        if newRank != rank {
            rank = newRank
            listener.table.update(tableID, rank: newRank)
        }
        armTimer()
    }

    // MARK: The timer

    /// One timer at the current deadline. A later deadline does not move it: when
    /// it fires early it is set again, so a busy connection costs no timer churn.
    private func armTimer() {
        guard let context, !expired, let deadline = deadlines.deadline else { return }
        if let timerDeadline, timerDeadline <= deadline, timer != nil { return }
        timer?.cancel()
        timerDeadline = deadline
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) { loopBound.value.timerFired() }
    }

    private func timerFired() {
        timer = nil
        timerDeadline = nil
        guard let context, !expired else { return }
        guard let expiry = deadlines.expired(at: .now()) else {
            armTimer()
            return
        }
        expired = true
        listener.closed(by: expiry, peer: context.channel.remoteAddress)
        let channel = context.channel
        context.eventLoop.scheduleTask(in: Self.closeGrace) { channel.close(promise: nil) }
        context.fireUserInboundEventTriggered(ConnectionDeadlineEvent(expiry: expiry))
    }
}

@available(*, unavailable)
extension ConnectionGuard: Sendable {}

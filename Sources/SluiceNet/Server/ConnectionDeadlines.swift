// The deadlines of one server connection, as a state machine without sockets.
//
// A read timeout that restarts with every byte lets a client that sends one header
// byte a second hold a connection forever (slowloris). So each phase of a request
// has a deadline of its own, counted from the phase's start, never from the last
// byte:
//
// - headers: from the connection's start, or from the first byte of a later
//   request on a kept-alive connection, the headers must be complete within
//   `headerTimeout` (Go's http.Server.ReadHeaderTimeout, nginx's
//   client_header_timeout); else 408 and close.
// - the whole request, body included, within `readTimeout` of its start (Go's
//   ReadTimeout: "the maximum duration for reading the entire request, including
//   the body"); else 408 and close.
// - while a request is being answered there is no deadline of ours.
// - between requests, `idleTimeout` (Go's IdleTimeout), then close.
import NIOCore

struct ConnectionDeadlines: Sendable {
    enum Phase: Equatable, Sendable {
        /// Waiting for a request's headers, since `since`. `sawBytes` is false on a
        /// connection that has sent nothing yet: it is as good as idle when a
        /// connection must be closed to make room.
        case head(since: NIODeadline, sawBytes: Bool)
        /// Headers in; the body is arriving. The request started at `requestStart`.
        case body(requestStart: NIODeadline)
        /// A complete request is with the responder.
        case answering
        /// Between requests since `since`.
        case idle(since: NIODeadline)
    }

    /// Which deadline passed, for the answer, the log and the metric.
    enum Expiry: String, Equatable, Sendable {
        case headerTimeout = "header_timeout"
        case readTimeout = "read_timeout"
        case idleTimeout = "idle_timeout"

        /// Whether a request had started: such a client is told 408 before the close.
        var requestStarted: Bool { self != .idleTimeout }
    }

    /// How a connection ranks when one must be closed to make room for another:
    /// quiet ones (idle, or not a byte sent yet) go first, then those still sending
    /// their headers, oldest first; a request being read or answered is never cut.
    enum EvictionRank: Equatable, Sendable {
        case quiet(since: NIODeadline)
        case slowHeaders(since: NIODeadline)
        case busy
    }

    let headerTimeout: TimeAmount
    let readTimeout: TimeAmount
    let idleTimeout: TimeAmount
    private(set) var phase: Phase
    /// Bytes of a next request arrived while one was being answered (pipelining).
    private var bytesWhileAnswering = false

    init(headerTimeout: TimeAmount, readTimeout: TimeAmount, idleTimeout: TimeAmount, openedAt: NIODeadline) {
        self.headerTimeout = headerTimeout
        self.readTimeout = readTimeout
        self.idleTimeout = idleTimeout
        phase = .head(since: openedAt, sawBytes: false)
    }

    /// When the current phase runs out, or `nil` while a request is answered.
    var deadline: NIODeadline? {
        switch phase {
        case .head(let since, _): since + min(headerTimeout, readTimeout)
        case .body(let start): start + readTimeout
        case .answering: nil
        case .idle(let since): since + idleTimeout
        }
    }

    /// The deadline that has passed at `now`, if any.
    func expired(at now: NIODeadline) -> Expiry? {
        guard let deadline, now >= deadline else { return nil }
        switch phase {
        case .head: return headerTimeout <= readTimeout ? .headerTimeout : .readTimeout
        case .body: return .readTimeout
        case .answering: return nil
        case .idle: return .idleTimeout
        }
    }

    var evictionRank: EvictionRank {
        switch phase {
        case .idle(let since), .head(let since, false): .quiet(since: since)
        case .head(let since, true): .slowHeaders(since: since)
        case .body, .answering: .busy
        }
    }

    // MARK: Events (HTTP/1.1; HTTP/2 sets the phase from its session)

    /// Bytes came from the client: an idle connection starts a request.
    mutating func bytesReceived(at now: NIODeadline) {
        switch phase {
        case .idle: phase = .head(since: now, sawBytes: true)
        case .head(let since, false): phase = .head(since: since, sawBytes: true)
        case .answering: bytesWhileAnswering = true
        case .head, .body: break
        }
    }

    /// A request's headers are complete; its body follows.
    mutating func headReceived(at now: NIODeadline) {
        switch phase {
        case .head(let since, _): phase = .body(requestStart: since)
        case .idle: phase = .body(requestStart: now)
        case .body, .answering: break
        }
    }

    /// The whole request is in and goes to the responder.
    mutating func requestComplete() {
        phase = .answering
        bytesWhileAnswering = false
    }

    /// The answer went out on a kept-alive connection.
    mutating func answered(at now: NIODeadline) {
        phase = bytesWhileAnswering ? .head(since: now, sawBytes: true) : .idle(since: now)
        bytesWhileAnswering = false
    }

    /// For HTTP/2, whose session knows its streams: the phase as they make it.
    mutating func set(_ phase: Phase) {
        if case .idle = phase, case .idle = self.phase { return }  // idle keeps its start
        self.phase = phase
    }
}

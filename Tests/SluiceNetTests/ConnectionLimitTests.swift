import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import SluiceNet

/// The connection deadlines, the connection table and the HTTP/1.1 head checks,
/// without sockets.
@Suite final class ConnectionLimitTests {
    /// Every channel a test opened, closed at its end (an embedded channel that is
    /// never closed keeps its pipeline alive, which LeakSanitizer reports).
    private var opened: [EmbeddedChannel] = []

    deinit {
        for channel in opened {
            // A close queues the pipeline's teardown on the embedded loop; run it.
            channel.embeddedEventLoop.run()
            _ = try? channel.finish()
            channel.embeddedEventLoop.run()
        }
    }

    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    static func deadlines() -> ConnectionDeadlines {
        ConnectionDeadlines(headerTimeout: .seconds(10), readTimeout: .seconds(30), idleTimeout: .seconds(120), openedAt: t0)
    }

    @Test func headersMustCompleteWithinTheHeaderTimeoutWhateverTheTrickle() {
        var d = Self.deadlines()
        // One byte a second does not move the deadline.
        for second in 1...9 {
            d.bytesReceived(at: Self.t0 + .seconds(Int64(second)))
            #expect(d.expired(at: Self.t0 + .seconds(Int64(second))) == nil)
        }
        #expect(d.expired(at: Self.t0 + .seconds(10)) == .headerTimeout)
        #expect(ConnectionDeadlines.Expiry.headerTimeout.requestStarted)
    }

    @Test func theBodyHasATotalDeadlineFromTheRequestsStart() {
        var d = Self.deadlines()
        d.bytesReceived(at: Self.t0 + .seconds(1))
        d.headReceived(at: Self.t0 + .seconds(2))
        #expect(d.deadline == Self.t0 + .seconds(30))
        #expect(d.expired(at: Self.t0 + .seconds(29)) == nil)
        #expect(d.expired(at: Self.t0 + .seconds(30)) == .readTimeout)
    }

    @Test func answeringHasNoDeadlineAndIdleHasItsOwn() {
        var d = Self.deadlines()
        d.headReceived(at: Self.t0)
        d.requestComplete()
        #expect(d.deadline == nil && d.evictionRank == .busy)
        d.answered(at: Self.t0 + .seconds(5))
        #expect(d.evictionRank == .quiet(since: Self.t0 + .seconds(5)))
        #expect(d.expired(at: Self.t0 + .seconds(100)) == nil)  // past read_timeout, not idle_timeout
        #expect(d.expired(at: Self.t0 + .seconds(125)) == .idleTimeout)
        #expect(!ConnectionDeadlines.Expiry.idleTimeout.requestStarted)
        // The next request's first byte starts its header deadline.
        d.bytesReceived(at: Self.t0 + .seconds(50))
        #expect(d.evictionRank == .slowHeaders(since: Self.t0 + .seconds(50)))
        #expect(d.expired(at: Self.t0 + .seconds(60)) == .headerTimeout)
    }

    @Test func bytesThatArriveWhileAnsweringStartTheNextRequestsClock() {
        var d = Self.deadlines()
        d.headReceived(at: Self.t0)
        d.requestComplete()
        d.bytesReceived(at: Self.t0 + .seconds(1))
        d.answered(at: Self.t0 + .seconds(2))
        #expect(d.expired(at: Self.t0 + .seconds(12)) == .headerTimeout)
    }

    @Test func aNewConnectionThatSentNothingIsQuiet() {
        var d = Self.deadlines()
        #expect(d.evictionRank == .quiet(since: Self.t0))
        d.bytesReceived(at: Self.t0 + .seconds(1))
        #expect(d.evictionRank == .slowHeaders(since: Self.t0))
    }

    @Test func http2IdleKeepsItsStart() {
        var d = Self.deadlines()
        d.set(.idle(since: Self.t0))
        d.set(.idle(since: Self.t0 + .seconds(60)))  // a PING does not make it less idle
        #expect(d.expired(at: Self.t0 + .seconds(120)) == .idleTimeout)
    }

    // MARK: The table

    /// An open connection: a connected embedded channel is active until closed.
    func channel() -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        _ = channel.connect(to: try! SocketAddress(ipAddress: "127.0.0.1", port: 4318))
        opened.append(channel)
        return channel
    }

    @Test func atTheLimitTheOldestQuietConnectionMakesRoom() {
        let table = ConnectionTable(budget: 100)
        let old = channel(), slow = channel(), busy = channel()
        guard case .admitted(let oldID, 0) = table.admit(old, listener: "a", maxConnections: 3, now: Self.t0),
              case .admitted(let slowID, 0) = table.admit(slow, listener: "a", maxConnections: 3, now: Self.t0 + .seconds(1)),
              case .admitted(let busyID, 0) = table.admit(busy, listener: "a", maxConnections: 3, now: Self.t0 + .seconds(2)) else {
            Issue.record("the first three must be admitted")
            return
        }
        table.update(slowID, rank: .slowHeaders(since: Self.t0 - .seconds(5)))  // older, but sending
        table.update(busyID, rank: .busy)
        _ = oldID
        // Quiet before slow, whatever their age.
        let young = channel()
        #expect(table.admit(young, listener: "a", maxConnections: 3, now: Self.t0 + .seconds(3)) != .refused)
        #expect(!old.isActive && slow.isActive && busy.isActive)
        // A connection just accepted (no read yet) is not taken while a settled one can be.
        #expect(table.admit(channel(), listener: "a", maxConnections: 3, now: Self.t0 + .milliseconds(3500)) != .refused)
        #expect(young.isActive && !slow.isActive)
        #expect(table.count(listener: "a") == 3)
        _ = slowID
        // Another listener's connections are not this listener's limit.
        #expect(table.admit(channel(), listener: "b", maxConnections: 1, now: Self.t0) != .refused)
    }

    @Test func withEveryConnectionBusyTheNewOneIsRefused() {
        let table = ConnectionTable(budget: 100)
        let first = channel()
        guard case .admitted(let id, _) = table.admit(first, listener: "a", maxConnections: 1, now: Self.t0) else {
            Issue.record("admitted")
            return
        }
        table.update(id, rank: .busy)
        #expect(table.admit(channel(), listener: "a", maxConnections: 1, now: Self.t0) == .refused)
        #expect(first.isActive)
        table.remove(id)
        #expect(table.count == 0)
    }

    @Test func theProcessBudgetMakesRoomAcrossListeners() {
        let table = ConnectionTable(budget: 2)
        let a = channel(), b = channel()
        _ = table.admit(a, listener: "metrics", maxConnections: 10, now: Self.t0)
        _ = table.admit(b, listener: "metrics", maxConnections: 10, now: Self.t0 + .seconds(1))
        // The OTLP listener is under its own limit; the process is not.
        #expect(table.admit(channel(), listener: "otlp", maxConnections: 10, now: Self.t0 + .seconds(2)) != .refused)
        #expect(!a.isActive && b.isActive && table.count == 2)
        #expect(table.evictOne(now: Self.t0 + .seconds(10)) && !b.isActive)
    }

    @Test func aFloodsFirstSecondWaitsInTheBacklog() {
        let table = ConnectionTable(budget: 2)
        _ = table.admit(channel(), listener: "otlp", maxConnections: 10, now: Self.t0)
        #expect(table.acceptDelay(listener: "otlp", maxConnections: 10, now: Self.t0) == nil)  // room
        _ = table.admit(channel(), listener: "otlp", maxConnections: 10, now: Self.t0 + .milliseconds(100))
        // Full, and everything was accepted less than a second ago: wait until the oldest settles.
        #expect(table.acceptDelay(listener: "otlp", maxConnections: 10, now: Self.t0 + .milliseconds(400)) == .milliseconds(600))
        #expect(table.acceptDelay(listener: "otlp", maxConnections: 10, now: Self.t0 + .seconds(1)) == nil)
    }

    @Test func theBudgetLeavesDescriptorsForTheRest() {
        #expect(ConnectionTable.descriptorBudget() >= 16)
    }

    @Test func aWarningIsSaidOncePerInterval() {
        let warning = ThrottledWarning(interval: .seconds(60))
        #expect(warning.shouldLog(now: Self.t0) == (true, 0))
        #expect(warning.shouldLog(now: Self.t0 + .seconds(1)).log == false)
        #expect(warning.shouldLog(now: Self.t0 + .seconds(2)).log == false)
        #expect(warning.shouldLog(now: Self.t0 + .seconds(61)) == (true, 2))
    }

    // MARK: HTTP/1.1 heads (RFC 9112)

    static func head(_ headers: [(String, String)], version: HTTPVersion = .http1_1) -> HTTPRequestHead {
        HTTPRequestHead(version: version, method: .POST, uri: "/v1/logs", headers: HTTPHeaders(headers))
    }

    @Test func hostMustBeThereOnceInHTTP11() {
        #expect(HTTP1RequestCheck.check(Self.head([("Host", "a")]), maxBodyBytes: 10) == .accept)
        guard case .refuse(.badRequest, _) = HTTP1RequestCheck.check(Self.head([]), maxBodyBytes: 10) else {
            Issue.record("a missing Host is 400")
            return
        }
        guard case .refuse(.badRequest, _) = HTTP1RequestCheck.check(Self.head([("Host", "a"), ("Host", "b")]), maxBodyBytes: 10) else {
            Issue.record("two Hosts are 400")
            return
        }
        #expect(HTTP1RequestCheck.check(Self.head([], version: .http1_0), maxBodyBytes: 10) == .accept)
    }

    @Test func transferEncodingOtherThanChunkedAlone() {
        #expect(HTTP1RequestCheck.check(Self.head([("Host", "a"), ("Transfer-Encoding", "Chunked")]), maxBodyBytes: 10) == .accept)
        guard case .refuse(.notImplemented, _) = HTTP1RequestCheck.check(Self.head([("Host", "a"), ("Transfer-Encoding", "gzip, chunked")]), maxBodyBytes: 10) else {
            Issue.record("gzip, chunked is 501")
            return
        }
        guard case .refuse(.badRequest, _) = HTTP1RequestCheck.check(Self.head([("Host", "a"), ("Transfer-Encoding", "chunked, gzip")]), maxBodyBytes: 10) else {
            Issue.record("chunked not last is 400")
            return
        }
        guard case .refuse(.payloadTooLarge, _) = HTTP1RequestCheck.check(Self.head([("Host", "a"), ("Content-Length", "11")]), maxBodyBytes: 10) else {
            Issue.record("over the limit is 413")
            return
        }
    }
}

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

    /// A table of `budget` connections with listeners of the given `max_connections`.
    static func table(budget: Int, _ listeners: [(String, Int?)]) -> (ConnectionTable, [Int]) {
        let table = ConnectionTable(openFileLimit: budget, budget: budget)
        return (table, listeners.map { table.register(name: $0.0, maxConnections: $0.1).id })
    }

    /// Admits `channel` and attaches it as its guard would, as `rank`.
    func admit(_ channel: EmbeddedChannel, to table: ConnectionTable, listener: Int, at now: NIODeadline,
               rank: ConnectionDeadlines.EvictionRank? = nil, on loop: (any EventLoop)? = nil) -> ConnectionTable.Admission {
        let admission = table.admit(channel, listener: listener, on: loop, now: now)
        table.attach(ObjectIdentifier(channel), rank: rank ?? .quiet(since: now))
        return admission
    }

    @Test func atTheLimitTheOldestQuietConnectionMakesRoom() {
        let (table, ids) = Self.table(budget: 100, [("a", 3), ("b", 1)])
        let (a, b) = (ids[0], ids[1])
        let old = channel(), slow = channel(), busy = channel()
        #expect(admit(old, to: table, listener: a, at: Self.t0) == .admitted(evicted: 0))
        // Older, but sending.
        #expect(admit(slow, to: table, listener: a, at: Self.t0 + .seconds(1), rank: .slowHeaders(since: Self.t0 - .seconds(5))) == .admitted(evicted: 0))
        #expect(admit(busy, to: table, listener: a, at: Self.t0 + .seconds(2), rank: .busy) == .admitted(evicted: 0))
        // Quiet before slow, whatever their age.
        let young = channel()
        #expect(admit(young, to: table, listener: a, at: Self.t0 + .seconds(3)) == .admitted(evicted: 1))
        #expect(!old.isActive && slow.isActive && busy.isActive)
        // A connection just accepted (no read yet) is not taken while a settled one can be.
        #expect(admit(channel(), to: table, listener: a, at: Self.t0 + .milliseconds(3500)) == .admitted(evicted: 1))
        #expect(young.isActive && !slow.isActive)
        #expect(table.count(listener: a) == 3 && table.count(listenerNamed: "a") == 3)
        // Another listener's connections are not this listener's limit.
        #expect(admit(channel(), to: table, listener: b, at: Self.t0) == .admitted(evicted: 0))
    }

    @Test func withEveryConnectionBusyTheNewOneIsRefused() {
        let (table, ids) = Self.table(budget: 100, [("a", 1)])
        let first = channel()
        #expect(admit(first, to: table, listener: ids[0], at: Self.t0, rank: .busy) == .admitted(evicted: 0))
        #expect(table.admit(channel(), listener: ids[0], now: Self.t0) == .refused)
        #expect(first.isActive)
        table.remove(ObjectIdentifier(first))
        #expect(table.count == 0)
    }

    @Test func aFloodsFirstSecondMakesRoomAtOnce() {
        // Every connection was accepted less than a second ago: the oldest of them
        // goes, now — a new connection never waits in the kernel's backlog.
        let (table, ids) = Self.table(budget: 100, [("otlp", 2)])
        let first = channel(), second = channel()
        _ = admit(first, to: table, listener: ids[0], at: Self.t0)
        _ = admit(second, to: table, listener: ids[0], at: Self.t0 + .milliseconds(100))
        #expect(table.admit(channel(), listener: ids[0], now: Self.t0 + .milliseconds(200)) == .admitted(evicted: 1))
        #expect(!first.isActive && second.isActive)
    }

    @Test func aConnectionItsGuardHasNotSeenGoesLast() {
        // Accepted, but its own event loop has not reached it: its request may be
        // waiting in the kernel's buffer. Those its guard found quiet go first.
        let (table, ids) = Self.table(budget: 100, [("otlp", 2)])
        let unseen = channel(), quiet = channel()
        _ = table.admit(unseen, listener: ids[0], now: Self.t0)
        _ = admit(quiet, to: table, listener: ids[0], at: Self.t0 + .milliseconds(100))
        let third = channel()
        #expect(table.admit(third, listener: ids[0], now: Self.t0 + .milliseconds(200)) == .admitted(evicted: 1))
        #expect(unseen.isActive && !quiet.isActive)
        // With only unseen ones left, the oldest of them.
        #expect(table.admit(channel(), listener: ids[0], now: Self.t0 + .milliseconds(300)) == .admitted(evicted: 1))
        #expect(!unseen.isActive && third.isActive)
    }

    @Test func amongEqualsOneOfTheAdmittingLoopGoes() {
        // Its close frees the descriptor at once; another loop's waits for that loop.
        let (table, ids) = Self.table(budget: 100, [("otlp", 2)])
        let older = channel(), sameLoop = channel()
        _ = admit(older, to: table, listener: ids[0], at: Self.t0)
        _ = admit(sameLoop, to: table, listener: ids[0], at: Self.t0 + .milliseconds(100))
        #expect(table.admit(channel(), listener: ids[0], on: sameLoop.eventLoop, now: Self.t0 + .milliseconds(200)) == .admitted(evicted: 1))
        #expect(older.isActive && !sameLoop.isActive)
        // Not before an older tier: a settled quiet connection goes whatever its loop.
        let (settledTable, settledIDs) = Self.table(budget: 100, [("otlp", 2)])
        let settled = channel(), young = channel()
        _ = admit(settled, to: settledTable, listener: settledIDs[0], at: Self.t0)
        _ = admit(young, to: settledTable, listener: settledIDs[0], at: Self.t0 + .seconds(2))
        #expect(settledTable.admit(channel(), listener: settledIDs[0], on: young.eventLoop, now: Self.t0 + .milliseconds(2100)) == .admitted(evicted: 1))
        #expect(!settled.isActive && young.isActive)
    }

    @Test func listenersWithoutMaxConnectionsShareWhatTheDescriptorsAllow() {
        // ulimit -n 1024: 896 connections, 128 descriptors kept for the rest.
        let table = ConnectionTable(openFileLimit: 1024)
        #expect(table.budget == 896)
        let ids = ["otlp:http", "otlp:grpc", "telemetry", "health_check"].map { table.register(name: $0, maxConnections: nil) }
        #expect(ids.allSatisfy { $0.overcommitted == nil })
        #expect(ids.map { table.maxConnections($0.id) } == [224, 224, 224, 224])
        // A flood on one port fills only that port's share: the others can still accept.
        let telemetry = ids[2].id
        for _ in 0..<300 { _ = table.admit(channel(), listener: telemetry, now: Self.t0) }
        #expect(table.count(listener: telemetry) == 224 && table.count == 224)
        // A configured limit is taken first; the rest is shared.
        let configured = table.register(name: "otlp/2:http", maxConnections: 296)
        #expect(configured.overcommitted == nil && table.maxConnections(configured.id) == 296)
        #expect(table.maxConnections(ids[0].id) == 150)
        table.unregister(configured.id)
        #expect(table.maxConnections(ids[0].id) == 224)
        // With descriptors to spare, the default.
        let large = ConnectionTable(openFileLimit: 1 << 20)
        #expect(large.maxConnections(large.register(name: "otlp:http", maxConnections: nil).id) == ConnectionLimits.defaultMaxConnections)
    }

    @Test func configuredLimitsPastTheBudgetAreReportedOnce() throws {
        let table = ConnectionTable(openFileLimit: 1024)
        let health = table.register(name: "health_check", maxConnections: nil)
        #expect(health.overcommitted == nil)
        let http = table.register(name: "otlp:http", maxConnections: 2000)
        let limits = try #require(http.overcommitted)
        #expect(limits.map(\.name) == ["health_check", "otlp:http"])
        #expect(limits.map(\.maxConnections) == [ConnectionLimits.minimumShare, 2000])
        #expect(limits.map(\.configured) == [false, true])
        // Still over: not reported again.
        #expect(table.register(name: "otlp:grpc", maxConnections: nil).overcommitted == nil)
    }

    @Test func theProcessBudgetMakesRoomAcrossListeners() {
        let (table, ids) = Self.table(budget: 2, [("metrics", 10), ("otlp", 10)])
        let a = channel(), b = channel()
        _ = admit(a, to: table, listener: ids[0], at: Self.t0)
        _ = admit(b, to: table, listener: ids[0], at: Self.t0 + .seconds(1))
        // The OTLP listener is under its own limit; the process is not.
        let otlp = channel()
        #expect(admit(otlp, to: table, listener: ids[1], at: Self.t0 + .seconds(2)) == .admitted(evicted: 1))
        #expect(!a.isActive && b.isActive && table.count == 2)
        // The evicted connection's descriptor counts until its close completes, and
        // accepting waits for it.
        #expect(table.closingCount == 1 && table.waitingForCloses)
        // The next OTLP connection makes room among the OTLP port's own first.
        let otlp2 = channel()
        #expect(admit(otlp2, to: table, listener: ids[1], at: Self.t0 + .seconds(3)) == .admitted(evicted: 1))
        #expect(!otlp.isActive && b.isActive && table.closingCount == 2)
        table.remove(ObjectIdentifier(a))
        table.remove(ObjectIdentifier(otlp))
        #expect(table.closingCount == 0 && table.count == 2 && !table.waitingForCloses)
        // Out of descriptors while accepting for the OTLP port: its own quiet connection goes first,
        #expect(table.evictOne(preferring: ids[1], now: Self.t0 + .seconds(10)) && !otlp2.isActive && b.isActive)
        // then, with none left, another listener's.
        #expect(table.evictOne(preferring: ids[1], now: Self.t0 + .seconds(10)) && !b.isActive)
        #expect(!table.evictOne(preferring: ids[1], now: Self.t0 + .seconds(10)))
    }

    @Test func theBudgetLeavesDescriptorsForTheRest() {
        #expect(ConnectionTable.budget(openFileLimit: 1024) == 896)
        #expect(ConnectionTable.budget(openFileLimit: 256) == 192)
        #expect(ConnectionTable.budget(openFileLimit: 1 << 20) == (1 << 20) - (1 << 17))
        #expect(ConnectionTable.raiseOpenFileLimit() >= 16)
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

// Receiver TLS: an HTTPServer with a TLSServerContext, talked to by Sluice's own
// HTTP client and by `openssl s_client` (versions, ALPN, client certificates), with
// certificates made by the openssl CLI (Support/TLSTestBed.swift). What the server
// logs about a failed handshake is part of the behaviour under test.
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceCore
import Synchronization
import Testing
@testable import SluiceNet

/// Keeps what a logger was told, for the test to read.
final class LogCapture: Sendable {
    struct Line: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let lines = Mutex<[Line]>([])

    var logger: Logger { Logger(label: "test") { _ in Handler(capture: self) } }

    var all: [Line] { lines.withLock { $0 } }

    func lines(at level: Logger.Level) -> [Line] { all.filter { $0.level == level } }

    /// Waits (up to 20 s: a failed handshake is logged on the server's event loop,
    /// possibly after the client gave up) until `count` lines at `level` are there.
    func wait(for count: Int = 1, at level: Logger.Level) async throws -> [Line] {
        for _ in 0..<1000 {
            let found = lines(at: level)
            if found.count >= count { return found }
            try await Task.sleep(for: .milliseconds(20))
        }
        return lines(at: level)
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }.mapValues { "\($0)" }
            capture.lines.withLock { $0.append(Line(level: event.level, message: event.message.description, metadata: merged)) }
        }
    }
}

@Suite struct TLSServerTests {
    /// Answers with the HTTP version and the client's port (which tells connections apart).
    struct Responder: HTTPRequestResponder {
        func respond(to request: HTTPServerRequest, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPServerResponse> {
            let version = "\(request.version.major).\(request.version.minor)"
            return eventLoop.makeSucceededFuture(.text(.ok, "hello over TLS, HTTP/\(version), port \(request.remoteAddress?.port ?? 0)"))
        }
    }

    /// A TLS server for one test, with its log and metrics.
    final class Server: Sendable {
        let http: HTTPServer
        let context: TLSServerContext
        let log = LogCapture()
        let metrics = MetricsRegistry()
        let port: Int

        init(_ settings: TLSServerSettings, group: any EventLoopGroup = SluiceEventLoops.group) async throws {
            context = try TLSServerContext(settings: settings, logger: log.logger, metrics: metrics)
            // Generous: under AddressSanitizer on a loaded 2-core host a handshake and
            // its request have taken longer than the default 10 s header timeout.
            http = try await HTTPServer.start(at: HostPort(host: "127.0.0.1", port: 0), name: "test", limits: HTTPServerLimits(headerTimeout: .seconds(120)),
                                              responder: Responder(), group: group, tls: context)
            port = try #require(http.localAddress?.port)
        }

        func failures(_ reason: TLSHandshakeFailure.Reason) -> Int64 {
            metrics.counter("sluice_receiver_tls_handshake_failures_total", "", labels: [("reason", reason.rawValue)]).count
        }

        /// The first failed handshake was logged saying `text` and counted under `reason`.
        func expectFailure(_ reason: TLSHandshakeFailure.Reason, saying text: String, at level: Logger.Level = .warning,
                           sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let line = try #require(try await log.wait(at: level).first, sourceLocation: sourceLocation)
            #expect(line.message.contains(text), "\(line.message)", sourceLocation: sourceLocation)
            #expect(line.metadata["reason"] == reason.rawValue, sourceLocation: sourceLocation)
            #expect(failures(reason) == 1, sourceLocation: sourceLocation)
        }

        func close() async { await http.close() }
    }

    /// `openssl s_client` against `port` with stdin closed: it handshakes, prints
    /// what it negotiated, and leaves.
    static func sClient(port: Int, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await run("openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", "localhost"] + arguments)
    }

    /// Runs a tool with stdin closed; stdout and stderr together. Awaits the process
    /// without blocking a thread.
    static func run(_ tool: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("\(tool)-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let handle = try FileHandle(forWritingTo: output)
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = handle
        process.standardError = handle
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        return (status, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }

    static func get(port: Int, tls: TLSClientConfiguration?) async throws -> (status: HTTPResponseStatus, body: String) {
        var settings = HTTPClient.Settings()
        settings.tls = tls
        // Deadlines only a stalled host reaches: nothing here measures speed.
        settings.requestTimeout = .seconds(120)
        settings.connectTimeout = .seconds(120)
        let scheme = tls == nil ? "http" : "https"
        let client = HTTPClient(endpoint: try #require(HTTPEndpoint("\(scheme)://localhost:\(port)")), settings: settings)
        defer { Task { await client.close() } }
        let response = try await client.send(HTTPClientRequest(target: "/v1/logs", body: ByteBuffer(string: "hi")))
        return (response.status, response.bodyText)
    }

    // MARK: Serving

    @Test func answersOurClientOverTLS() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let server = try await Server(TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey))
        defer { Task { await server.close() } }
        let response = try await Self.get(port: server.port, tls: TLSClientConfiguration(caFile: bed.caFile))
        #expect(response.status == .ok)
        #expect(response.body.hasPrefix("hello over TLS, HTTP/"), "\(response.body)")
        #expect(server.log.lines(at: .warning).isEmpty)
    }

    @Test func alpnChoosesH2OnlyWhenOffered() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let server = try await Server(TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey))
        defer { Task { await server.close() } }
        let h2 = try await Self.sClient(port: server.port, ["-CAfile", bed.caFile, "-alpn", "h2,http/1.1"])
        #expect(h2.output.contains("ALPN protocol: h2"), "\(h2.output)")
        let http1 = try await Self.sClient(port: server.port, ["-CAfile", bed.caFile, "-alpn", "http/1.1"])
        #expect(http1.output.contains("ALPN protocol: http/1.1"), "\(http1.output)")
        // The server's preference wins over the client's order.
        let reversed = try await Self.sClient(port: server.port, ["-CAfile", bed.caFile, "-alpn", "http/1.1,h2"])
        #expect(reversed.output.contains("ALPN protocol: h2"), "\(reversed.output)")
        let none = try await Self.sClient(port: server.port, ["-CAfile", bed.caFile, "-alpn", "spdy/3"])
        #expect(none.output.contains("No ALPN negotiated"), "\(none.output)")
        #expect(server.log.lines(at: .warning).isEmpty, "\(server.log.all)")

        // A receiver that does not serve HTTP/2 leaves it out of the list.
        var settings = TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey)
        settings.alpnProtocols = ["http/1.1"]
        let http1Only = try await Server(settings)
        defer { Task { await http1Only.close() } }
        let offered = try await Self.sClient(port: http1Only.port, ["-CAfile", bed.caFile, "-alpn", "h2,http/1.1"])
        #expect(offered.output.contains("ALPN protocol: http/1.1"), "\(offered.output)")
    }

    @Test func curlSpeaksHTTP2AfterALPNAndHTTP11Without() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let server = try await Server(TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey))
        defer { Task { await server.close() } }
        let url = "https://localhost:\(server.port)/v1/logs"
        let h2 = try await Self.run("curl", ["-sS", "--http2", "--cacert", bed.caFile, "-d", "x", url])
        #expect(h2.status == 0 && h2.output.hasPrefix("hello over TLS, HTTP/2.0"), "\(h2.output)")
        let http1 = try await Self.run("curl", ["-sS", "--http1.1", "--cacert", bed.caFile, "-d", "x", url])
        #expect(http1.status == 0 && http1.output.hasPrefix("hello over TLS, HTTP/1.1"), "\(http1.output)")
    }

    @Test func answersCloseNotifyWithCloseNotify() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let server = try await Server(TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey))
        defer { Task { await server.close() } }
        // Python's unwrap() sends close_notify and fails unless one comes back.
        let script = """
        import socket, ssl, sys
        context = ssl.create_default_context(cafile=sys.argv[1])
        tls = context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2]))), server_hostname="localhost")
        tls.unwrap()
        print("clean shutdown")
        """
        let result = try await Self.run("python3", ["-c", script, bed.caFile, "\(server.port)"])
        #expect(result.status == 0 && result.output.contains("clean shutdown"), "\(result.output)")
    }

    @Test func selectsALPNFromTheWireList() {
        let wire: [UInt8] = [2] + Array("h2".utf8) + [8] + Array("http/1.1".utf8)
        wire.withUnsafeBufferPointer { list in
            #expect(ServerSSLContext.selectALPN(preferences: [Array("h2".utf8)], offered: list)! == (1, 2))
            #expect(ServerSSLContext.selectALPN(preferences: [Array("http/1.1".utf8), Array("h2".utf8)], offered: list)! == (4, 8))
            #expect(ServerSSLContext.selectALPN(preferences: [Array("h3".utf8)], offered: list) == nil)
        }
        // A length running past the end is refused, not read beyond.
        let broken: [UInt8] = [9, 0x68, 0x32]
        broken.withUnsafeBufferPointer { list in
            #expect(ServerSSLContext.selectALPN(preferences: [Array("h2".utf8)], offered: list) == nil)
        }
    }

    // MARK: Versions

    @Test func refusesTLS11And10AndAccepts12And13() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let server = try await Server(TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey))
        defer { Task { await server.close() } }
        let tls12 = try await Self.sClient(port: server.port, ["-CAfile", bed.caFile, "-tls1_2"])
        #expect(tls12.status == 0 && tls12.output.contains("Protocol  : TLSv1.2"), "\(tls12.output)")
        let tls13 = try await Self.sClient(port: server.port, ["-CAfile", bed.caFile, "-tls1_3"])
        #expect(tls13.status == 0 && tls13.output.contains("TLSv1.3"), "\(tls13.output)")

        // SECLEVEL=0: OpenSSL 3's client would otherwise not even offer 1.0 or 1.1.
        for (flag, name) in [("-tls1_1", "TLS 1.1"), ("-tls1", "TLS 1.0")] {
            let old = try await Self.sClient(port: server.port, ["-CAfile", bed.caFile, flag, "-cipher", "DEFAULT@SECLEVEL=0"])
            #expect(old.status != 0, "\(flag) was accepted: \(old.output)")
            let logged = try await server.log.wait(for: name == "TLS 1.1" ? 1 : 2, at: .warning)
            let line = try #require(logged.last)
            #expect(line.message.contains("client offered only \(name); tls.min_version is 1.2"), "\(line.message)")
            #expect(line.message.contains("TLS handshake from 127.0.0.1:"), "\(line.message)")
            #expect(line.metadata["reason"] == "protocol_version")
        }
        #expect(server.failures(.protocolVersion) == 2)
    }

    @Test func plainHTTPOnTheTLSPortGetsAnAnswerAndALogLine() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let server = try await Server(TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey))
        defer { Task { await server.close() } }
        let response = try await Self.get(port: server.port, tls: nil)
        #expect(response.status == .badRequest)
        #expect(response.body.contains("https://"), "\(response.body)")
        try await server.expectFailure(.notTLS, saying: "client sent plain HTTP to this TLS port")
    }

    // MARK: Client certificates

    @Test func mutualTLSAcceptsOnlyGoodClientCertificates() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        var settings = TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey)
        settings.clientCAFile = bed.caFile
        let server = try await Server(settings)
        defer { Task { await server.close() } }

        // The right certificate: served.
        let good = TLSClientConfiguration(caFile: bed.caFile, certFile: bed.clientCert, keyFile: bed.clientKey)
        #expect(try await Self.get(port: server.port, tls: good).status == .ok)

        let cases: [(arguments: [String], says: String, reason: TLSHandshakeFailure.Reason)] = [
            ([], "client presented no certificate; this receiver requires one (tls.client_ca_file is set)", .noClientCertificate),
            (["-cert", bed.strangerClientCert, "-key", bed.strangerClientKey],
             "client certificate is not signed by a CA in tls.client_ca_file", .untrustedClientCertificate),
            (["-cert", bed.expiredClientCert, "-key", bed.expiredClientKey], "client certificate has expired", .expiredClientCertificate),
        ]
        for (index, refused) in cases.enumerated() {
            _ = try await Self.sClient(port: server.port, ["-CAfile", bed.caFile] + refused.arguments)
            let logged = try await server.log.wait(for: index + 1, at: .warning)
            #expect(logged.count == index + 1, "one line per refused connection: \(logged.map(\.message))")
            let line = try #require(logged.last)
            #expect(line.message.contains(refused.says), "\(line.message)")
            #expect(line.metadata["peer"]?.hasPrefix("127.0.0.1:") == true)
            #expect(server.failures(refused.reason) == 1)
        }
        // Our own client, without a certificate, is refused too (and says why).
        await #expect(throws: (any Error).self) { try await Self.get(port: server.port, tls: TLSClientConfiguration(caFile: bed.caFile)) }
        #expect(server.failures(.noClientCertificate) == 2)
    }

    @Test func aClientThatRefusesOurCertificateIsLogged() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let server = try await Server(TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey))
        defer { Task { await server.close() } }
        // Trusting only another CA, s_client sends an unknown_ca alert and stops.
        let result = try await Self.sClient(port: server.port, ["-CAfile", bed.strangerCert, "-verify_return_error"])
        #expect(result.status != 0, "\(result.output)")
        try await server.expectFailure(.rejectedByClient, saying: "client refused this receiver's certificate (tls.cert_file)")
    }

    @Test func aPortProbeIsNotCountedButAnAbandonedHandshakeIs() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        // One event loop: the server sees the connections' events in the order they happened.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await Server(TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey), group: group)
        func connect(sending bytes: [UInt8]) async throws {
            let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).get()
            if !bytes.isEmpty { try await channel.writeAndFlush(ByteBuffer(bytes: bytes)) }
            try await channel.close()
        }
        // A TCP health check: connects, says nothing, leaves.
        try await connect(sending: [])
        // A client that starts a TLS record (a handshake, 80 bytes long) and leaves.
        try await connect(sending: [0x16, 0x03, 0x01, 0x00, 0x50])
        _ = try await server.log.wait(at: .debug)
        // The probe closed before the second connection opened, so the loop saw its
        // end in the same round or an earlier one: a task after this round finds
        // both handled.
        try await group.next().submit {}.get()
        // Counted, logged at debug only (benchmarks and health checks do this).
        try await server.expectFailure(.incomplete, saying: "client closed the connection during the TLS handshake", at: .debug)
        #expect(server.log.all.filter { $0.message.contains("TLS handshake from") }.count == 1, "\(server.log.all.map(\.message))")
        await server.close()
        try await group.shutdownGracefully()
    }

    @Test func clientCAFileReloadFollowsTheFile() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let clientCA = bed.path("client-ca.pem")
        try FileManager.default.copyItem(atPath: bed.caFile, toPath: clientCA)
        var settings = TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey)
        settings.clientCAFile = clientCA
        settings.reloadClientCAFile = true
        let server = try await Server(settings)
        defer { Task { await server.close() } }
        let stranger = TLSClientConfiguration(caFile: bed.caFile, certFile: bed.strangerClientCert, keyFile: bed.strangerClientKey)
        await #expect(throws: (any Error).self) { try await Self.get(port: server.port, tls: stranger) }

        // Now trust the other CA only (otherca signed the stranger's certificate).
        let otherCA = URL(fileURLWithPath: bed.strangerClientCert).deletingLastPathComponent().appendingPathComponent("otherca.pem")
        try Data(contentsOf: otherCA).write(to: URL(fileURLWithPath: clientCA))
        var accepted = false
        for _ in 0..<50 where !accepted {
            accepted = (try? await Self.get(port: server.port, tls: stranger))?.status == .ok
            if !accepted { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(accepted, "\(server.log.all.map(\.message))")
    }

    // MARK: Rotation

    @Test func rotatedCertificateIsServedToNewConnections() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let cert = bed.path("tls.crt")
        let key = bed.path("tls.key")
        try FileManager.default.copyItem(atPath: bed.serverCert, toPath: cert)
        try FileManager.default.copyItem(atPath: bed.serverKey, toPath: key)
        var settings = TLSServerSettings(certFile: cert, keyFile: key)
        settings.reloadInterval = .milliseconds(100)
        let server = try await Server(settings)
        defer { Task { await server.close() } }

        func servedSubject() async throws -> String {
            let result = try await Self.sClient(port: server.port, ["-CAfile", bed.caFile])
            return result.output.split(separator: "\n").first { $0.hasPrefix("subject=") }.map(String.init) ?? result.output
        }
        #expect(try await servedSubject().contains("CN = localhost"))
        #expect(!(try await servedSubject().contains("rotated")))

        // A keep-alive connection opened before the rotation.
        var clientSettings = HTTPClient.Settings()
        clientSettings.tls = TLSClientConfiguration(caFile: bed.caFile)
        clientSettings.requestTimeout = .seconds(120)
        clientSettings.connectTimeout = .seconds(120)
        let client = HTTPClient(endpoint: try #require(HTTPEndpoint("https://localhost:\(server.port)")), settings: clientSettings)
        defer { Task { await client.close() } }
        let before = try await client.send(HTTPClientRequest(target: "/", body: ByteBuffer(string: "x"))).bodyText

        // In place, as cert-manager and kubelet do (same paths, new content).
        try Data(contentsOf: URL(fileURLWithPath: bed.rotatedCert)).write(to: URL(fileURLWithPath: cert))
        try Data(contentsOf: URL(fileURLWithPath: bed.rotatedKey)).write(to: URL(fileURLWithPath: key))
        var subject = ""
        for _ in 0..<100 {
            subject = try await servedSubject()
            if subject.contains("localhost-rotated") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(subject.contains("CN = localhost-rotated"), "\(subject)")
        #expect(server.log.lines(at: .info).contains { $0.message.contains("TLS files changed; new connections use them") })

        // The connection from before still works, and it is the same connection.
        let after = try await client.send(HTTPClientRequest(target: "/", body: ByteBuffer(string: "x"))).bodyText
        #expect(before == after, "\(before) / \(after)")

        // A broken file keeps the rotated certificate in use, logged once for this change.
        try "not a certificate".write(toFile: cert, atomically: false, encoding: .utf8)
        let errors = try await waitForError(server)
        #expect(errors.count == 1)
        #expect(errors.first?.message.contains("tls.cert_file '\(cert)'") == true, "\(errors.map(\.message))")
        for _ in 0..<3 {
            #expect(try await servedSubject().contains("localhost-rotated"))
            try await Task.sleep(for: .milliseconds(120))
        }
        #expect(server.log.lines(at: .error).count == 1, "\(server.log.lines(at: .error).map(\.message))")
    }

    /// Connections trigger the check: keep connecting until the error is logged.
    private func waitForError(_ server: Server) async throws -> [LogCapture.Line] {
        for _ in 0..<100 {
            _ = try await Self.sClient(port: server.port, [])
            let errors = server.log.lines(at: .error)
            if !errors.isEmpty { return errors }
            try await Task.sleep(for: .milliseconds(100))
        }
        return server.log.lines(at: .error)
    }

    @Test func badFilesAreNamedWhenTheContextIsBuilt() throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let logger = LogCapture().logger
        do {
            _ = try TLSServerContext(settings: TLSServerSettings(certFile: bed.serverCert, keyFile: bed.clientKey), logger: logger, metrics: MetricsRegistry())
            Issue.record("a key that does not match its certificate was accepted")
        } catch {
            #expect(error.description.contains("tls.key_file '\(bed.clientKey)' does not belong to the certificate"), "\(error)")
        }
        var settings = TLSServerSettings(certFile: bed.serverCert, keyFile: bed.serverKey)
        settings.clientCAFile = bed.serverKey
        do {
            _ = try TLSServerContext(settings: settings, logger: logger, metrics: MetricsRegistry())
            Issue.record("a key file was accepted as client CA")
        } catch {
            #expect(error.description.contains("tls.client_ca_file '\(bed.serverKey)'"), "\(error)")
        }
    }
}

/// A receiver's `tls:` section read from YAML.
@Suite struct TLSServerSettingsTests {
    let bed: TLSTestBed

    init() throws { bed = try TLSTestBed() }

    /// Reads `keys` (after a valid cert_file and key_file unless `certificate` is
    /// false) as the OTLP/HTTP receiver's tls section; returns the settings and the
    /// problems reported under it.
    func read(_ keys: String, certificate: Bool = true) throws -> (settings: TLSServerSettings, problems: [String]) {
        let lines = (certificate ? ["cert_file: \(bed.serverCert)", "key_file: \(bed.serverKey)"] : []) + keys.split(separator: "\n").map(String.init)
        let yaml = ["receivers:", "  otlp:", "    protocols:", "      http:", "        tls:"] + lines.map { "          " + $0 }
            + ["exporters:", "  debug:", "service:", "  pipelines:", "    logs:", "      receivers: [otlp]", "      exporters: [debug]"]
        let loaded = CollectorConfig.load(text: yaml.joined(separator: "\n"), file: "collector.yaml")
        let http = try #require(loaded.receivers.first?.config.map("protocols")?.map("http"))
        return (TLSServerSettings(try #require(http.map("tls"))),
                loaded.diagnostics.all.map(\.description).filter { $0.contains("tls") })
    }

    @Test func readsEveryCollectorKey() throws {
        let (settings, problems) = try read("""
        client_ca_file: \(bed.caFile)
        client_ca_file_reload: true
        min_version: "1.3"
        max_version: "1.3"
        reload_interval: 5m
        """)
        #expect(problems.isEmpty, "\(problems)")
        #expect(settings.certFile == bed.serverCert && settings.keyFile == bed.serverKey && settings.clientCAFile == bed.caFile)
        #expect(settings.reloadClientCAFile && settings.minVersion == .v1_3 && settings.maxVersion == .v1_3)
        #expect(settings.reloadInterval == .seconds(300))
        #expect(settings.alpnProtocols == ["h2", "http/1.1"] && settings.warnings.isEmpty)
        _ = try TLSServerContext(settings: settings, logger: LogCapture().logger, metrics: MetricsRegistry())
    }

    @Test func missingKeyFileIsNamed() throws {
        let problems = try read("cert_file: \(bed.serverCert)", certificate: false).problems
        #expect(problems.count == 1)
        #expect(problems.first?.contains("tls.key_file") == true && problems.first?.contains("missing") == true, "\(problems)")
    }

    /// The Collector accepts 1.0 and 1.1; Sluice offers 1.2 and up: a minimum below
    /// is raised with a warning that names the key, a maximum below is refused.
    @Test func oldVersionsAreRaisedOrRefusedByKey() throws {
        let (settings, problems) = try read(#"min_version: "1.1""#)
        #expect(problems.isEmpty, "\(problems)")
        #expect(settings.minVersion == .v1_2)
        let yaml = "receivers:\n  otlp:\n    protocols:\n      http:\n        tls:\n          min_version: \"1.0\"\n          max_version: \"1.1\"\n"
        let loaded = CollectorConfig.load(text: yaml, file: "collector.yaml")
        _ = TLSServerSettings(try #require(loaded.receivers.first?.config.map("protocols")?.map("http")?.map("tls")))
        #expect(loaded.diagnostics.warnings.contains { $0.path.hasSuffix("tls.min_version") && $0.message.contains("read as 1.2") })
        #expect(loaded.diagnostics.all.contains { $0.path.hasSuffix("tls.max_version") && $0.message.contains("TLS 1.1 is not offered") })
    }

    @Test func caFileIsAcceptedButDoesNotVerifyClients() throws {
        let (settings, problems) = try read("ca_file: \(bed.caFile)")
        #expect(problems.isEmpty, "\(problems)")
        #expect(settings.clientCAFile == nil)
        #expect(settings.warnings.count == 1 && settings.warnings[0].contains("set tls.client_ca_file"), "\(settings.warnings)")
    }

    @Test func clientKeysAndUnknownKeysAreReported() throws {
        let problems = try read("""
        insecure_skip_verify: true
        client_ca_fil: \(bed.caFile)
        missing_file: /nope
        """).problems
        #expect(problems.contains { $0.contains("tls.insecure_skip_verify") && $0.contains("client setting") }, "\(problems)")
        #expect(problems.contains { $0.contains("tls.client_ca_fil") && $0.contains("did you mean client_ca_file") }, "\(problems)")
        #expect(problems.contains { $0.contains("tls.missing_file") && $0.contains("unknown key") }, "\(problems)")
    }
}

import Foundation

struct TestSetupError: Error, CustomStringConvertible {
    var description: String
}

/// A subprocess a test started; `stop()` ends it and waits for it.
final class Subprocess: @unchecked Sendable {
    // @unchecked: used from the one test that owns it.
    let process = Process()
    let name: String

    init(name: String, _ arguments: [String], stderr: URL) throws {
        self.name = name
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: stderr.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: stderr)
        try process.run()
    }

    func stop() {
        // SIGKILL: a SIGTERM can be ignored (the test runner may ignore it, and a
        // child inherits that), and nothing here needs a graceful end.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// A small PKI made once per test run by the `openssl` CLI in a temporary
/// directory, removed when the process exits.
enum TestPKI {
    static let directory: Result<URL, TestSetupError> = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-pki-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try make(in: directory)
        } catch {
            try? FileManager.default.removeItem(at: directory)
            return .failure(TestSetupError(description: "\(error)"))
        }
        atexit {
            if case .success(let directory) = TestPKI.directory { try? FileManager.default.removeItem(at: directory) }
        }
        return .success(directory)
    }()

    private static let opensslConfig = """
    [req]
    distinguished_name = dn
    prompt = no
    [dn]
    CN = unused
    [ca_ext]
    basicConstraints = critical,CA:TRUE
    keyUsage = critical,keyCertSign,cRLSign
    subjectKeyIdentifier = hash
    [server_ext]
    basicConstraints = CA:FALSE
    keyUsage = critical,digitalSignature
    extendedKeyUsage = serverAuth
    subjectAltName = DNS:localhost,IP:127.0.0.1
    [otherhost_ext]
    basicConstraints = CA:FALSE
    keyUsage = critical,digitalSignature
    extendedKeyUsage = serverAuth
    subjectAltName = DNS:elsewhere.example
    [client_ext]
    basicConstraints = CA:FALSE
    keyUsage = critical,digitalSignature
    extendedKeyUsage = clientAuth
    """

    private static func make(in directory: URL) throws {
        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
        func makeCA(_ name: String, subject: String) throws {
            try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                         "-keyout", path("\(name).key"), "-out", path("\(name).pem"), "-days", "30", "-subj", subject,
                         "-config", path("openssl.cnf"), "-extensions", "ca_ext"])
        }
        func makeLeaf(_ name: String, subject: String, ca: String, extensions: String, days: String, serial: String) throws {
            try openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                         "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", subject, "-config", path("openssl.cnf")])
            try openssl(["x509", "-req", "-in", path("\(name).csr"), "-CA", path("\(ca).pem"), "-CAkey", path("\(ca).key"),
                         "-set_serial", serial, "-days", days, "-out", path("\(name).pem"),
                         "-extfile", path("openssl.cnf"), "-extensions", extensions])
        }
        try opensslConfig.write(toFile: path("openssl.cnf"), atomically: true, encoding: .utf8)
        try makeCA("ca", subject: "/CN=Sluice Test CA")
        try makeCA("otherca", subject: "/CN=Some Other CA")
        try makeLeaf("server", subject: "/CN=localhost", ca: "ca", extensions: "server_ext", days: "30", serial: "2")
        try makeLeaf("client", subject: "/CN=sluice-client", ca: "ca", extensions: "client_ext", days: "30", serial: "3")
        // -days -1: notAfter is a day before now, so the certificate has expired.
        try makeLeaf("expired", subject: "/CN=localhost", ca: "ca", extensions: "server_ext", days: "-1", serial: "4")
        try makeLeaf("otherhost", subject: "/CN=elsewhere.example", ca: "ca", extensions: "otherhost_ext", days: "30", serial: "5")
        try makeLeaf("stranger", subject: "/CN=localhost", ca: "otherca", extensions: "server_ext", days: "30", serial: "6")
        // For receivers: client certificates that must be refused, and the server
        // certificate a rotation puts in place of `server`.
        try makeLeaf("expiredclient", subject: "/CN=sluice-client-expired", ca: "ca", extensions: "client_ext", days: "-1", serial: "7")
        try makeLeaf("strangerclient", subject: "/CN=sluice-client-stranger", ca: "otherca", extensions: "client_ext", days: "30", serial: "8")
        try makeLeaf("rotated", subject: "/CN=localhost-rotated", ca: "ca", extensions: "server_ext", days: "30", serial: "9")
    }

    private static func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestSetupError(description: "openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(String(decoding: output, as: UTF8.self))")
        }
    }
}

/// A test's temporary directory, the shared PKI, and the servers and proxies the
/// test starts. `shutdown()` stops them and removes the directory.
final class TLSTestBed: @unchecked Sendable {
    // @unchecked: used from the one test that owns it.
    let directory: URL
    private let pki: URL
    private var processes: [Subprocess] = []

    /// The CA the client trusts, and certificates it signed.
    var caFile: String { pkiPath("ca.pem") }
    /// Server certificate for localhost and 127.0.0.1.
    var serverCert: String { pkiPath("server.pem") }
    var serverKey: String { pkiPath("server.key") }
    /// Client certificate for mutual TLS.
    var clientCert: String { pkiPath("client.pem") }
    var clientKey: String { pkiPath("client.key") }
    /// Server certificate for localhost whose validity ended before it began.
    var expiredCert: String { pkiPath("expired.pem") }
    var expiredKey: String { pkiPath("expired.key") }
    /// Server certificate for elsewhere.example only.
    var otherHostCert: String { pkiPath("otherhost.pem") }
    var otherHostKey: String { pkiPath("otherhost.key") }
    /// Server certificate for localhost from a CA the client does not trust.
    var strangerCert: String { pkiPath("stranger.pem") }
    var strangerKey: String { pkiPath("stranger.key") }
    /// Client certificate from the trusted CA whose validity has ended.
    var expiredClientCert: String { pkiPath("expiredclient.pem") }
    var expiredClientKey: String { pkiPath("expiredclient.key") }
    /// Client certificate from a CA the server does not trust.
    var strangerClientCert: String { pkiPath("strangerclient.pem") }
    var strangerClientKey: String { pkiPath("strangerclient.key") }
    /// A second server certificate for localhost (CN=localhost-rotated, serial 9),
    /// what a rotation replaces `serverCert` with.
    var rotatedCert: String { pkiPath("rotated.pem") }
    var rotatedKey: String { pkiPath("rotated.key") }

    init() throws {
        pki = try TestPKI.directory.get()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// A file in this test's own directory.
    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
    private func pkiPath(_ name: String) -> String { pki.appendingPathComponent(name).path }

    func shutdown() {
        for process in processes { process.stop() }
        processes.removeAll()
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { shutdown() }

    // MARK: Servers

    struct ServerOptions {
        var requireClientCertificate = false
        var tls11Only = false
    }

    /// Starts the HTTPS test server with a certificate and key; returns its port.
    func startServer(cert: String, key: String, options: ServerOptions = ServerOptions()) async throws -> Int {
        let name = "server-\(processes.count)"
        var arguments = ["python3", try script("tls_server.py", TestScripts.tlsServer), "--cert", cert, "--key", key,
                         "--port-file", path("\(name).port")]
        if options.requireClientCertificate { arguments += ["--client-ca", caFile] }
        if options.tls11Only { arguments.append("--tls11-only") }
        return try await start(name: name, arguments)
    }

    /// A proxy that logs every request line (with its Proxy-Authorization) to the
    /// file `proxyLog(port:)` names.
    func startProxy(requireAuthorization: String? = nil) async throws -> Int {
        let name = "proxy-\(processes.count)"
        var arguments = ["python3", try script("connect_proxy.py", TestScripts.connectProxy),
                         "--port-file", path("\(name).port"), "--log", path("\(name).log")]
        if let requireAuthorization { arguments += ["--require-auth", requireAuthorization] }
        let port = try await start(name: name, arguments)
        proxyLogs[port] = path("\(name).log")
        return port
    }

    private var proxyLogs: [Int: String] = [:]

    /// The request lines the proxy on `port` saw, each as "line | authorization".
    func proxyLog(port: Int) -> [String] {
        guard let file = proxyLogs[port], let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map(String.init)
    }

    private func script(_ name: String, _ text: String) throws -> String {
        let file = path(name)
        if !FileManager.default.fileExists(atPath: file) { try text.write(toFile: file, atomically: true, encoding: .utf8) }
        return file
    }

    private func start(name: String, _ arguments: [String]) async throws -> Int {
        let process = try Subprocess(name: name, arguments, stderr: directory.appendingPathComponent("\(name).stderr"))
        processes.append(process)
        let portFile = path("\(name).port")
        for _ in 0..<500 {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(text) { return port }
            if !process.process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let stderr = (try? String(contentsOfFile: path("\(name).stderr"), encoding: .utf8)) ?? ""
        throw TestSetupError(description: "\(name) did not start: \(stderr)")
    }
}

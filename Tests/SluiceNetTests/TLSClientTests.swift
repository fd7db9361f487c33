import Foundation
import NIOCore
import SluiceCore
import Testing
@testable import SluiceNet

/// The HTTP client's TLS against a Python `ssl` server with certificates made by the
/// openssl CLI for each test.
@Suite struct TLSClientTests {
    static func post(_ url: String, tls: TLSClientConfiguration?, proxy: ProxySettings? = nil, requests: Int = 1) async throws -> [String] {
        var settings = HTTPClient.Settings()
        settings.tls = tls
        settings.proxy = proxy
        settings.requestTimeout = .seconds(10)
        let client = HTTPClient(endpoint: try #require(HTTPEndpoint(url)), settings: settings)
        var bodies: [String] = []
        do {
            for _ in 0..<requests {
                let response = try await client.send(HTTPClientRequest(target: "/v1/logs", body: ByteBuffer(string: "hello")))
                #expect(response.status == .ok)
                bodies.append(response.bodyText)
            }
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        return bodies
    }

    /// The error a send fails with, as the text a user would see.
    static func failure(_ url: String, tls: TLSClientConfiguration?, proxy: ProxySettings? = nil) async -> String? {
        do {
            _ = try await post(url, tls: tls, proxy: proxy)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func trustsTheCAFile() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let port = try await bed.startServer(cert: bed.serverCert, key: bed.serverKey)
        let tls = TLSClientConfiguration(caFile: bed.caFile)
        let bodies = try await Self.post("https://localhost:\(port)", tls: tls)
        #expect(bodies.first?.hasPrefix("conn=1 client=no bytes=5 path=/v1/logs") == true, "\(bodies)")
        // An address endpoint is checked against the certificate's IP entry (and sends no SNI).
        let byAddress = try await Self.post("https://127.0.0.1:\(port)", tls: tls)
        #expect(byAddress.first?.contains("bytes=5") == true)
    }

    @Test func refusesAServerFromAnotherCA() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let port = try await bed.startServer(cert: bed.strangerCert, key: bed.strangerKey)
        let error = try #require(await Self.failure("https://localhost:\(port)", tls: TLSClientConfiguration(caFile: bed.caFile)))
        #expect(error.contains("TLS handshake with localhost:\(port) failed"), "\(error)")
        #expect(error.contains("certificate verify failed") && error.contains("local issuer certificate"), "\(error)")
    }

    @Test func refusesAnExpiredCertificate() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let port = try await bed.startServer(cert: bed.expiredCert, key: bed.expiredKey)
        let error = try #require(await Self.failure("https://localhost:\(port)", tls: TLSClientConfiguration(caFile: bed.caFile)))
        #expect(error.contains("certificate has expired"), "\(error)")
    }

    @Test func refusesACertificateForAnotherHost() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let port = try await bed.startServer(cert: bed.otherHostCert, key: bed.otherHostKey)
        let error = try #require(await Self.failure("https://localhost:\(port)", tls: TLSClientConfiguration(caFile: bed.caFile)))
        #expect(error.contains("hostname mismatch"), "\(error)")
        // server_name_override names the host the certificate is for.
        let tls = TLSClientConfiguration(caFile: bed.caFile, serverName: "elsewhere.example")
        let bodies = try await Self.post("https://localhost:\(port)", tls: tls)
        #expect(bodies.count == 1)
    }

    @Test func refusesAServerBelowTheMinimumVersion() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let port = try await bed.startServer(cert: bed.serverCert, key: bed.serverKey, options: .init(tls11Only: true))
        let error = try #require(await Self.failure("https://localhost:\(port)", tls: TLSClientConfiguration(caFile: bed.caFile, minVersion: .v1_2)))
        #expect(error.contains("TLS handshake with localhost:\(port) failed") && error.contains("protocol version"), "\(error)")
    }

    @Test func mutualTLS() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let port = try await bed.startServer(cert: bed.serverCert, key: bed.serverKey, options: .init(requireClientCertificate: true))
        // Without a certificate: with TLS 1.3 the server's refusal arrives after the
        // client's handshake is done, so it surfaces on the request.
        let error = try #require(await Self.failure("https://localhost:\(port)", tls: TLSClientConfiguration(caFile: bed.caFile)))
        #expect(error.contains("certificate required"), "\(error)")
        let tls = TLSClientConfiguration(caFile: bed.caFile, certFile: bed.clientCert, keyFile: bed.clientKey)
        let bodies = try await Self.post("https://localhost:\(port)", tls: tls)
        #expect(bodies.first?.contains("client=yes") == true, "\(bodies)")
    }

    @Test func insecureSkipVerifyConnectsAndWarns() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let port = try await bed.startServer(cert: bed.strangerCert, key: bed.strangerKey)
        let tls = TLSClientConfiguration(caFile: bed.caFile, insecureSkipVerify: true)
        let bodies = try await Self.post("https://localhost:\(port)", tls: tls)
        #expect(bodies.count == 1)
        var settings = HTTPClient.Settings()
        settings.tls = tls
        let client = HTTPClient(endpoint: try #require(HTTPEndpoint("https://localhost:\(port)")), settings: settings)
        #expect(client.warnings.contains { $0.contains("insecure_skip_verify") })
        await client.close()
    }

    @Test func keepsTLSConnectionsAlive() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let port = try await bed.startServer(cert: bed.serverCert, key: bed.serverKey)
        let bodies = try await Self.post("https://localhost:\(port)", tls: TLSClientConfiguration(caFile: bed.caFile), requests: 3)
        #expect(bodies.count == 3)
        #expect(bodies.allSatisfy { $0.hasPrefix("conn=1 ") }, "\(bodies)")
    }

    @Test func carriesLargeBodiesBothWays() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let port = try await bed.startServer(cert: bed.serverCert, key: bed.serverKey)
        var settings = HTTPClient.Settings()
        settings.tls = TLSClientConfiguration(caFile: bed.caFile)
        let client = HTTPClient(endpoint: try #require(HTTPEndpoint("https://localhost:\(port)")), settings: settings)
        // Many TLS records each way, and more than one read of the session per chunk.
        let payload = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        let response = try await client.send(HTTPClientRequest(target: "/echo", body: ByteBuffer(bytes: payload)))
        #expect(response.status == .ok)
        #expect(Array(response.body.readableBytesView) == payload)
        await client.close()
    }

    @Test func aServerThatNeverHandshakesTimesOut() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        // The test proxy accepts the connection and waits for an HTTP request head
        // that a TLS ClientHello never completes.
        let silent = try await bed.startProxy()
        var settings = HTTPClient.Settings()
        settings.tls = TLSClientConfiguration(caFile: bed.caFile)
        settings.proxy = nil
        settings.connectTimeout = .milliseconds(500)
        let client = HTTPClient(endpoint: try #require(HTTPEndpoint("https://localhost:\(silent)")), settings: settings)
        do {
            _ = try await client.send(HTTPClientRequest(target: "/"))
            Issue.record("the request should have failed")
        } catch {
            #expect("\(error)".contains("the TLS handshake did not finish within"), "\(error)")
        }
        await client.close()
    }

    @Test func reloadsTheContextAfterTheInterval() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        var configuration = TLSClientConfiguration(caFile: bed.caFile)
        configuration.reloadInterval = .milliseconds(1)
        let source = try TLSContextSource(configuration)
        let first = source.current
        try await Task.sleep(for: .milliseconds(5))
        #expect(source.current !== first)
        configuration.reloadInterval = nil
        let fixed = try TLSContextSource(configuration)
        #expect(fixed.current === fixed.current)
    }

    @Test func systemTrustStoreDoesNotKnowTheTestCA() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let port = try await bed.startServer(cert: bed.serverCert, key: bed.serverKey)
        // No ca_file: the system bundle is used, and it has never heard of this CA.
        let error = try #require(await Self.failure("https://localhost:\(port)", tls: nil))
        #expect(error.contains("certificate verify failed"), "\(error)")
    }

    @Test func badFilesAreConfigurationErrors() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let notPEM = bed.path("not-a-cert.pem")
        try "hello".write(toFile: notPEM, atomically: true, encoding: .utf8)
        #expect(throws: TLSError.self) { try TLSClientConfiguration(caFile: notPEM).makeContext() }
        do {
            _ = try TLSClientConfiguration(caFile: notPEM).makeContext()
        } catch {
            #expect(error.description.contains("tls.ca_file '\(notPEM)'"), "\(error)")
        }
        do {
            _ = try TLSClientConfiguration(caFile: bed.caFile, certFile: bed.clientCert, keyFile: bed.serverKey).makeContext()
            Issue.record("a key that does not match its certificate was accepted")
        } catch {
            #expect(error.description.contains("does not belong to the certificate"), "\(error)")
        }
        // The client reports the same when asked to send, without connecting.
        let error = try #require(await Self.failure("https://localhost:1", tls: TLSClientConfiguration(caFile: notPEM)))
        #expect(error.contains("tls.ca_file"), "\(error)")
    }
}

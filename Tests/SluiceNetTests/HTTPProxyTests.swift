import Foundation
import NIOCore
import Testing
@testable import SluiceNet

@Suite struct NoProxyTests {
    @Test func domainsAndSubdomains() {
        let list = NoProxyList("example.com, .internal.corp ,*.svc.cluster.local,Splunk.Local.")
        #expect(list.matches(host: "example.com", port: 443))
        #expect(list.matches(host: "hec.example.com", port: 443))
        #expect(list.matches(host: "HEC.Example.COM.", port: 443))
        #expect(!list.matches(host: "notexample.com", port: 443))
        #expect(!list.matches(host: "example.com.evil.net", port: 443))
        // A leading dot means subdomains only.
        #expect(list.matches(host: "es.internal.corp", port: 9200))
        #expect(!list.matches(host: "internal.corp", port: 9200))
        #expect(list.matches(host: "es.logging.svc.cluster.local", port: 9200))
        #expect(!list.matches(host: "svc.cluster.local", port: 9200))
        #expect(list.matches(host: "splunk.local", port: 8088))
    }

    @Test func portsAddressesAndNetworks() {
        let list = NoProxyList("api.example.com:8443,10.0.0.0/8,192.168.1.7,[fd00::1]:443,fd12::/16")
        #expect(list.matches(host: "api.example.com", port: 8443))
        #expect(!list.matches(host: "api.example.com", port: 443))
        #expect(list.matches(host: "10.1.2.3", port: 443))
        #expect(!list.matches(host: "11.1.2.3", port: 443))
        #expect(list.matches(host: "192.168.1.7", port: 80))
        #expect(!list.matches(host: "192.168.1.8", port: 80))
        #expect(list.matches(host: "fd00::1", port: 443))
        #expect(list.matches(host: "[fd00::1]", port: 443))
        #expect(!list.matches(host: "fd00::1", port: 8443))
        #expect(list.matches(host: "fd12:3456::9", port: 1))
        #expect(!list.matches(host: "fd13::9", port: 1))
        // Addresses are not resolved: a name never matches a network.
        #expect(!list.matches(host: "ten.example.net", port: 443))
    }

    @Test func starAndEmpty() {
        #expect(NoProxyList("*").matches(host: "anything.example", port: 1))
        #expect(NoProxyList("a.example, *").matches(host: "b.example", port: 1))
        #expect(!NoProxyList("").matches(host: "a.example", port: 1))
        #expect(NoProxyList(" , ").isEmpty)
    }

    @Test func environmentSelection() throws {
        let env = ["https_proxy": "proxy.corp:3128", "HTTP_PROXY": "http://user:p%40ss@plain.corp:8080", "no_proxy": ".internal"]
        let settings = try #require(ProxySettings.environment(env))
        let secure = try #require(HTTPEndpoint("https://splunk.example.com:8088"))
        #expect(try settings.server(for: secure) == ProxyServer(host: "proxy.corp", port: 3128))
        let plain = try #require(HTTPEndpoint("http://collector.example.com:4318"))
        let httpProxy = try #require(try settings.server(for: plain))
        #expect(httpProxy.host == "plain.corp" && httpProxy.port == 8080)
        #expect(httpProxy.authorization == "Basic " + Data("user:p@ss".utf8).base64EncodedString())
        #expect(!httpProxy.description.contains("p@ss"))
        #expect(try settings.server(for: try #require(HTTPEndpoint("https://es.internal:9200"))) == nil)
        // Loopback never goes through the environment's proxy; proxy_url sends everything.
        #expect(try settings.server(for: try #require(HTTPEndpoint("https://localhost:8088"))) == nil)
        #expect(try settings.server(for: try #require(HTTPEndpoint("https://127.0.0.1:8088"))) == nil)
        let explicit = try ProxySettings(url: "http://proxy.corp:3128")
        #expect(try explicit.server(for: try #require(HTTPEndpoint("https://localhost:8088"))) != nil)
        #expect(ProxySettings.environment(["PATH": "/bin"]) == nil)
    }

    @Test func unusableProxyValuesFailInsteadOfGoingAround() throws {
        #expect(throws: ProxyError.self) { try ProxyServer(url: "https://proxy.corp:3128") }
        #expect(throws: ProxyError.self) { try ProxyServer(url: "socks5://proxy.corp:1080") }
        #expect(throws: ProxyError.self) { try ProxyServer(url: "http://proxy.corp:3128/path") }
        let settings = try #require(ProxySettings.environment(["HTTPS_PROXY": "socks5://proxy.corp:1080"]))
        #expect(throws: ProxyError.self) { try settings.server(for: try #require(HTTPEndpoint("https://splunk.example.com"))) }
        // … unless NO_PROXY says the host is reached directly anyway.
        let bypassed = try #require(ProxySettings.environment(["HTTPS_PROXY": "socks5://p:1", "NO_PROXY": "example.com"]))
        #expect(try bypassed.server(for: try #require(HTTPEndpoint("https://splunk.example.com"))) == nil)
    }
}

/// The client through a real (Python) proxy.
@Suite struct HTTPProxyTests {
    @Test func tunnelsHTTPSThroughCONNECT() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let server = try await bed.startServer(cert: bed.serverCert, key: bed.serverKey)
        let proxyPort = try await bed.startProxy()
        let proxy = try ProxySettings(url: "http://sluice:s3cret@127.0.0.1:\(proxyPort)")
        let bodies = try await TLSClientTests.post("https://localhost:\(server)", tls: TLSClientConfiguration(caFile: bed.caFile), proxy: proxy, requests: 2)
        #expect(bodies.count == 2 && bodies.allSatisfy { $0.hasPrefix("conn=1 ") }, "\(bodies)")
        let auth = "Basic " + Data("sluice:s3cret".utf8).base64EncodedString()
        // One tunnel for both requests: keep-alive works through it.
        #expect(bed.proxyLog(port: proxyPort) == ["CONNECT localhost:\(server) HTTP/1.1 | \(auth)"])
    }

    @Test func reportsAProxyThatRefuses() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let server = try await bed.startServer(cert: bed.serverCert, key: bed.serverKey)
        let proxyPort = try await bed.startProxy(requireAuthorization: "Basic nobody-has-this")
        let proxy = try ProxySettings(url: "http://127.0.0.1:\(proxyPort)")
        let error = try #require(await TLSClientTests.failure("https://localhost:\(server)", tls: TLSClientConfiguration(caFile: bed.caFile), proxy: proxy))
        #expect(error.contains("refused CONNECT localhost:\(server)") && error.contains("407"), "\(error)")
    }

    @Test func environmentProxyAndNoProxy() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let server = try await bed.startServer(cert: bed.serverCert, key: bed.serverKey)
        let proxyPort = try await bed.startProxy()
        let tls = TLSClientConfiguration(caFile: bed.caFile)
        // The loopback exemption is switched off so localhost stands in for a remote host.
        var proxied = try #require(ProxySettings.environment(["HTTPS_PROXY": "127.0.0.1:\(proxyPort)", "NO_PROXY": "example.com"]))
        proxied.bypassLoopback = false
        _ = try await TLSClientTests.post("https://localhost:\(server)", tls: tls, proxy: proxied)
        #expect(bed.proxyLog(port: proxyPort).count == 1)

        var bypassed = try #require(ProxySettings.environment(["https_proxy": "http://127.0.0.1:\(proxyPort)", "no_proxy": "example.com, localhost"]))
        bypassed.bypassLoopback = false
        let bodies = try await TLSClientTests.post("https://localhost:\(server)", tls: tls, proxy: bypassed)
        #expect(bodies.count == 1)
        #expect(bed.proxyLog(port: proxyPort).count == 1, "NO_PROXY should have sent the second client direct")
    }

    @Test func plainHTTPUsesAbsoluteFormTargets() async throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let proxyPort = try await bed.startProxy()
        // The test proxy answers plain requests itself with the request line it got.
        let proxy = try ProxySettings(url: "http://u:p@127.0.0.1:\(proxyPort)")
        let bodies = try await TLSClientTests.post("http://collector.example:4318", tls: nil, proxy: proxy)
        #expect(bodies == ["POST http://collector.example:4318/v1/logs HTTP/1.1"])
        #expect(bed.proxyLog(port: proxyPort).first?.hasSuffix("| Basic " + Data("u:p".utf8).base64EncodedString()) == true)
    }
}

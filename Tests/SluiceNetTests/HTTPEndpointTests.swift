import Testing
@testable import SluiceNet

@Suite struct HTTPEndpointTests {
    @Test func parsesSchemesPortsAndPaths() throws {
        let plain = try #require(HTTPEndpoint("http://gateway:4318/"))
        #expect(plain.port == 4318 && plain.path == "" && plain.authority == "gateway:4318")
        let tls = try #require(HTTPEndpoint("https://splunk.example.com/services/collector"))
        #expect(tls.port == 443 && tls.path == "/services/collector" && tls.authority == "splunk.example.com")
        #expect(HTTPEndpoint("ftp://x") == nil)
        #expect(HTTPEndpoint("gateway:4318") == nil)
    }

    @Test func hostPortForms() {
        #expect(HostPort("0.0.0.0:4318") == HostPort(host: "0.0.0.0", port: 4318))
        #expect(HostPort(":4318") == HostPort(host: "0.0.0.0", port: 4318))
        #expect(HostPort("[::1]:4318") == HostPort(host: "::1", port: 4318))
        #expect(HostPort("localhost") == nil)
        #expect(HostPort("x:70000") == nil)
    }
}

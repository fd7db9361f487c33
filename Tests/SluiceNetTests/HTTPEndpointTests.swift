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

    @Test func userinfoIsBasicAuthenticationAndNeverShown() throws {
        let endpoint = try #require(HTTPEndpoint("https://ingest%40corp:p%3Ass-w0rd@gateway:4318/otlp"))
        let credentials = try #require(endpoint.credentials)
        #expect(credentials.user == "ingest@corp" && credentials.password == "p:ss-w0rd")
        #expect(credentials.basic == "Basic aW5nZXN0QGNvcnA6cDpzcy13MHJk")
        #expect(!endpoint.description.contains("w0rd") && !endpoint.authority.contains("ingest"))
        #expect(credentials.secretValues.contains("p:ss-w0rd"))
        #expect(HTTPEndpoint("http://gateway:4318")?.credentials == nil)
        #expect(URLCredentials.redacted("http://u:secret@host:1") == "http://…@host:1")
    }

    @Test func wildcardHosts() {
        #expect(HostPort(":4318")!.isWildcard && HostPort("0.0.0.0:1")!.isWildcard && HostPort("[::]:1")!.isWildcard)
        #expect(!HostPort("localhost:4318")!.isWildcard && !HostPort("127.0.0.1:1")!.isWildcard && !HostPort("[::1]:1")!.isWildcard)
    }
}

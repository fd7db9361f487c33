import Foundation
import SluiceCore
import Testing
@testable import SluiceNet

/// `tls:` sections read from YAML, and their conversion to the OpenSSL configuration.
@Suite struct TLSSettingsTests {
    /// The `tls:` section of one exporter, and the problems reading it reported.
    static func read(_ tls: String) throws -> (TLSSettings, [String]) {
        let text = """
        exporters:
          otlphttp:
            endpoint: https://gateway:4318
            tls:
        \(tls.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n"))
        service:
          pipelines:
            logs:
              receivers: [otlp]
              exporters: [otlphttp]
        """
        let config = CollectorConfig.load(text: text, file: "collector.yaml")
        let exporter = try #require(config.exporters.first?.config)
        let settings = TLSSettings(exporter.map("tls"))
        let problems = config.diagnostics.all.filter { $0.path.contains("tls") }.map(\.description)
        return (settings, problems)
    }

    @Test func readsEveryCollectorKey() throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let (settings, problems) = try Self.read("""
        ca_file: \(bed.caFile)
        cert_file: \(bed.clientCert)
        key_file: \(bed.clientKey)
        insecure: false
        insecure_skip_verify: false
        min_version: "1.3"
        max_version: "1.3"
        server_name_override: splunk.internal
        reload_interval: 1h
        include_system_ca_certs_pool: true
        """)
        #expect(problems.isEmpty, "\(problems)")
        #expect(settings.caFile == bed.caFile && settings.certFile == bed.clientCert && settings.keyFile == bed.clientKey)
        #expect(settings.minVersion == .v1_3 && settings.maxVersion == .v1_3)
        #expect(settings.serverNameOverride == "splunk.internal")
        #expect(settings.reloadInterval == .seconds(3600))
        #expect(settings.warnings.isEmpty)
        let configuration = TLSClientConfiguration(settings)
        #expect(configuration.serverName == "splunk.internal" && configuration.includeSystemCACertificates)
        _ = try configuration.makeContext()
    }

    @Test func defaults() throws {
        let (settings, problems) = try Self.read("insecure_skip_verify: true")
        #expect(problems.isEmpty)
        #expect(settings.minVersion == .v1_2 && settings.maxVersion == nil && settings.caFile == nil)
        #expect(settings.warnings.count == 1 && settings.warnings[0].contains("insecure_skip_verify"))
        #expect(TLSClientConfiguration(settings).insecureSkipVerify)
    }

    @Test func namesMissingFilesAndBadValues() throws {
        let (_, problems) = try Self.read("""
        ca_file: /nonexistent/ca.pem
        cert_file: /nonexistent/client.pem
        max_version: "2.0"
        ca_pem: "-----BEGIN CERTIFICATE-----"
        reload_intervl: 1h
        """)
        let text = problems.joined(separator: "\n")
        #expect(text.contains("exporters.otlphttp.tls.ca_file: '/nonexistent/ca.pem' does not exist"), "\(text)")
        #expect(text.contains("tls.cert_file: '/nonexistent/client.pem' does not exist"), "\(text)")
        #expect(text.contains("tls.key_file: missing"), "\(text)")
        #expect(text.contains("tls.max_version: '2.0' is not a TLS version"), "\(text)")
        #expect(text.contains("tls.ca_pem: inline PEM is not supported"), "\(text)")
        #expect(text.contains("tls.reload_intervl: unknown key (did you mean reload_interval?)"), "\(text)")
    }

    @Test func namesUnreadableFiles() throws {
        guard getuid() != 0 else { return } // root reads everything
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let locked = bed.path("locked-ca.pem")
        try FileManager.default.copyItem(atPath: bed.caFile, toPath: locked)
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: locked)
        let (_, problems) = try Self.read("ca_file: \(locked)")
        #expect(problems.contains { $0.contains("cannot be read") }, "\(problems)")
    }

    @Test func exporterClientSettings() throws {
        let bed = try TLSTestBed()
        defer { bed.shutdown() }
        let notPEM = bed.path("not-a-cert.pem")
        try "hello".write(toFile: notPEM, atomically: true, encoding: .utf8)
        func load(_ section: String) throws -> (HTTPClient.Settings, [String]) {
            let config = CollectorConfig.load(text: """
            exporters:
              otlphttp:
                endpoint: https://gateway:4318
                timeout: 7s
            \(section.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            """, file: "collector.yaml")
            let exporter = try #require(config.exporters.first?.config)
            let settings = HTTPClient.Settings(exporterConfig: exporter, shared: HTTPClientSettings(exporter))
            return (settings, config.diagnostics.all.filter { $0.path.hasPrefix("exporters.") }.map(\.description))
        }
        let (good, none) = try load("""
        proxy_url: http://proxy.corp:3128
        tls:
          ca_file: \(bed.caFile)
          insecure_skip_verify: true
        """)
        #expect(none.isEmpty, "\(none)")
        #expect(good.requestTimeout == .seconds(7))
        #expect(good.tls?.caFile == bed.caFile && good.proxy?.httpsProxy == ProxyServer(host: "proxy.corp", port: 3128))
        #expect(good.warnings.count == 1)
        let (_, problems) = try load("""
        proxy_url: socks5://proxy.corp:1080
        tls:
          ca_file: \(notPEM)
        """)
        #expect(problems.contains { $0.contains("exporters.otlphttp.tls: tls.ca_file '\(notPEM)' holds no usable CA certificate") }, "\(problems)")
        #expect(problems.contains { $0.contains("exporters.otlphttp.proxy_url:") && $0.contains("only http:// proxies") }, "\(problems)")
    }

    @Test func maxBelowMin() throws {
        let (_, problems) = try Self.read("""
        min_version: "1.3"
        max_version: "1.2"
        """)
        #expect(problems.contains { $0.contains("max_version: 1.2 is below min_version 1.3") }, "\(problems)")
    }
}

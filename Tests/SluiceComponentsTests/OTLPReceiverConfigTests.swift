// `receivers.otlp`: the gRPC protocol's settings and defaults, unknown keys, and
// `auth.authenticator` resolved against the started extensions.
import Logging
import Testing
import SluiceCore
import SluiceNet
@testable import SluiceComponents

@Suite struct OTLPReceiverConfigTests {
    /// The receiver section under `receivers.otlp.protocols`, with `extensions` started.
    func load(_ protocols: String, extensions: [ComponentID: any Extension] = [:]) -> (OTLPReceiverConfig?, [ConfigDiagnostic]) {
        let indented = protocols.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n")
        let config = CollectorConfig.load(text: "receivers:\n  otlp:\n    protocols:\n\(indented)\n" + Self.service, file: "test.yaml")
        guard let section = config.receivers.first?.config else { return (nil, config.diagnostics.all) }
        var context = ComponentContext(logger: Logger(label: "test"), metrics: MetricsRegistry())
        context.extensions = extensions
        return (OTLPReceiverConfig(section, context: context), config.diagnostics.all)
    }

    static let service = "exporters:\n  nop:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [nop]\n"

    @Test func grpcDefaultsAreTheCollectors() throws {
        let (config, diagnostics) = load("grpc:")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let grpc = try #require(config?.grpc)
        #expect(grpc.endpoint == HostPort(host: "localhost", port: 4317))  // the Collector's since v0.104
        #expect(grpc.maxConnections == nil)  // a share of what ulimit -n allows, at most 1024
        #expect(grpc.maxRecvMsgSize == 4 << 20)
        #expect(grpc.auth == nil)
        #expect(config?.http == nil)
    }

    @Test func grpcSettingsAreRead() throws {
        let (config, diagnostics) = load("""
        grpc:
          endpoint: 127.0.0.1:14317
          transport: tcp
          max_recv_msg_size_mib: 16
          max_concurrent_streams: 64
          read_buffer_size: 524288
          write_buffer_size: 512KiB
          include_metadata: true
          keepalive:
            server_parameters: {max_connection_idle: 11s, max_connection_age: 1h, time: 2h, timeout: 20s}
            enforcement_policy: {min_time: 5m, permit_without_stream: true}
        http:
          endpoint: 127.0.0.1:14318
        """)
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let grpc = try #require(config?.grpc)
        #expect(grpc.endpoint == HostPort(host: "127.0.0.1", port: 14317))
        #expect(grpc.maxRecvMsgSize == 16 << 20)
        #expect(grpc.maxConcurrentStreams == 64)
        #expect(grpc.idleTimeout == .seconds(11))
        #expect(config?.http?.server.endpoint == HostPort(host: "127.0.0.1", port: 14318))
    }

    @Test func unknownKeysAndBadValuesNameTheirPath() {
        let cases: [(String, String)] = [
            ("grpc:\n  max_recv_msg_size: 4", "receivers.otlp.protocols.grpc.max_recv_msg_size"),
            ("grpc:\n  transport: unix", "receivers.otlp.protocols.grpc.transport"),
            ("grpc:\n  endpoint: nowhere", "receivers.otlp.protocols.grpc.endpoint"),
            ("grpc:\n  keepalive: {server_parameters: {max_idle: 1s}}", "receivers.otlp.protocols.grpc.keepalive.server_parameters.max_idle"),
            ("grpc:\n  auth: {authenticator: bearertokenauth, extra: 1}", "receivers.otlp.protocols.grpc.auth.extra"),
            ("grpc:\n  tls: {key_file: /nonexistent/key.pem}", "receivers.otlp.protocols.grpc.tls.cert_file"),
            ("http:\n  tls: {cert_file: /nonexistent/cert.pem, key_file: /nonexistent/key.pem}", "receivers.otlp.protocols.http.tls.key_file"),
        ]
        for (section, path) in cases {
            let (config, diagnostics) = load(section)
            #expect(config == nil, "\(section)")
            #expect(diagnostics.map(\.path).contains(path), "\(section): \(diagnostics)")
        }
    }

    @Test func authNamesAStartedAuthenticator() throws {
        let id = ComponentID(type: "bearertokenauth")
        let token = BearerTokenAuthExtension(id: id, settings: BearerTokenAuthSettings(tokens: ["s3cret"]), logger: Logger(label: "test"))
        let (config, diagnostics) = load("grpc:\n  auth: {authenticator: bearertokenauth}\nhttp:\n  auth: {authenticator: bearertokenauth}",
                                         extensions: [id: token])
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        #expect(config?.grpc?.auth?.id == id)
        #expect(config?.http?.server.auth?.id == id)
    }

    @Test func authNamingAMissingOrWrongExtensionIsReported() {
        let health = ComponentID(type: "health_check")
        let other = HealthCheckExtensionFactory().make(id: health, config: .empty(path: "extensions.health_check", diagnostics: ConfigDiagnostics(file: "x")),
                                                       context: ComponentContext(logger: Logger(label: "test")))!
        let cases: [(String, String)] = [
            ("http:\n  auth: {authenticator: bearertokenauth}", "not a started extension"),
            ("http:\n  auth: {authenticator: bearertokenauth/other}", "not a started extension"),
            ("http:\n  auth: {authenticator: health_check}", "does not authenticate"),
            ("http:\n  auth: {}", "missing"),
        ]
        for (section, words) in cases {
            let (config, diagnostics) = load(section, extensions: [health: other])
            #expect(config == nil)
            let problem = diagnostics.first { $0.path == "receivers.otlp.protocols.http.auth.authenticator" }
            #expect(problem?.message.contains(words) == true, "\(section): \(diagnostics)")
        }
    }
}

// bearertokenauth: the digest it compares with, header and scheme handling, the
// token file and its rotation, config errors that never show the token, and the
// 401 an OTLP/HTTP receiver answers with it.
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Testing
import SluiceCore
import SluiceNet
@testable import SluiceComponents

@Suite struct BearerTokenAuthTests {
    // MARK: Digest

    @Test func sha256KnownAnswers() {
        func hex(_ text: String) -> String { SHA256.hash(Array(text.utf8)).map { String(format: "%02x", $0) }.joined() }
        // FIPS 180-4 examples (one block, two blocks) and the empty message.
        #expect(hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // 55 and 56 bytes: the padding fits in one block, then needs a second.
        #expect(hex(String(repeating: "a", count: 55)) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
        #expect(hex(String(repeating: "a", count: 56)) == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
    }

    @Test func digestsMatchOnlyTheSameValue() {
        #expect(ConstantTimeDigest("s3cret").matches(ConstantTimeDigest("s3cret")))
        #expect(!ConstantTimeDigest("s3cret").matches(ConstantTimeDigest("s3creT")))
        #expect(!ConstantTimeDigest("s3cret").matches(ConstantTimeDigest("s3cre")))
        #expect(!ConstantTimeDigest("s3cret").matches(ConstantTimeDigest("")))
    }

    // MARK: Headers

    func authenticator(_ settings: BearerTokenAuthSettings) -> BearerTokenAuthExtension {
        BearerTokenAuthExtension(id: ComponentID(type: "bearertokenauth"), settings: settings, logger: Logger(label: "test"))
    }

    func check(_ auth: BearerTokenAuthExtension, _ headers: [String: String]) -> String? {
        auth.authenticate { headers[$0] }
    }

    @Test func bearerSchemeAndToken() {
        let auth = authenticator(BearerTokenAuthSettings(tokens: ["s3cret"]))
        #expect(check(auth, ["authorization": "Bearer s3cret"]) == nil)
        #expect(check(auth, ["authorization": "BEARER s3cret"]) == nil)
        for refused in ["Bearer s3creT", "Bearer", "s3cret", "Basic s3cret", "", "Bearer s3cret2"] {
            let reason = check(auth, ["authorization": refused])
            #expect(reason != nil, "\(refused)")
            #expect(!(reason ?? "").contains("s3cret"))
        }
        #expect(check(auth, [:]) == "missing authorization header")
    }

    @Test func customHeaderEmptySchemeAndSeveralTokens() {
        let auth = authenticator(BearerTokenAuthSettings(header: "X-API-Key", scheme: "", tokens: ["one", "two"]))
        #expect(check(auth, ["x-api-key": "two"]) == nil)
        #expect(check(auth, ["x-api-key": "one"]) == nil)
        #expect(check(auth, ["x-api-key": "three"]) != nil)
        #expect(check(auth, ["authorization": "Bearer one"]) != nil)
    }

    // MARK: Token file

    @Test func tokenFileIsReadAndFollowedWhenRotated() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/token"
        try "first-token\n".write(toFile: path, atomically: true, encoding: .utf8)
        let (made, diagnostics) = make("filename: \(path)")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let auth = try #require(made as? BearerTokenAuthExtension)
        #expect(check(auth, ["authorization": "Bearer first-token"]) == nil)
        #expect(check(auth, ["authorization": "Bearer second-token"]) != nil)

        // Rotated as a Kubernetes secret volume does: a new file renamed over the old.
        try "second-token".write(toFile: path + ".new", atomically: false, encoding: .utf8)
        _ = rename(path + ".new", path)
        #expect(auth.tokens.reload() == nil)
        #expect(check(auth, ["authorization": "Bearer second-token"]) == nil)
        #expect(check(auth, ["authorization": "Bearer first-token"]) != nil)

        // Rewritten in place, same length, same second: still noticed.
        try "third--token".write(toFile: path, atomically: false, encoding: .utf8)
        auth.tokens.reload()
        #expect(check(auth, ["authorization": "Bearer third--token"]) == nil)

        // A file that disappears for a moment keeps the last token in force.
        try FileManager.default.removeItem(atPath: path)
        #expect(auth.tokens.reload() != nil)
        #expect(check(auth, ["authorization": "Bearer third--token"]) == nil)
    }

    @Test func configProblemsNameTheKeyAndNeverTheToken() throws {
        let directory = try TemporaryDirectory()
        let empty = directory.path + "/empty"
        #expect(FileManager.default.createFile(atPath: empty, contents: Data()))
        let cases: [(String, String)] = [
            ("scheme: Bearer", "extensions.bearertokenauth.token"),
            ("filename: \(directory.path)/missing", "extensions.bearertokenauth.filename"),
            ("filename: \(empty)", "extensions.bearertokenauth.filename"),
            ("token: s3cret\ntokn: x", "extensions.bearertokenauth.tokn"),
            ("token: s3cret\ntokens: [a]", "extensions.bearertokenauth.tokens"),
        ]
        for (section, path) in cases {
            let (made, diagnostics) = make(section)
            #expect(made == nil, "\(section)")
            #expect(diagnostics.map(\.path).contains(path), "\(section): \(diagnostics)")
            #expect(!diagnostics.description.contains("s3cret"))
        }
    }

    func make(_ section: String) -> ((any Extension)?, [ConfigDiagnostic]) {
        let indented = section.split(separator: "\n").joined(separator: "\n    ")
        let yaml = "extensions:\n  bearertokenauth:\n    \(indented)\nreceivers:\n  otlp:\n    protocols:\n      http:\n" + OTLPReceiverConfigTests.service + "  extensions: [bearertokenauth]\n"
        let config = CollectorConfig.load(text: yaml, file: "test.yaml")
        guard let ext = config.extensions.first else { return (nil, config.diagnostics.all) }
        let made = BearerTokenAuthExtensionFactory().make(id: ext.id, config: ext.config, context: ComponentContext(logger: Logger(label: "test")))
        return (made, config.diagnostics.all)
    }

    // MARK: OTLP/HTTP with auth

    func httpResponder(_ sink: RecordingSink, metrics: MetricsRegistry = MetricsRegistry()) -> OTLPHTTPResponder {
        var config = OTLPReceiverConfig.HTTP()
        config.server.auth = bearerAuth(BearerTokenAuthSettings(tokens: ["s3cret"]))
        config.server.cors = CORSSettings(allowedOrigins: ["https://app.example"])
        let id = ComponentID(type: "otlp")
        return OTLPHTTPResponder(id: id, config: config, sink: sink, counters: ReceiverCounters(id: id, transport: "http", metrics: metrics))
    }

    @Test func httpWithoutTheTokenIs401WithAStatusInTheRequestsEncoding() throws {
        let sink = RecordingSink()
        let metrics = MetricsRegistry()
        let http = httpResponder(sink, metrics: metrics)
        let body = try OTLPTestData.logsProtobuf()

        let request = OTLPTestData.request(path: "/v1/logs", headers: [("Content-Type", "application/x-protobuf"), ("Authorization", "Bearer nope")],
                                           body: body, version: .http1_1)
        let response = try reply { http.handle(request, reply: $0) }
        #expect(response.status == .unauthorized)
        #expect(response.headers.first(name: "WWW-Authenticate") == "Bearer")
        let status = bytes(response.body)
        #expect(Array(status.prefix(2)) == [0x08, 16])  // google.rpc.Status.code = UNAUTHENTICATED
        #expect(!String(decoding: status, as: UTF8.self).contains("nope"))

        let json = OTLPTestData.request(path: "/v1/logs", headers: [("Content-Type", "application/json")], body: Array("{}".utf8), version: .http1_1)
        let jsonResponse = try reply { http.handle(json, reply: $0) }
        #expect(jsonResponse.status == .unauthorized)
        #expect(String(decoding: bytes(jsonResponse.body), as: UTF8.self).hasPrefix("{\"code\":16,"))

        let good = OTLPTestData.request(path: "/v1/logs", headers: [("Content-Type", "application/x-protobuf"), ("Authorization", "Bearer s3cret")],
                                        body: body, version: .http1_1)
        #expect(try reply { http.handle(good, reply: $0) }.status == .ok)
        #expect(sink.received.count == 1)
        #expect(metrics.counter("sluice_receiver_auth_failures_total", "", labels: [("receiver", "otlp"), ("transport", "http")]).count == 2)
    }

    @Test func corsPreflightNeedsNoToken() throws {
        let request = OTLPTestData.request(path: "/v1/logs", method: .OPTIONS,
                                           headers: [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST"),
                                                     ("Access-Control-Request-Headers", "content-type")],
                                           body: [], version: .http1_1)
        let response = try reply { httpResponder(RecordingSink()).handle(request, reply: $0) }
        #expect(response.status == .noContent)
        #expect(response.headers.first(name: "Access-Control-Allow-Origin") == "https://app.example")
    }
}

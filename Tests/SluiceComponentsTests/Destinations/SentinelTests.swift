import Foundation
import Logging
import Testing
import SluiceCore
import SluiceNet
@testable import SluiceComponents

/// The sentinel exporter without sockets: the SharedKey signature, rows with
/// Log Analytics column names, Entra ID tokens cached and fetched again before
/// they lapse, the Logs Ingestion API's answers, and its section's mistakes.
@Suite struct SentinelTests {
    static let sharedKey = Data((0..<64).map { UInt8($0) }).base64EncodedString()

    @Test func theSharedKeySignatureIsTheDocumentedStringToSign() {
        // Computed independently (Python's hmac) for the documentation's example string:
        // POST\n1024\napplication/json\nx-ms-date:Mon, 04 Apr 2016 08:00:00 GMT\n/api/logs
        #expect(SentinelExporter.sharedKeySignature(key: (0..<64).map { UInt8($0) }, contentLength: 1024, date: "Mon, 04 Apr 2016 08:00:00 GMT")
            == "kQfMluP3yBFQzfwH0Ye5adOjNq2FCEIWGh0n4uEtCrg=")
        #expect(HTTPDate.format(Date(timeIntervalSince1970: 1_459_756_800)) == "Mon, 04 Apr 2016 08:00:00 GMT")
        #expect(HTTPDate.parse("Mon, 04 Apr 2016 08:00:00 GMT") == Date(timeIntervalSince1970: 1_459_756_800))
    }

    @Test func rowsHaveTheTimeColumnAndColumnNamesLogAnalyticsTakes() throws {
        let batch = try logsBatch([gatewayRecord("r-1", extra: #",{"key":"9lives","value":{"boolValue":true}},{"key":"user-ID.ü","value":{"stringValue":"u"}}"#)])
        for columns in [["TimeGenerated", "timestamp"], ["timestamp"]] {
            let rows = SentinelRowEncoder(timeColumns: columns).encode([batch])
            let row = try #require(try JSONSerialization.jsonObject(with: Data(rows.bytes)) as? [String: Any], "\(columns)")
            for column in columns { #expect(row[column] as? String == "2023-11-14T22:13:20.123Z") }
            #expect(row["TimeGenerated"] == nil || columns.contains("TimeGenerated"))
            #expect(row["event_id"] as? String == "r-1" && row["action"] as? String == "block" && row["tokens_prompt"] as? Int == 42)
            #expect(row["_9lives"] as? Bool == true && row["user_ID___"] as? String == "u")
            #expect(row["Message"] as? String == "request blocked" && row["SeverityNumber"] as? Int == 13 && row["ServiceName"] as? String == "ai-gateway")
            #expect(row["TraceId"] as? String == "5b8efff798038103d269b633813fc60c")
        }
    }

    @Test func dataCollectorRequestsAreSignedAndUncompressed() async throws {
        let destination = ScriptedHTTPTransport.answering { _ in (200, "", []) }
        let (map, diagnostics) = exporterSection("sentinel", "workspace_id: ws-1\nshared_key: \(Self.sharedKey)\nlog_type: AIGatewayEvents")
        let section = try #require(map)
        let config = try #require(SentinelConfig(section, environment: [:]), "\(diagnostics.all.map(\.description))")
        #expect(config.endpoint.description == "https://ws-1.ods.opinsights.azure.com" && config.target == "/api/logs?api-version=2016-04-01")
        let clock = WallClock(1_459_756_800)
        let exporter = SentinelExporter(id: ComponentID("sentinel")!, config: config, transport: destination, token: nil,
                                        logger: Logger(label: "test"), now: { clock.now })
        #expect(await exporter.export([try logsBatch([gatewayRecord("a"), gatewayRecord("b")])], signal: .logs) == .delivered)
        let request = try #require(destination.requests.first)
        #expect(request.headers.first(name: "Content-Encoding") == nil && request.headers.first(name: "Log-Type") == "AIGatewayEvents")
        #expect(request.headers.first(name: "x-ms-date") == "Mon, 04 Apr 2016 08:00:00 GMT")
        #expect(request.headers.first(name: "time-generated-field") == "timestamp")
        let signature = SentinelExporter.sharedKeySignature(key: (0..<64).map { UInt8($0) }, contentLength: request.bytes.count, date: "Mon, 04 Apr 2016 08:00:00 GMT")
        #expect(request.headers.first(name: "Authorization") == "SharedKey ws-1:\(signature)")
        #expect((request.json as? [[String: Any]])?.map { $0["event_id"] as? String } == ["a", "b"])
        #expect(exporter.redact("key \(Self.sharedKey)") == "key [REDACTED]")
    }

    @Test func tokensAreCachedAndFetchedAgainBeforeTheyLapse() async throws {
        let issued = CallCount()
        let entra = ScriptedHTTPTransport.answering { request in
            let form = String(decoding: request.bytes, as: UTF8.self)
            guard form.contains("client_secret=s3cr%2Bt%26x"), form.contains("scope=https%3A%2F%2Fmonitor.azure.com%2F%2F.default"),
                  form.contains("grant_type=client_credentials") else { return (400, #"{"error":"invalid_request"}"#, []) }
            return (200, #"{"token_type":"Bearer","expires_in":3600,"access_token":"token-\#(issued.next())"}"#, [])
        }
        let clock = WallClock(1_800_000_000)
        let source = EntraToken(settings: ingestion(.clientSecret("s3cr+t&x")), transport: entra, now: { clock.now })
        #expect(await source.token() == .success("token-1"))
        clock.advance(3000)
        #expect(await source.token() == .success("token-1"), "55 minutes in: still the cached token")
        clock.advance(400)
        #expect(await source.token() == .success("token-2"), "under five minutes left: a new one")
        #expect(entra.requests.count == 2 && entra.requests[0].target == "/tenant-1/oauth2/v2.0/token")
        await source.invalidate("token-2")
        #expect(await source.token() == .success("token-3"))
    }

    @Test func entrasRefusalIsForGoodAndAnOutageIsForLater() async throws {
        let refusing = ScriptedHTTPTransport.answering { _ in (401, #"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1"}"#, []) }
        let result = await EntraToken(settings: ingestion(.clientSecret("wrong")), transport: refusing).token()
        guard case .failure(.refused(let reason)) = result else {
            Issue.record("\(result)")
            return
        }
        #expect(reason.contains("AADSTS7000215: Invalid client secret provided.") && !reason.contains("Trace ID") && reason.contains("client_secret"))
        let down = ScriptedHTTPTransport.answering { _ in (503, "", []) }
        guard case .failure(.retry) = await EntraToken(settings: ingestion(.clientSecret("s")), transport: down).token() else {
            Issue.record("a 503 is worth a retry")
            return
        }
    }

    @Test func anExpiredFederatedTokenIsNotSentAndSaysSo() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-token-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        let payload = Data(#"{"sub":"system:serviceaccount:gw:sluice","exp":1799999000}"#.utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        try "eyJhbGciOiJSUzI1NiJ9.\(payload).c2ln\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(EntraToken.jwtExpiry("eyJhbGciOiJSUzI1NiJ9.\(payload).c2ln") == Date(timeIntervalSince1970: 1_799_999_000))
        let entra = ScriptedHTTPTransport.answering { _ in (200, #"{"access_token":"t","expires_in":"3599"}"#, []) }
        let clock = WallClock(1_800_000_000)
        let result = await EntraToken(settings: ingestion(.federatedTokenFile(file.path)), transport: entra, now: { clock.now }).token()
        guard case .failure(.retry(let reason)) = result else {
            Issue.record("\(result)")
            return
        }
        #expect(reason.contains("expired at 2027-01-15T07:43:20Z (1000 s ago)") && reason.contains(file.path), "\(reason)")
        #expect(entra.requests.isEmpty)
        clock.advance(-2000)
        #expect(await EntraToken(settings: ingestion(.federatedTokenFile(file.path)), transport: entra, now: { clock.now }).token() == .success("t"))
        let form = String(decoding: try #require(entra.requests.first).bytes, as: UTF8.self)
        #expect(form.contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"))
        #expect(form.contains("client_assertion=eyJhbGciOiJSUzI1NiJ9.") && !form.contains("%0A"), "the file's newline is not part of the assertion")
    }

    @Test func aRefused401TokenIsFetchedAnewOnceThenTheRowsAreRefused() async throws {
        let tokens = CallCount()
        let entra = ScriptedHTTPTransport.answering { _ in (200, #"{"access_token":"t\#(tokens.next())","expires_in":3600}"#, []) }
        let dcr = ScriptedHTTPTransport.answering { request in
            request.headers.first(name: "Authorization") == "Bearer t2" ? (204, "", []) : (401, #"{"error":{"code":"ExpiredAuthenticationToken"}}"#, [])
        }
        let (map, diagnostics) = exporterSection("sentinel", """
            endpoint: https://dce-1.westeurope-1.ingest.monitor.azure.com
            dcr_immutable_id: dcr-00112233445566778899aabbccddeeff
            stream_name: Custom-AIGatewayEvents_CL
            tenant_id: tenant-1
            client_id: client-1
            client_secret: s3cret-value
            """)
        let section = try #require(map)
        let config = try #require(SentinelConfig(section, environment: [:]), "\(diagnostics.all.map(\.description))")
        #expect(config.target == "/dataCollectionRules/dcr-00112233445566778899aabbccddeeff/streams/Custom-AIGatewayEvents_CL?api-version=2023-01-01")
        guard case .logsIngestion(let settings) = config.api else {
            Issue.record("the Logs Ingestion API is the default")
            return
        }
        let exporter = SentinelExporter(id: ComponentID("sentinel")!, config: config, transport: dcr, token: EntraToken(settings: settings, transport: entra),
                                        logger: Logger(label: "test"))
        #expect(await exporter.export([try logsBatch([gatewayRecord("a")])], signal: .logs) == .delivered)
        #expect(dcr.requests.count == 2 && dcr.requests[1].headers.first(name: "Content-Encoding") == "gzip")
        // Now every token is refused: once fetched anew, then the call is refused.
        let never = ScriptedHTTPTransport.answering { _ in (401, "{}", []) }
        let refused = SentinelExporter(id: ComponentID("sentinel")!, config: config, transport: never, token: EntraToken(settings: settings, transport: entra),
                                       logger: Logger(label: "test"))
        guard case .permanent(let reason) = await refused.export([try logsBatch([gatewayRecord("b")])], signal: .logs) else {
            Issue.record("a second 401 is a refusal")
            return
        }
        #expect(never.requests.count == 2 && reason.contains("refused a fresh Entra ID token"))
    }

    @Test func theSectionsMistakesAreNamedByKey() {
        let ingestion = "endpoint: https://dce.ingest.monitor.azure.com\ndcr_immutable_id: dcr-1\nstream_name: Custom-X_CL\ntenant_id: t\nclient_id: c\n"
        for (section, key) in [
            ("connection_string: InstrumentationKey=1", "connection_string"),
            (ingestion, "client_secret"),
            (ingestion + "client_secret: s\nfederated_token_file: /var/run/token", "client_secret"),
            (ingestion + "federated_token_file: /nonexistent/token", "federated_token_file"),
            ("endpoint: https://dce.ingest.monitor.azure.com\ndcr_immutable_id: 123\nstream_name: S\ntenant_id: t\nclient_id: c\nclient_secret: s", "dcr_immutable_id"),
            ("workspace_id: w\nshared_key: not base64!\nlog_type: X", "shared_key"),
            ("workspace_id: w\nshared_key: \(Self.sharedKey)\nlog_type: has-dash", "log_type"),
            ("workspace_id: w\nshared_key: \(Self.sharedKey)\nlog_type: X\nstream_name: S", "stream_name"),
            ("workspace_id: w\nshared_key: \(Self.sharedKey)\nlog_type: X\ncompression: gzip", "compression"),
        ] {
            let (map, diagnostics) = exporterSection("sentinel", section)
            #expect(map.map { SentinelConfig($0, environment: [:]) == nil } ?? true, "\(section)")
            #expect(diagnostics.all.contains { $0.path.hasSuffix(key) }, "\(section): \(diagnostics.all.map(\.description))")
        }
    }

    @Test func workloadIdentityTakesWhatAKSInjects() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-aks-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        try "a.b.c".write(to: file, atomically: true, encoding: .utf8)
        let (map, diagnostics) = exporterSection("sentinel", "endpoint: https://dce.ingest.monitor.azure.com\ndcr_immutable_id: dcr-1\nstream_name: Custom-X_CL")
        let section = try #require(map)
        let config = try #require(SentinelConfig(section, environment: [
            "AZURE_TENANT_ID": "t-9", "AZURE_CLIENT_ID": "c-9", "AZURE_FEDERATED_TOKEN_FILE": file.path,
            "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us/"]), "\(diagnostics.all.map(\.description))")
        guard case .logsIngestion(let settings) = config.api else {
            Issue.record("Logs Ingestion")
            return
        }
        #expect(settings.tenantID == "t-9" && settings.clientID == "c-9" && settings.credential == .federatedTokenFile(file.path))
        #expect(settings.authority.description == "https://login.microsoftonline.us")
    }

    func ingestion(_ credential: SentinelConfig.EntraCredential) -> SentinelConfig.LogsIngestion {
        SentinelConfig.LogsIngestion(dcrImmutableID: "dcr-1", streamName: "Custom-X_CL", tenantID: "tenant-1", clientID: "client-1",
                                     credential: credential, authority: HTTPEndpoint("https://login.microsoftonline.com")!)
    }
}

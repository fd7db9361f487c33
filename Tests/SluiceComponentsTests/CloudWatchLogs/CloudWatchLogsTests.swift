import Foundation
import NIOCore
import SluiceCore
import SluiceNet
import Synchronization
import Testing
@testable import SluiceComponents

/// The awscloudwatchlogs exporter without sockets: every PutLogEvents limit cuts a
/// batch before it is sent, answers are read as CloudWatch Logs writes them,
/// messages carry the gateway's fields, the section's mistakes are named by key,
/// and credentials come from the right place and are fetched again before expiry.
@Suite struct CloudWatchLogsTests {
    static let now: Int64 = 1_796_000_000_000
    static let stream = LogStreamName(group: "/sluice/governance", stream: "gateway-0")

    /// Events of one stream (or the given streams), with messages of the given sizes.
    func events(_ sizes: [Int], times: [Int64]? = nil, streams: [Int]? = nil) -> LogEventEncoder.Output {
        var output = LogEventEncoder.Output()
        output.streams = [Self.stream, LogStreamName(group: "/sluice/governance", stream: "gateway-1")]
        var out = JSONOutput()
        for (i, size) in sizes.enumerated() {
            let time = times?[i] ?? Self.now - Int64(sizes.count - i)
            out.append(ascii: "{\"timestamp\":")
            out.appendInt(time)
            out.append(ascii: ",\"message\":")
            out.appendString(String(repeating: "x", count: size))
            out.append(UInt8(ascii: "}"))
            output.records.ends.append(out.count)
            output.records.locators.append(RecordLocator(batch: 0, resource: 0, scope: 0, record: Int32(i)))
            output.timestamps.append(time)
            output.messageBytes.append(size)
            output.streamOf.append(streams?[i] ?? 0)
        }
        output.records.bytes = out.bytes
        return output
    }

    func batch(_ events: LogEventEncoder.Output) -> PutLogEventsBatcher.Result {
        PutLogEventsBatcher().batch(events, Array(0..<events.records.count), nowMillis: Self.now)
    }

    /// The request body as CloudWatch Logs reads it.
    func request(_ payload: Payload) throws -> (group: String, stream: String, events: [[String: Any]]) {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(payload.body)) as? [String: Any])
        return (try #require(object["logGroupName"] as? String), try #require(object["logStreamName"] as? String),
                try #require(object["logEvents"] as? [[String: Any]]))
    }

    // MARK: PutLogEvents limits, one test each

    @Test func atMostTenThousandEventsPerCall() throws {
        let result = batch(events(Array(repeating: 10, count: 10_001)))
        #expect(result.payloads.map(\.records.count) == [10_000, 1])
        #expect(try request(result.payloads[0]).events.count == 10_000)
        #expect(result.unsendable.isEmpty)
    }

    @Test func atMostOneMebibyteCountingTwentySixBytesPerEvent() throws {
        // 10 events of 104,831 + 26 bytes fill 1,048,570 bytes; one more does not fit.
        let result = batch(events(Array(repeating: 104_831, count: 11)))
        #expect(result.payloads.map(\.records.count) == [10, 1])
        for payload in result.payloads {
            let counted = try request(payload).events.reduce(0) { $0 + (($1["message"] as? String)?.utf8.count ?? 0) + 26 }
            #expect(counted <= 1_048_576)
            #expect(payload.rawBytes == counted)
        }
        // Exactly at the limit is one call.
        let exact = batch(events([1_048_576 / 2 - 26, 1_048_576 / 2 - 26]))
        #expect(exact.payloads.map(\.records.count) == [2])
    }

    @Test func eventsAreSentInChronologicalOrder() throws {
        let times: [Int64] = [5, 1, 4, 1, 3].map { Self.now - 10_000 + $0 }
        let result = batch(events([1, 2, 3, 4, 5], times: times))
        #expect(result.payloads.count == 1)
        #expect(result.payloads[0].records == [1, 3, 4, 2, 0], "sorted by time; events of one time keep their order")
        let sent = try request(result.payloads[0]).events.map { ($0["timestamp"] as? NSNumber)?.int64Value ?? 0 }
        #expect(sent == sent.sorted())
    }

    @Test func oneCallSpansLessThanTwentyFourHours() {
        let hour: Int64 = 3_600_000
        let start = Self.now - 30 * hour
        let result = batch(events([1, 1, 1, 1], times: [start, start + 23 * hour, start + 24 * hour, start + 25 * hour]))
        #expect(result.payloads.map(\.records) == [[0, 1], [2, 3]])
    }

    @Test func anEventOverTheEventLimitIsNeverSent() {
        let result = batch(events([10, 1_048_576 - 26 + 1, 10]))
        #expect(result.payloads.map(\.records) == [[0, 2]])
        #expect(result.unsendable.map(\.record) == [1])
        #expect(result.unsendable.first?.reason.contains("1048576 bytes per event") == true)
    }

    @Test func eventsTooOldOrTooNewAreSetAsideWithTheReason() {
        let day: Int64 = 86_400_000
        let result = batch(events([1, 1, 1, 1], times: [Self.now - 15 * day, Self.now - 13 * day, Self.now + 3 * 3_600_000, Self.now]))
        #expect(result.payloads.map(\.records) == [[1], [3]], "13 days apart: two calls")
        #expect(result.unsendable.map(\.record) == [0, 2])
        #expect(result.unsendable[0].reason.contains("too old") && result.unsendable[1].reason.contains("too new"))
        // A group's shorter retention moves the limit.
        var short = PutLogEventsBatcher()
        short.limits.maxAgeMillis = 7 * day
        #expect(short.batch(events([1], times: [Self.now - 8 * day]), [0], nowMillis: Self.now).unsendable.first?.reason.contains("7 days") == true)
    }

    @Test func oneCallPerStream() throws {
        let result = batch(events([1, 1, 1, 1], streams: [0, 1, 0, 1]))
        #expect(result.payloads.map(\.records) == [[0, 2], [1, 3]])
        #expect(try request(result.payloads[1]).stream == "gateway-1")
        #expect(try request(result.payloads[0]).group == "/sluice/governance")
    }

    // MARK: Answers

    @Test func rejectedEventsAreReadByPosition() throws {
        let body = #"{"nextSequenceToken":"1","rejectedLogEventsInfo":{"tooOldLogEventEndIndex":1,"tooNewLogEventStartIndex":4}}"#
        let response = CloudWatchLogsResponse(ScriptedHTTPTransport.response(200, body))
        let results = try #require(response.rejected(count: 5, retentionDays: 0))
        #expect(results[2] == .delivered && results[3] == .delivered)
        guard case .refused(let old) = results[0], case .refused = results[1], case .refused(let new) = results[4] else {
            Issue.record("\(results)")
            return
        }
        #expect(old.contains("too old") && new.contains("too new"))
        #expect(CloudWatchLogsResponse(ScriptedHTTPTransport.response(200, #"{"nextSequenceToken":"1"}"#)).rejected(count: 5, retentionDays: 0) == nil)
    }

    @Test func errorsAreReadFromTheTypeAndFromXML() {
        let qualified = CloudWatchLogsResponse(ScriptedHTTPTransport.response(400, #"{"__type":"com.amazonaws.logs#ResourceNotFoundException","message":"The specified log stream does not exist."}"#))
        #expect(qualified.errorType == "ResourceNotFoundException" && qualified.kind == .missingStream)
        let header = CloudWatchLogsResponse(ScriptedHTTPTransport.response(400, "{}", headers: [("x-amzn-ErrorType", "ThrottlingException:http://internal.amazon.com/")]))
        #expect(header.errorType == "ThrottlingException" && header.kind == .retry)
        let xml = CloudWatchLogsResponse(ScriptedHTTPTransport.response(403, "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error></ErrorResponse>"))
        #expect(xml.kind == .credentialsRefused && xml.summary.contains("SignatureDoesNotMatch: The request signature"))
        #expect(CloudWatchLogsResponse(ScriptedHTTPTransport.response(400, #"{"__type":"ExpiredTokenException"}"#)).kind == .expiredCredentials)
        #expect(CloudWatchLogsResponse(ScriptedHTTPTransport.response(400, #"{"__type":"InvalidParameterException","message":"Log event too large"}"#)).kind == .badEvent)
        #expect(CloudWatchLogsResponse(ScriptedHTTPTransport.response(503, "busy")).kind == .retry)
    }

    // MARK: Messages

    static let logs = #"{"resourceLogs":[{"resource":{"attributes":[{"key":"k8s.pod.name","value":{"stringValue":"gateway-7f9c"}},{"key":"aws.ecs.task.id","value":{"stringValue":"t-1"}}]},"scopeLogs":[{"logRecords":[{"timeUnixNano":"1796000000123456789","severityNumber":13,"severityText":"WARN","traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","body":{"stringValue":"blocked by pii-guard"},"attributes":[{"key":"event_id","value":{"stringValue":"evt-1"}},{"key":"action","value":{"stringValue":"block"}},{"key":"tokens","value":{"intValue":"42"}}]}]}]}]}"#

    @Test func messagesCarryTheGatewaysFieldsAtTheTop() throws {
        let batch = try OTLPBatch.decode(json: Array(Self.logs.utf8), signal: .logs)
        let group = try NameTemplate.parse("/sluice/{TaskId}", kind: .group).get()
        let stream = NameTemplate.parse("{k8s.pod.name}:{missing}", kind: .stream)
        #expect(throws: NameTemplate.Problem.self) { try stream.get() }
        let encoder = LogEventEncoder(logGroup: group, logStream: try NameTemplate.parse("pod-{k8s.pod.name}-{missing}", kind: .stream).get(), rawLog: false)
        let output = encoder.encode([batch], nowMillis: Self.now)
        #expect(output.streams == [LogStreamName(group: "/sluice/t-1", stream: "pod-gateway-7f9c-undefined")])
        #expect(output.timestamps == [1_796_000_000_123])
        let event = try #require(try JSONSerialization.jsonObject(with: Data(output.records.bytes)) as? [String: Any])
        let text = try #require(event["message"] as? String)
        #expect(output.messageBytes == [text.utf8.count])
        let message = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(message["action"] as? String == "block" && message["event_id"] as? String == "evt-1")
        #expect(message["body"] as? String == "blocked by pii-guard")
        #expect(message["severity_text"] as? String == "WARN" && message["severity_number"] as? Int == 13)
        #expect(message["trace_id"] as? String == "5b8efff798038103d269b633813fc60c")
        #expect((message["attributes"] as? [String: Any])?["tokens"] as? Int == 42)
        #expect((message["resource"] as? [String: Any])?["k8s.pod.name"] as? String == "gateway-7f9c")

        let raw = LogEventEncoder(logGroup: group, logStream: try NameTemplate.parse("s", kind: .stream).get(), rawLog: true).encode([batch], nowMillis: Self.now)
        let rawEvent = try #require(try JSONSerialization.jsonObject(with: Data(raw.records.bytes)) as? [String: Any])
        #expect(rawEvent["message"] as? String == "blocked by pii-guard")
    }

    @Test func placeholderValuesAreMadeValidNames() throws {
        let group = try NameTemplate.parse("/g/{k8s.pod.name}", kind: .group).get()
        let batch = try OTLPBatch.decode(json: Array(#"{"resourceLogs":[{"resource":{"attributes":[{"key":"k8s.pod.name","value":{"stringValue":"a:b*c d"}}]},"scopeLogs":[]}]}"#.utf8), signal: .logs)
        var name = ""
        batch.withLogs { name = group.render($0.resourceLogs[0].resource?.attributes) }
        #expect(name == "/g/a_b_c_d")
        #expect(throws: NameTemplate.Problem.self) { try NameTemplate.parse("bad group!", kind: .group).get() }
        #expect(throws: NameTemplate.Problem.self) { try NameTemplate.parse("{open", kind: .stream).get() }
    }

    // MARK: The section

    func parse(_ section: String, environment: [String: String] = ["AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret-example"]) -> (CloudWatchLogsConfig?, [ConfigDiagnostic]) {
        let (config, problems, _) = parseWithWarnings(section, environment: environment)
        return (config, problems)
    }

    func parseWithWarnings(_ section: String, environment: [String: String] = ["AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret-example"]) -> (CloudWatchLogsConfig?, [ConfigDiagnostic], [ConfigDiagnostic]) {
        let (map, diagnostics) = exporterSection("awscloudwatchlogs", section)
        guard let map else { return (nil, diagnostics.all, []) }
        let config = CloudWatchLogsConfig(map, environment: environment)
        return (config, diagnostics.all, diagnostics.warnings)
    }

    @Test func mistakesAreNamedByKey() {
        let (none, problems) = parse("log_retention: 10\nemf_only: true\ntags: {\"aws:x\": y}", environment: [:])
        #expect(none == nil)
        let text = problems.map(\.description).joined(separator: "\n")
        for expected in ["log_group_name: missing", "log_stream_name: missing", "log_retention: 10 is not a retention",
                         "emf_only", "tags: tag key 'aws:x'"] {
            #expect(text.contains(expected), "\(expected) not in \(text)")
        }
        #expect(!text.contains("credentials") && !text.contains("region"), "credentials and the region are the pod's, not the file's: validate does not require them")
        let (_, gzip) = parse("log_group_name: g\nlog_stream_name: s\nregion: eu-west-1\ncompression: gzip")
        #expect(gzip.contains { $0.path.hasSuffix("compression") })
    }

    @Test func theCollectorsKeysAreReadOrNamed() throws {
        let (config, problems, warnings) = parseWithWarnings("""
        log_group_name: /sluice/governance
        log_stream_name: "{k8s.pod.name}"
        region: eu-west-1
        endpoint: logs.eu-west-1.amazonaws.com
        log_retention: 30
        tags: {team: security}
        raw_log: true
        role_arn: arn:aws:iam::123456789012:role/sluice
        max_retries: 3
        request_timeout_seconds: 5
        """)
        #expect(problems.isEmpty, "\(problems)")
        let c = try #require(config)
        #expect(c.endpoint.description == "https://logs.eu-west-1.amazonaws.com")
        #expect(c.stsEndpoint.description == "https://sts.eu-west-1.amazonaws.com")
        #expect(c.retentionDays == 30 && c.rawLog && c.tags.map(\.0) == ["team"])
        #expect(c.roleARN == "arn:aws:iam::123456789012:role/sluice")
        #expect(warnings.contains { $0.path.hasSuffix("max_retries") && $0.message.contains("has no effect") })
        #expect(c.http.client.requestTimeout == .seconds(5))
        #expect(c.secrets == ["secret-example"])
    }

    @Test func credentialsAreLookedForInTheSDKsOrder() {
        let env = ["AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
                   "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"]
        let own = AWSCredentials(accessKeyID: "AKIACONFIG", secretAccessKey: "c")
        #expect(AWSCredentialSource.resolve(config: own, environment: env) == .config(own))
        #expect(AWSCredentialSource.resolve(config: nil, environment: env) == .environment(AWSCredentials(accessKeyID: "AKIAENV", secretAccessKey: "s")))
        var rest = env
        rest["AWS_ACCESS_KEY_ID"] = nil
        guard case .webIdentity(let role, let file, _)? = AWSCredentialSource.resolve(config: nil, environment: rest) else {
            Issue.record("web identity expected")
            return
        }
        #expect(role == "arn:aws:iam::1:role/r" && file == "/var/run/token")
        rest["AWS_ROLE_ARN"] = nil
        #expect(AWSCredentialSource.resolve(config: nil, environment: rest) == .container(uri: "http://169.254.170.23/v1/credentials", tokenFile: nil, token: nil))
        #expect(AWSCredentialSource.resolve(config: nil, environment: [:]) == nil)
    }

    // MARK: Credentials

    @Test func webIdentityCredentialsAreFetchedAgainBeforeTheyExpire() async throws {
        let token = FileManager.default.temporaryDirectory.appendingPathComponent("web-identity-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try "first-token".write(to: token, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: token) }
        let clock = Mutex<UInt64>(1_796_000_000)
        let issued = Mutex(0)
        let sts = ScriptedHTTPTransport { request in
            let body = request.body.map { String(buffer: $0) } ?? ""
            let n = issued.withLock { $0 += 1; return $0 }
            // Valid for one hour from the fake clock's time.
            let expiry = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(clock.withLock { $0 } + 3600)))
            return ScriptedHTTPTransport.response(200, """
            <AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>
            <AccessKeyId>ASIA\(n)</AccessKeyId><SecretAccessKey>secret\(n)</SecretAccessKey><SessionToken>token\(n)&amp;x</SessionToken>
            <Expiration>\(expiry)</Expiration></Credentials><!-- \(body.contains("WebIdentityToken=second-token") ? "second" : "first") --></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>
            """)
        }
        let provider = AWSCredentialsProvider(
            source: .webIdentity(roleARN: "arn:aws:iam::1:role/r", tokenFile: token.path, sessionName: "s"), roleARN: nil,
            sts: AWSSecurityTokenService(endpoint: HTTPEndpoint("http://sts.test")!, region: "eu-west-1"),
            transport: { _ in sts }, now: { clock.withLock { $0 } })
        let first = try await provider.credentials()
        #expect(first.accessKeyID == "ASIA1" && first.sessionToken == "token1&x")
        #expect(try await provider.credentials() == first, "kept while valid")
        // Five minutes before expiry they are fetched again, with the token file read again.
        try "second-token".write(to: token, atomically: true, encoding: .utf8)
        clock.withLock { $0 += 3600 - 299 }
        let second = try await provider.credentials()
        #expect(second.accessKeyID == "ASIA2")
        let sent = sts.requests.map { $0.body.map { String(buffer: $0) } ?? "" }
        #expect(sent.count == 2 && sent[0].contains("Action=AssumeRoleWithWebIdentity") && sent[0].contains("WebIdentityToken=first-token"))
        #expect(sent[1].contains("WebIdentityToken=second-token"))
        #expect(sts.requests[0].headers["Authorization"].isEmpty, "AssumeRoleWithWebIdentity is not signed")
    }

    @Test func refusalsArePermanentAndOutagesAreNot() async {
        let refusing = ScriptedHTTPTransport { _ in
            ScriptedHTTPTransport.response(403, "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>Couldn't verify</Message></Error></ErrorResponse>")
        }
        let token = FileManager.default.temporaryDirectory.appendingPathComponent("web-identity-refused-\(getpid())")
        try? "t".write(to: token, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: token) }
        let sts = AWSSecurityTokenService(endpoint: HTTPEndpoint("http://sts.test")!, region: "eu-west-1")
        let refused = AWSCredentialsProvider(source: .webIdentity(roleARN: "arn:aws:iam::1:role/r", tokenFile: token.path, sessionName: "s"),
                                             roleARN: nil, sts: sts, transport: { _ in refusing })
        do {
            _ = try await refused.credentials()
            Issue.record("credentials from a refused token")
        } catch {
            #expect(error.permanent && error.message.contains("InvalidIdentityToken: Couldn't verify"))
        }
        let down = ScriptedHTTPTransport { _ in ScriptedHTTPTransport.response(503, "") }
        let agent = AWSCredentialsProvider(source: .container(uri: "http://169.254.170.23/v1/credentials", tokenFile: nil, token: "agent-token"),
                                           roleARN: nil, sts: sts, transport: { _ in down })
        do {
            _ = try await agent.credentials()
            Issue.record("credentials from an agent that is down")
        } catch {
            #expect(!error.permanent)
        }
        #expect(down.requests.first?.headers["Authorization"] == ["agent-token"])
    }
}

import Testing
import SluiceOTLP
@testable import SluiceOTTL

/// One gateway log record with a map attribute, a list, a map body, a severity and
/// an event name; and one span. Conditions are evaluated directly against them.
enum Records {
    static let logJSON = """
    {"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"ai-gateway"}},
      {"key":"k8s.namespace.name","value":{"stringValue":"prod"}}]},
      "scopeLogs":[{"scope":{"name":"gateway.audit","version":"1.2"},"logRecords":[{
        "timeUnixNano":"1763712000000000000","severityNumber":13,"severityText":"WARN","eventName":"decision",
        "body":{"kvlistValue":{"values":[{"key":"reason","value":{"stringValue":"prompt injection"}},
                                          {"key":"score","value":{"doubleValue":0.97}}]}},
        "attributes":[{"key":"action","value":{"stringValue":"block"}},
                      {"key":"tokens","value":{"intValue":"1200"}},
                      {"key":"latency","value":{"doubleValue":12.5}},
                      {"key":"cached","value":{"boolValue":false}},
                      {"key":"digest","value":{"bytesValue":"AQI="}},
                      {"key":"user","value":{"kvlistValue":{"values":[{"key":"id","value":{"stringValue":"u-42"}},
                                                                         {"key":"tier","value":{"stringValue":"gold"}}]}}},
                      {"key":"models","value":{"arrayValue":{"values":[{"stringValue":"gpt-x"},{"stringValue":"claude-y"}]}}},
                      {"key":"path","value":{"stringValue":"/v1/chat/completions"}}]}]}]}]}
    """

    static let spanJSON = """
    {"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"ai-gateway"}}]},
      "scopeSpans":[{"scope":{"name":"gateway.http"},"spans":[{
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /healthz","kind":2,
        "startTimeUnixNano":"1763712000000000000","endTimeUnixNano":"1763712000005000000",
        "attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}],
        "status":{"code":2,"message":"upstream timeout"}}]}]}]}
    """

    static func logs() throws -> OTLPBatch { try OTLPBatch.decode(json: Array(logJSON.utf8), signal: .logs) }
    static func spans() throws -> OTLPBatch { try OTLPBatch.decode(json: Array(spanJSON.utf8), signal: .traces) }
}

/// Evaluates `condition` against the sample log record.
func onLog(_ condition: String) throws -> Bool {
    let parsed = try OTTLCondition(condition, context: .log)
    let batch = try Records.logs()
    let matched: Bool? = try batch.withLogs { request in
        let (resource, scope, record) = request.records.first { _ in true }!
        return try parsed.matches(log: record, resource: resource.resource, scope: scope.scope)
    }
    return try #require(matched as Bool?)
}

func onSpan(_ condition: String) throws -> Bool {
    let parsed = try OTTLCondition(condition, context: .span)
    let batch = try Records.spans()
    let matched: Bool? = try batch.withTraces { request in
        let (resource, scope, span) = request.spans.first { _ in true }!
        return try parsed.matches(span: span, resource: resource.resource, scope: scope.scope)
    }
    return try #require(matched as Bool?)
}

/// The parse error of `condition` in `context`.
func syntaxError(_ condition: String, _ context: OTTLContext = .log) -> OTTLSyntaxError? {
    do {
        _ = try OTTLCondition(condition, context: context)
        return nil
    } catch {
        return error
    }
}

@Suite struct OTTLEvaluationTests {
    @Test(arguments: [
        #"attributes["action"] == "block""#,
        #"attributes["action"] != "allow""#,
        #"attributes["tokens"] > 1000"#,
        #"attributes["tokens"] >= 1200 and attributes["tokens"] <= 1200"#,
        #"attributes["tokens"] < 1200.5"#,                // int against float: as floats
        #"attributes["latency"] > 12"#,
        #"attributes["cached"] == false"#,
        #"attributes["cached"] < true"#,                   // false < true
        #"attributes["digest"] == 0x0102"#,
        #"attributes["user"]["id"] == "u-42""#,
        #"attributes["models"][1] == "claude-y""#,
        #"attributes["missing"] == nil"#,
        #"attributes["missing"]["deeper"] == nil"#,
        #"resource.attributes["k8s.namespace.name"] == "prod""#,
        #"instrumentation_scope.name == "gateway.audit""#,
        #"scope.version == "1.2""#,
        #"body["reason"] == "prompt injection""#,
        #"body["score"] > 0.9"#,
        #"severity_number >= SEVERITY_NUMBER_WARN"#,
        #"severity_number == SEVERITY_NUMBER_WARN"#,
        #"severity_number < SEVERITY_NUMBER_ERROR"#,
        #"severity_text == "WARN""#,
        #"event_name == "decision""#,
        #"log.attributes["action"] == "block""#,
        #"IsMatch(attributes["path"], "^/v1/(chat|embeddings)")"#,
        #"IsMatch(attributes["path"], "completions$")"#,
        #"IsMatch(attributes["tokens"], "^\\d{4}$")"#,      // an int matched as its text
        #"IsMatch(attributes["user"], "\"tier\":\"gold\"")"#, // a map as JSON
        #"IsMatch(body["reason"], "(?i)PROMPT\\s+INJECTION")"#,
        #"not attributes["action"] == "allow""#,
        #"not (attributes["action"] == "allow" or attributes["tokens"] < 10)"#,
        #"attributes["action"] == "allow" or attributes["action"] == "block""#,
        #"true"#,
        #"IsMatch(attributes["path"], "chat") == true"#,
        #""abc" < "abd""#,
        #""ab" < "abc""#,
        #"-1 < +1"#,
        #"-.5 < .5"#,
        #"nil == nil"#,
        #"attributes["action"] != 1"#,                    // different types: not equal
        #"attributes["user"] != attributes["user"]"#,     // maps only compare as not equal
    ])
    func logConditionsThatMatch(_ condition: String) throws {
        #expect(try onLog(condition), "\(condition)")
    }

    @Test(arguments: [
        #"attributes["action"] == "allow""#,
        #"attributes["action"] == nil"#,
        #"attributes["missing"] != nil"#,
        #"attributes["tokens"] == "1200""#,               // int and string: not equal
        #"attributes["tokens"] < "2000""#,                // different types: every other operator false
        #"attributes["missing"] < 1"#,
        #"nil < nil"#,
        #"nil <= nil"#,
        #"false"#,
        #"not true"#,
        #"IsMatch(attributes["missing"], ".*")"#,          // nil never matches
        #"IsMatch(attributes["path"], "^/healthz")"#,
        #"IsMatch(attributes["path"], "CHAT")"#,           // case counts without (?i)
        #"severity_number > SEVERITY_NUMBER_WARN4"#,
        #"attributes["action"] == "block" and attributes["cached"] == true"#,
        #"resource.attributes["service.name"] == "other""#,
    ])
    func logConditionsThatDoNotMatch(_ condition: String) throws {
        #expect(try !onLog(condition), "\(condition)")
    }

    @Test(arguments: [
        #"name == "GET /healthz""#,
        #"kind == SPAN_KIND_SERVER"#,
        #"kind != SPAN_KIND_CLIENT"#,
        #"status.code == STATUS_CODE_ERROR"#,
        #"status.message == "upstream timeout""#,
        #"attributes["http.response.status_code"] == 200"#,
        #"span.name == "GET /healthz""#,
        #"resource.attributes["service.name"] == "ai-gateway""#,
        #"instrumentation_scope.name == "gateway.http""#,
        #"end_time_unix_nano - 0 > 0"#,
    ])
    func spanConditions(_ condition: String) throws {
        if condition.contains(" - ") {
            // No arithmetic in the subset: it is refused at parse time, not misread.
            #expect(syntaxError(condition, .span) != nil)
            return
        }
        #expect(try onSpan(condition), "\(condition)")
    }

    @Test func resourceContextReadsTheResource() throws {
        let condition = try OTTLCondition(#"attributes["k8s.namespace.name"] == "prod""#, context: .resource)
        let batch = try Records.logs()
        let matched = try batch.withLogs { try condition.matches(resource: $0.resourceLogs[0].resource) }
        #expect(matched == true)
        #expect(try condition.matches(resource: nil) == false)
    }

    @Test func keysOnValuesThatHaveNoneAreEvaluationErrors() throws {
        #expect(throws: OTTLEvaluationError.self) { try onLog(#"attributes["action"]["x"] == nil"#) }
        #expect(throws: OTTLEvaluationError.self) { try onLog(#"attributes["models"][5] == nil"#) }
        #expect(throws: OTTLEvaluationError.self) { try onLog(#"attributes["user"][0] == nil"#) }
        do {
            _ = try onLog(#"attributes["action"]["x"] == nil"#)
        } catch let error as OTTLEvaluationError {
            #expect(error.message == #"type Str does not support string indexing (key "x")"#)
        }
        // Short-circuit: the failing side is never read once the left decides.
        #expect(try onLog(#"attributes["action"] == "block" or attributes["action"]["x"] == nil"#))
    }

    @Test func routeStatements() throws {
        let routed = try OTTLCondition(statement: #"route() where attributes["action"] == "block""#, editor: "route", context: .log)
        let always = try OTTLCondition(statement: "route()", editor: "route", context: .log)
        let batch = try Records.logs()
        try batch.withLogs { request throws in
            let (resource, scope, record) = request.records.first { _ in true }!
            #expect(try routed.matches(log: record, resource: resource.resource, scope: scope.scope))
            #expect(try always.matches(log: record, resource: resource.resource, scope: scope.scope))
        }
        #expect(throws: OTTLSyntaxError.self) { try OTTLCondition(statement: #"set(attributes["x"], 1)"#, editor: "route", context: .log) }
    }
}

@Suite struct OTTLSyntaxErrorTests {
    /// Each bad condition, the column (from 1) the error points at and its message.
    @Test(arguments: [
        (#"attributes["action"] == "#, 25, "expected a value after ==, found the end of the condition"),
        (#"attributes["action"] = "block""#, 22, "'=' is not an operator; compare with ==, !=, <, <=, > or >="),
        (#"attributes["action"] == "block"#, 25, "the string opened here has no closing \""),
        (#"attributes["action"]"#, 21, #"expected a comparison operator (==, !=, <, <=, >, >=) after attributes["action"], found the end of the condition"#),
        (#"attributes["action"] == "block" and"#, 36, "expected a condition: a comparison, true, false or IsMatch(…), found the end of the condition"),
        (#"(attributes["a"] == 1"#, 22, "expected ) to close the (, or and/or, found the end of the condition"),
        (#"attributes["a"] == 1 xor true"#, 22, "expected and, or, or the end of the condition, found 'xor'"),
        (#"attribute["a"] == 1"#, 1, "unknown path attribute in the log context; known: attributes, body, severity_number, severity_text, event_name, time_unix_nano, observed_time_unix_nano, flags, dropped_attributes_count, resource.attributes, resource.dropped_attributes_count, instrumentation_scope.name, instrumentation_scope.version, instrumentation_scope.attributes"),
        (#"severity_number >= SEVERITY_NUMBER_WARNING"#, 20, "unknown enum SEVERITY_NUMBER_WARNING; known: SEVERITY_NUMBER_DEBUG, SEVERITY_NUMBER_DEBUG2, SEVERITY_NUMBER_DEBUG3, SEVERITY_NUMBER_DEBUG4, SEVERITY_NUMBER_ERROR, SEVERITY_NUMBER_ERROR2, SEVERITY_NUMBER_ERROR3, SEVERITY_NUMBER_ERROR4, SEVERITY_NUMBER_FATAL, SEVERITY_NUMBER_FATAL2, SEVERITY_NUMBER_FATAL3, SEVERITY_NUMBER_FATAL4, SEVERITY_NUMBER_INFO, SEVERITY_NUMBER_INFO2, SEVERITY_NUMBER_INFO3, SEVERITY_NUMBER_INFO4, SEVERITY_NUMBER_TRACE, SEVERITY_NUMBER_TRACE2, SEVERITY_NUMBER_TRACE3, SEVERITY_NUMBER_TRACE4, SEVERITY_NUMBER_UNSPECIFIED, SEVERITY_NUMBER_WARN, SEVERITY_NUMBER_WARN2, SEVERITY_NUMBER_WARN3, SEVERITY_NUMBER_WARN4"),
        (#"IsMatch(body, "(?=x)")"#, 1, "IsMatch: the group (?=… is not supported by Sluice's regular expressions (POSIX extended, with \\d \\w \\s, (?:…), a leading (?i)); rewrite the pattern without it"),
        (#"IsMatch(body, "[a-")"#, 1, "IsMatch: a [ in the pattern has no closing ]"),
        (#"Len(body) > 3"#, 1, "unknown function Len; Sluice's conditions have IsMatch(value, \"regex\")"),
        (#"IsMatch(body)"#, 1, "IsMatch takes two arguments, a value and a pattern in quotes, not 1"),
        (#"IsMatch(body, attributes["p"])"#, 15, "IsMatch's pattern must be a string in quotes"),
        (#"severity_text["x"] == 1"#, 1, "severity_text is not a map or a list and takes no [key]"),
        (#"attributes[x] == 1"#, 12, "expected a key in quotes (\"name\") or a list index (0), found 'x'"),
        (#"attributes["é"] == é"#, 20, "unexpected character 'é'"),
        (#"1 + 1 == 2"#, 3, "'+' is not part of OTTL's conditions (no arithmetic in Sluice's subset)"),
        (#""#, 1, "expected a condition, found the end of the condition"),
        (#"99999999999999999999 > 1"#, 1, "99999999999999999999 does not fit a 64-bit integer"),
    ])
    func errorsPointAtTheToken(_ condition: String, _ column: Int, _ message: String) throws {
        let error = try #require(syntaxError(condition))
        #expect(error.scalarOffset + 1 == column, "\(condition): \(error)")
        #expect(error.message == message)
    }

    @Test func pathsDependOnTheContext() throws {
        #expect(syntaxError(#"name == "x""#, .log)?.message.hasPrefix("unknown path name in the log context") == true)
        #expect(syntaxError(#"body == "x""#, .span)?.message.hasPrefix("unknown path body in the span context") == true)
        #expect(syntaxError("severity_number == SEVERITY_NUMBER_WARN", .span) != nil)
        #expect(syntaxError("kind == SPAN_KIND_SERVER", .log)?.message.hasPrefix("unknown path kind") == true)
        #expect(syntaxError(#"spanevent.name == "x""#, .span)?.message == "span events cannot be filtered by Sluice; write conditions on the span")
        #expect(syntaxError(#"body["x"] == 1"#, .resource) != nil)
        #expect(syntaxError(#"resource.attributes["x"] == 1"#, .resource) == nil)
    }
}

@Suite struct RegexTranslationTests {
    @Test(arguments: [
        ("^\\d+$", "1234", true), ("^\\d+$", "12a4", false),
        ("\\w+@\\w+\\.com", "mail bob@corp.com now", true),
        ("[\\w.-]+@example\\.org", "a.b-c@example.org", true),
        ("^[\\w.-]+@example\\.org", "a\\b@example.org", false),   // the backslash is not in the class
        ("(?:ab)+c", "ababc", true),
        ("a.*?b", "axxb", true),
        ("(?i)^health", "HEALTHZ", true),
        ("^health", "HEALTHZ", false),
        ("\\bblock\\b", "a block here", true),
        ("\\bblock\\b", "blocked", false),
        ("[^\\s]+", "   ", false),
        ("a\\/b", "a/b", true),
        ("", "anything", true),
        ("x{2}", "axxb", true),
        ("[]a]", "]", true),
        ("[a\\-]", "-", true),
    ])
    func re2PatternsMeanTheSame(_ pattern: String, _ input: String, _ expected: Bool) throws {
        let regex = try POSIXRegex(Array(pattern.utf8))
        #expect(regex.matches(Array(input.utf8)) == expected, "\(pattern) on \(input)")
    }

    @Test func constructsWithoutAFaithfulRewriteAreRefused() {
        for pattern in ["[a\\-z]", "(?P<name>x)", "\\p{Greek}", "a(?i)b", "(?!x)"] {
            #expect(throws: POSIXRegex.RegexError.self, "\(pattern)") { try POSIXRegex(Array(pattern.utf8)) }
        }
    }

    @Test func matchesBytesWithoutATerminatingNul() throws {
        let regex = try POSIXRegex(Array("end$".utf8))
        let bytes: [UInt8] = Array("the end".utf8) + Array("ing".utf8)
        bytes.withUnsafeBufferPointer { all in
            #expect(regex.matches(UnsafeBufferPointer(rebasing: all[0..<7])))
            #expect(!regex.matches(all))
        }
    }
}

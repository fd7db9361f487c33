import Foundation
@testable import SluiceOTLP

/// Payloads built by hand for the tests that need exact bytes.
enum Payloads {
    /// One gateway governance event, in OTLP/JSON.
    static let gatewayEventJSON = #"""
    {"resourceLogs":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"ai-gateway"}},
        {"key":"host.name","value":{"stringValue":"gw-7f9c"}}]},
      "schemaUrl":"https://opentelemetry.io/schemas/1.26.0",
      "scopeLogs":[{"scope":{"name":"gateway.audit","version":"2.1.0"},
        "logRecords":[{
          "timeUnixNano":"1763712000123456789","observedTimeUnixNano":1763712000223456789,
          "severityNumber":"SEVERITY_NUMBER_WARN","severityText":"WARN",
          "body":{"stringValue":"request blocked by policy pii-guard"},
          "eventName":"gateway.decision",
          "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","flags":1,
          "attributes":[
            {"key":"event_id","value":{"stringValue":"evt-0001"}},
            {"key":"event_type","value":{"stringValue":"blocked"}},
            {"key":"action","value":{"stringValue":"block"}},
            {"key":"policy_name","value":{"stringValue":"pii-guard"}},
            {"key":"model","value":{"stringValue":"gpt-4o"}},
            {"key":"gateway_id","value":{"stringValue":"gw-eu-1"}},
            {"key":"user_id","value":{"stringValue":"u-42"}},
            {"key":"org_id","value":{"stringValue":"org-7"}},
            {"key":"tokens","value":{"intValue":"-9223372036854775808"}},
            {"key":"score","value":{"doubleValue":0.25}},
            {"key":"cached","value":{"boolValue":false}},
            {"key":"digest","value":{"bytesValue":"3q2+7w=="}},
            {"key":"tags","value":{"arrayValue":{"values":[{"stringValue":"pii"},{"intValue":7},{}]}}},
            {"key":"metadata","value":{"kvlistValue":{"values":[{"key":"région","value":{"stringValue":"東京 🚀"}}]}}},
            {"key":"","value":{"stringValue":""}}
          ]}]}]}]}
    """#

    /// `levels` AnyValue → kvlist → KeyValue → AnyValue … levels as protobuf, in a
    /// log record's body. Built back to front in one buffer, so 100,000 levels cost
    /// linear time (wrapping copies would be quadratic).
    static func nestedKVListProtobuf(levels: Int) -> [UInt8] {
        var reversed: [UInt8] = [0x78, 0x01, 0x0A]  // AnyValue { string_value: "x" }
        func wrap(_ number: UInt64) { reversed += (varint(number << 3 | 2) + varint(UInt64(reversed.count))).reversed() }
        func prepend(_ bytes: [UInt8]) { reversed += bytes.reversed() }
        for _ in 0..<levels {
            wrap(2); prepend([0x0A, 0x01, 0x6B])  // KeyValue { key: "k", value }
            wrap(1)                                // KeyValueList { values }
            wrap(6)                                // AnyValue { kvlist_value }
        }
        wrap(5)                                    // LogRecord { body }
        wrap(2)                                    // ScopeLogs { log_records }
        wrap(2)                                    // ResourceLogs { scope_logs }
        wrap(1)                                    // Request { resource_logs }
        return reversed.reversed()
    }

    /// A length-delimited field.
    static func field(_ number: UInt64, _ payload: [UInt8]) -> [UInt8] {
        varint(number << 3 | 2) + varint(UInt64(payload.count)) + payload
    }

    static func varint(_ value: UInt64) -> [UInt8] {
        var v = value
        var out: [UInt8] = []
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        out.append(UInt8(v))
        return out
    }

    static func nestedKVListJSON(levels: Int) -> [UInt8] {
        var s = #"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":"#
        s += String(repeating: #"{"kvlistValue":{"values":[{"key":"k","value":"#, count: levels)
        s += #"{"stringValue":"x"}"#
        s += String(repeating: "}]}}", count: levels)
        s += "}]}]}]}"
        return Array(s.utf8)
    }

    static func fixture(_ name: String) throws -> [UInt8] {
        guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures") else {
            throw FixtureMissing(name: name)
        }
        return Array(try Data(contentsOf: url))
    }

    struct FixtureMissing: Error { let name: String }
}

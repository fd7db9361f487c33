import Testing
@testable import SluiceComponents
import SluiceCore

@Suite struct IntegrityCanonicalFormTests {
    static let event = #"""
    {"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"gw"}},{"key":"action","value":{"stringValue":"resource-loses"}},{"key":"com.splunk.index","value":{"stringValue":"x"}}]},
      "scopeLogs":[{"logRecords":[{"timeUnixNano":"1763712000123500000","severityNumber":13,"severityText":"WARN","eventName":"gateway.decision",
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"0000000000000000","body":{"stringValue":"line\n\"quoted\" é"},
        "attributes":[{"key":"action","value":{"stringValue":"block"}},{"key":"tokens","value":{"kvlistValue":{"values":[{"key":"prompt","value":{"intValue":"12"}}]}}},
          {"key":"rules","value":{"arrayValue":{"values":[{"stringValue":"email"},{"intValue":"7"},{}]}}},{"key":"nested","value":{"arrayValue":{"values":[{"arrayValue":{}}]}}},
          {"key":"score","value":{"doubleValue":2.0}},{"key":"ratio","value":{"doubleValue":0.1}},{"key":"cached","value":{"boolValue":false}},
          {"key":"digest","value":{"bytesValue":"3q2+7w=="}},{"key":"unset","value":{}},{"key":"","value":{"stringValue":"no name"}},
          {"key":"integrity_hash","value":{"stringValue":"sha256:old"}}]}]}]}]}
    """#

    @Test func theCanonicalFormIsTheDocumentedOne() throws {
        let batch = try OTLPBatch.decode(json: Array(Self.event.utf8), signal: .logs)
        var encoder = IntegrityCanonicalForm()
        let canonical = batch.withLogs { request -> String in
            let (resourceLogs, _, record) = request.records.first { _ in true }!
            return String(decoding: encoder.encode(record, resource: resourceLogs.resource), as: UTF8.self)
        }
        #expect(canonical == #"{"@body":"line\n\"quoted\" é","@event_name":"gateway.decision","@severity_number":"13","@severity_text":"WARN","@time":"1763712000124","@trace_id":"5b8efff798038103d269b633813fc60c","action":"block","cached":"false","digest":"3q2+7w==","nested":"[[]]","ratio":"0.1","rules":["email","7"],"score":"2","service.name":"gw","tokens.prompt":"12"}"#)
    }

    @Test func keyedHashesDifferFromPlainOnes() {
        let canonical = Array("{}".utf8)
        #expect(IntegrityCanonicalForm.hash(canonical, key: nil) == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
        #expect(IntegrityCanonicalForm.hash(canonical, key: Array("k".utf8)).hasPrefix("hmac-sha256:"))
    }

    @Test func verifierReadsHECTimeDigitByDigit() {
        #expect(IntegrityVerifier.hecMillis(Array("1763712000.123".utf8)) == 1_763_712_000_123)
        #expect(IntegrityVerifier.hecMillis(Array("1763712000.1".utf8)) == 1_763_712_000_100)
        #expect(IntegrityVerifier.hecMillis(Array("1763712000".utf8)) == 1_763_712_000_000)
        #expect(IntegrityVerifier.hecMillis(Array("x".utf8)) == nil)
    }
}

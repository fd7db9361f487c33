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
          {"key":"score","value":{"doubleValue":2.0}},{"key":"ratio","value":{"doubleValue":0.1}},{"key":"cached","value":{"boolValue":false}},{"key":"delta","value":{"intValue":"-4"}},
          {"key":"digest","value":{"bytesValue":"3q2+7w=="}},{"key":"unset","value":{}},{"key":"","value":{"stringValue":"no name"}},
          {"key":"integrity_hash","value":{"stringValue":"sha256:old"}},{"key":"integrity_seq","value":{"intValue":"3"}}]}]}]}]}
    """#

    @Test func theCanonicalFormIsTheDocumentedOne() throws {
        let batch = try OTLPBatch.decode(json: Array(Self.event.utf8), signal: .logs)
        var encoder = IntegrityCanonicalForm()
        let canonical = batch.withLogs { request -> String in
            let (resourceLogs, _, record) = request.records.first { _ in true }!
            return String(decoding: encoder.encode(record, resource: resourceLogs.resource), as: UTF8.self)
        }
        #expect(canonical == #"{"@body":"line\n\"quoted\" é","@event_name":"gateway.decision","@severity_number":"13","@severity_text":"WARN","@time":"1763712000124","@trace_id":"5b8efff798038103d269b633813fc60c","action":"block","cached":"false","delta":"-4","digest":"3q2+7w==","nested":"[[]]","ratio":"0.1","rules":["email","7"],"score":"2","service.name":"gw","tokens.prompt":"12"}"#)
    }

    @Test func ofEqualKeysTheLastAddedWinsWhateverTheRecordBefore() {
        var encoder = IntegrityCanonicalForm()
        for key in ["c", "b", "a"] { encoder.addText(Array(key.utf8), Array("v".utf8)) }
        #expect(String(decoding: encoder.serialise(), as: UTF8.self) == #"{"a":"v","b":"v","c":"v"}"#)
        // As many fields as the record before, so the sort starts from its order.
        encoder.reset()
        for (key, value) in [("k", "resource"), ("j", "x"), ("k", "record")] { encoder.addText(Array(key.utf8), Array(value.utf8)) }
        #expect(String(decoding: encoder.serialise(), as: UTF8.self) == #"{"j":"x","k":"record"}"#)
    }

    @Test func longValuesGrowTheBufferAndCopiesKeepTheirOwn() {
        var encoder = IntegrityCanonicalForm()
        let long = String(repeating: "x", count: 5000)
        encoder.addText(Array("a".utf8), Array(long.utf8))
        encoder.addText(Array("b".utf8), Array("tab\there".utf8))
        #expect(String(decoding: encoder.serialise(), as: UTF8.self) == #"{"a":""# + long + #"","b":"tab\there"}"#)
        var copy = encoder
        copy.addText(Array("c".utf8), Array("only in the copy".utf8))
        let copied = copy.serialise()
        #expect(String(decoding: copied, as: UTF8.self).hasSuffix(#","c":"only in the copy"}"#))
        #expect(String(decoding: encoder.serialise(), as: UTF8.self).hasSuffix(#""b":"tab\there"}"#))
    }

    @Test func theLinkFormIsTheDocumentedOne() {
        let content = [UInt8](0..<32)
        var output = JSONOutput()
        var link = IntegrityCanonicalForm.ChainLink(stream: Array("gw/logs#1".utf8), seq: 2, prev: Array("sha256:ab".utf8))
        content.withUnsafeBufferPointer { IntegrityCanonicalForm.writeLink(content: $0, link, into: &output) }
        #expect(String(decoding: output.bytes, as: UTF8.self) == #"{"@content":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f","integrity_prev":"sha256:ab","integrity_seq":"2","integrity_stream":"gw/logs#1"}"#)
        link.previousRun = (Array("gw/logs#0".utf8), 7)
        content.withUnsafeBufferPointer { IntegrityCanonicalForm.writeLink(content: $0, link, into: &output) }
        #expect(String(decoding: output.bytes, as: UTF8.self) == #"{"@content":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f","integrity_prev":"sha256:ab","integrity_prev_seq":"7","integrity_prev_stream":"gw/logs#0","integrity_seq":"2","integrity_stream":"gw/logs#1"}"#)
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

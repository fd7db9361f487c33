import Foundation
import Testing
@testable import SluiceOTLP

/// Strings are generated as bytes (string_as_bytes, scripts/generate-proto.sh), so
/// `MessageSchema` tells real `bytes` fields from strings by name: the names must
/// be exactly the `bytes` fields proto/ publishes.
@Suite struct SchemaTests {
    @Test func theBinaryFieldsAreTheOnesProtoDeclaresAsBytes() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let protos = try #require(FileManager.default.enumerator(at: root.appendingPathComponent("proto"), includingPropertiesForKeys: nil))
        var declared: Set<String> = []
        let field = try Regex(#"^\s*(?:repeated\s+)?bytes\s+(\w+)\s*="#)
        for case let url as URL in protos where url.pathExtension == "proto" {
            for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
                if let match = String(line).firstMatch(of: field), let name = match.output[1].substring { declared.insert(String(name)) }
            }
        }
        #expect(declared == Set(OTLPSchemas.binaryNames.map { String(decoding: $0, as: UTF8.self) }))
    }

    /// A value holding U+0000 keeps what follows it, in both codecs.
    @Test func aStringWithNULSurvivesJSONAndProtobuf() throws {
        let json = #"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"a\u0000b"},"attributes":[{"key":"k\u0000","value":{"stringValue":"\u0000"}}]}]}]}]}"#
        let batch = try OTLPBatch.decode(json: Array(json.utf8), signal: .logs)
        let again = try OTLPBatch.decode(protobuf: batch.encodeProtobuf(), signal: .logs)
        for decoded in [batch, again] {
            decoded.withLogs { logs in
                let record = logs.resourceLogs[0].scopeLogs[0].logRecords[0]
                if case .string(let text) = record.body?.value { #expect(Array(text.utf8) == [0x61, 0, 0x62]) } else { Issue.record("no string body") }
                #expect(Array(record.attributes[0].key.utf8) == [0x6B, 0])
            }
        }
        #expect(String(decoding: again.encodeJSON(), as: UTF8.self).contains(#""stringValue":"a\u0000b""#))
    }
}

import Testing
@testable import SluiceOTLP

@Suite struct BatchEditingTests {
    /// The gateway event decoded from protobuf with the request's bytes kept, as a
    /// disk log's pipeline decodes it.
    func keptBatch() throws -> OTLPBatch {
        let protobuf = try OTLPBatch.decode(json: Array(Payloads.gatewayEventJSON.utf8), signal: .logs).encodeProtobuf()
        let before = OTLPBatch.keepsProtobufSource
        OTLPBatch.keepsProtobufSource = true
        defer { OTLPBatch.keepsProtobufSource = before }
        return try OTLPBatch.decode(protobuf: protobuf, signal: .logs)
    }

    @Test func anEditDropsTheKeptProtobufSoLogsStoreTheEditedRecords() throws {
        let batch = try keptBatch()
        #expect(batch.protobufSource != nil)
        // Reading and deciding to change nothing keeps the request's bytes.
        batch.edit { editor in editor.forEachLogRecord { _ = $0.attributes.index(of: "user_id") } }
        #expect(batch.protobufSource != nil && !batch.isEdited)

        try batch.edit { editor in
            try editor.forEachLogRecord { record in
                let i = try #require(record.attributes.index(of: "user_id"))
                try record.attributes.value(at: i).set(.text("[redacted]"))
            }
        }
        #expect(batch.protobufSource == nil && batch.isEdited)
        let stored = batch.withProtobuf { Array($0) }
        #expect(!stored.containsBytes(Array("u-42".utf8)))
        let reread = try OTLPBatch.decode(protobuf: stored, signal: .logs)
        #expect(reread.withLogs { $0.records.first { _ in true }!.record.attributes["user_id"]!.stringValue } == "[redacted]")
    }

    @Test func upsertInsertUpdateRemoveAndRename() throws {
        let batch = try OTLPBatch.decode(json: Array(Payloads.gatewayEventJSON.utf8), signal: .logs)
        try batch.edit { editor in
            try editor.forEachLogRecord { record in
                let attributes = record.attributes
                let before = attributes.count
                #expect(try attributes.insert("action", .text("allow")) == false)
                #expect(try attributes.update("missing", .int(1)) == false)
                try attributes.upsert("action", .text("escalate"))
                try attributes.upsert("risk", .map([OTLPKeyValue("score", .double(0.5)), OTLPKeyValue("labels", .array([.text("a"), .bool(true)]))]))
                #expect(attributes.count == before + 1)
                #expect(attributes.remove("model"))
                #expect(!attributes.remove("model"))
                #expect(attributes.removeAll { $0.key.equals("tokens") || $0.key.equals("score") } == 2)
                try attributes.rename(at: attributes.index(of: "org_id")!, to: "tenant")
            }
        }
        let json = String(decoding: batch.encodeJSON(), as: UTF8.self)
        #expect(json.contains(#""key":"action","value":{"stringValue":"escalate"}"#))
        #expect(json.contains(#""key":"risk","value":{"kvlistValue":{"values":[{"key":"score","value":{"doubleValue":0.5}},{"key":"labels","value":{"arrayValue":{"values":[{"stringValue":"a"},{"boolValue":true}]}}}]}}"#))
        #expect(!json.contains(#""model""#) && !json.contains(#""tokens""#) && !json.contains(#""score","value":{"doubleValue":0.25}"#))
        #expect(json.contains(#""key":"tenant","value":{"stringValue":"org-7"}"#))
    }

    @Test func nestedValuesAreEditableInPlace() throws {
        let batch = try OTLPBatch.decode(json: Array(Payloads.gatewayEventJSON.utf8), signal: .logs)
        try batch.edit { editor in
            try editor.forEachLogRecord { record in
                let attributes = record.attributes
                let tags = try attributes.value(at: attributes.index(of: "tags")!)
                #expect(tags.elements.count == 3)
                try Array("masked".utf8).withUnsafeBufferPointer { try tags.elements[0].setString($0) }
                let metadata = try attributes.value(at: attributes.index(of: "metadata")!).map!
                try metadata.value(at: 0).set(.int(7))
                try record.setBody(.map([OTLPKeyValue("event", .text("x"))]))
            }
        }
        let json = String(decoding: batch.encodeJSON(), as: UTF8.self)
        #expect(json.contains(#"{"stringValue":"masked"},{"intValue":"7"},{}"#))
        #expect(json.contains(#""key":"région","value":{"intValue":"7"}"#))
        #expect(json.contains(#""body":{"kvlistValue":{"values":[{"key":"event","value":{"stringValue":"x"}}]}}"#))
    }

    @Test func removingRecordsDropsEmptiedScopesAndResources() throws {
        let two = #"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"a"}},{"body":{"stringValue":"b"}}]},{"logRecords":[{"body":{"stringValue":"c"}}]}]},{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"d"}}]}]}]}"#
        let batch = try OTLPBatch.decode(json: Array(two.utf8), signal: .logs)
        let removed = batch.edit { editor in
            editor.removeLogRecords { $0.view.body?.stringValue != "b" }
        }
        #expect(removed == 3 && batch.itemCount == 1)
        #expect(String(decoding: batch.encodeJSON(), as: UTF8.self) == #"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"b"}}]}]}]}"#)
        #expect(batch.edit { $0.removeLogRecords { _ in false } } == 0)
    }

    @Test func resourcesWithoutAResourceMessageGetOne() throws {
        let batch = try OTLPBatch.decode(json: Array(#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"s"}]}]}]}"#.utf8), signal: .traces)
        try batch.edit { editor in try editor.forEachResource { try $0.upsert("k8s.pod.name", .text("gw-0")) } }
        #expect(String(decoding: batch.encodeJSON(), as: UTF8.self).contains(#""resource":{"attributes":[{"key":"k8s.pod.name","value":{"stringValue":"gw-0"}}]}"#))
        var names: [String] = []
        batch.edit { $0.forEachSpan { names.append($0.view.name.string) } }
        #expect(names == ["s"])
    }

    @Test func builtLogsRoundTrip() throws {
        var record = NewLogRecord()
        record.timeUnixNano = 1_763_712_000_000_000_000
        record.eventName = Array("gateway.decision".utf8)
        record.body = .map([OTLPKeyValue("action", .text("block"))])
        record.attributes = [OTLPKeyValue("action", .text("block")), OTLPKeyValue("tokens", .int(12))]
        let batch = try OTLPBatch.makeLogs(resource: [OTLPKeyValue("service.name", .text("gw"))], scopeName: "sluice.events", records: [record, NewLogRecord()])
        #expect(batch.itemCount == 2)
        let reread = try OTLPBatch.decode(protobuf: batch.encodeProtobuf(), signal: .logs)
        let json = String(decoding: reread.encodeJSON(), as: UTF8.self)
        #expect(json.contains(#""timeUnixNano":"1763712000000000000""#))
        #expect(json.contains(#""eventName":"gateway.decision""#))
        #expect(json.contains(#""key":"tokens","value":{"intValue":"12"}"#))
        #expect(json.contains(#""scope":{"name":"sluice.events"}"#))
    }

    @Test func aCopyIsIndependent() throws {
        let batch = try OTLPBatch.decode(json: Array(Payloads.gatewayEventJSON.utf8), signal: .logs)
        let copy = try batch.copy()
        try copy.edit { try $0.forEachLogRecord { try $0.attributes.upsert("action", .text("allow")) } }
        #expect(batch.withLogs { $0.records.first { _ in true }!.record.attributes["action"]!.stringValue } == "block")
        #expect(copy.withLogs { $0.records.first { _ in true }!.record.attributes["action"]!.stringValue } == "allow")
    }
}

extension Array where Element == UInt8 {
    func containsBytes(_ needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        return (0...(count - needle.count)).contains { Array(self[$0..<($0 + needle.count)]) == needle }
    }
}

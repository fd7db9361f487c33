// JSONValueReader: any JSON into OTLP values, and what it does with hostile text
// (deep nesting, huge numbers, invalid UTF-8, NUL bytes, repeated names, random
// bytes): an error with a byte offset, never a crash.
import Testing
@testable import SluiceOTLP

@Suite struct JSONValueReaderTests {
    func document(_ text: String, maxDepth: Int = 64, maxValues: Int = 1_000_000) throws(OTLPDecodeError) -> OTLPValue {
        try document(Array(text.utf8), maxDepth: maxDepth, maxValues: maxValues)
    }

    func document(_ bytes: [UInt8], maxDepth: Int = 64, maxValues: Int = 1_000_000) throws(OTLPDecodeError) -> OTLPValue {
        var result: Result<OTLPValue, OTLPDecodeError> = .failure(OTLPDecodeError(.malformed, "unset"))
        bytes.withUnsafeBufferPointer { buffer in
            var reader = JSONValueReader(buffer, maxDepth: maxDepth, maxValues: maxValues)
            result = Result { () throws(OTLPDecodeError) in try reader.document() }
        }
        return try result.get()
    }

    func objects(_ text: String) throws(OTLPDecodeError) -> [(members: [OTLPKeyValue], offset: Int)] {
        var result: Result<[(members: [OTLPKeyValue], offset: Int)], OTLPDecodeError> = .success([])
        Array(text.utf8).withUnsafeBufferPointer { buffer in
            var reader = JSONValueReader(buffer)
            result = Result { () throws(OTLPDecodeError) in
                var all: [(members: [OTLPKeyValue], offset: Int)] = []
                while let next = try reader.nextObject() { all.append(next) }
                return all
            }
        }
        return try result.get()
    }

    func failure(_ body: () throws(OTLPDecodeError) -> Any) -> OTLPDecodeError? {
        do { _ = try body(); return nil } catch { return error }
    }

    @Test func valuesMapToOTLPKinds() throws {
        let value = try document(#"{"s":"a\"b\u00e9\ud83d\ude00","i":-42,"big":9007199254740993,"max":9223372036854775807,"min":-9223372036854775808,"over":9223372036854775808,"f":0.25,"e":1e3,"t":true,"n":null,"a":[1,"x",[]],"m":{"k":{}}}"#)
        #expect(value == .map([
            OTLPKeyValue("s", .text("a\"bé😀")),
            OTLPKeyValue("i", .int(-42)),
            OTLPKeyValue("big", .int(9_007_199_254_740_993)),  // exact: not through a double
            OTLPKeyValue("max", .int(.max)),
            OTLPKeyValue("min", .int(.min)),
            OTLPKeyValue("over", .double(9_223_372_036_854_775_808)),
            OTLPKeyValue("f", .double(0.25)),
            OTLPKeyValue("e", .double(1000)),
            OTLPKeyValue("t", .bool(true)),
            OTLPKeyValue("n", .empty),
            OTLPKeyValue("a", .array([.int(1), .text("x"), .array([])])),
            OTLPKeyValue("m", .map([OTLPKeyValue("k", .map([]))])),
        ]))
    }

    @Test func repeatedNamesAreRefusedAtTheSecondOne() {
        let small = failure { () throws(OTLPDecodeError) in try document(#"{"action":"allow","action":"block"}"#) }
        #expect(small?.kind == .malformed && small?.offset == 18 && small?.message.contains("\"action\" appears twice") == true)
        // Past 16 members the check goes through a set; same answer.
        let many = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        let large = failure { () throws(OTLPDecodeError) in try document("{\(many),\"k7\":1}") }
        #expect(large?.message.contains("\"k7\" appears twice") == true)
        // The same name in different objects is fine.
        #expect(failure { () throws(OTLPDecodeError) in try document(#"{"a":{"x":1},"b":{"x":2}}"#) } == nil)
    }

    @Test func deepNestingStopsAtTheLimitWithoutRecursingFurther() {
        #expect(failure { () throws(OTLPDecodeError) in try document(String(repeating: "[", count: 64) + String(repeating: "]", count: 64)) } == nil)
        let tooDeep = failure { () throws(OTLPDecodeError) in try document(String(repeating: "[", count: 65) + String(repeating: "]", count: 65)) }
        #expect(tooDeep?.kind == .tooDeep && tooDeep?.offset == 64)
        // A million opening brackets: refused at the limit, long before the stack ends.
        let hostile = failure { () throws(OTLPDecodeError) in try document(String(repeating: "{\"a\":", count: 1_000_000)) }
        #expect(hostile?.kind == .tooDeep)
    }

    @Test func numbersADoubleCannotHoldAreRefused() {
        for text in ["1e400", "-1e400", String(repeating: "9", count: 70), "1" + String(repeating: "0", count: 310) + ".5"] {
            let error = failure { () throws(OTLPDecodeError) in try document("[\(text)]") }
            #expect(error?.kind == .malformed && error?.offset == 1, "\(text.prefix(20)): \(String(describing: error))")
        }
        for text in ["01", "1.", ".5", "+1", "-", "1e", "0x10", "NaN", "Infinity"] {
            #expect(failure { () throws(OTLPDecodeError) in try document("[\(text)]") }?.kind == .malformed, "\(text)")
        }
        // 20 digits that overflow Int64 become a double; within range an int.
        #expect((try? document("18446744073709551616")) == .double(18_446_744_073_709_551_616))
        #expect((try? document("-0")) == .int(0))
    }

    @Test func stringsMustBeUTF8WithTheOffsetOfTheBadByte() {
        let cases: [[UInt8]] = [
            [0xFF],                 // never valid
            [0xC0, 0x80],           // overlong NUL
            [0xED, 0xA0, 0x80],     // a surrogate
            [0xF4, 0x90, 0x80, 0x80], // above U+10FFFF
            [0xE2, 0x82],           // truncated
        ]
        for bad in cases {
            let text = Array(#"{"k":"ok"#.utf8) + bad + Array(#""}"#.utf8)
            let error = failure { () throws(OTLPDecodeError) in try document(text) }
            #expect(error?.kind == .malformed && error?.offset == 8 && error?.message.contains("not UTF-8") == true, "\(bad): \(String(describing: error))")
        }
        #expect((try? document(Array(#"["€ 𝄞"]"#.utf8))) == .array([.text("€ 𝄞")]))
    }

    @Test func nulBytesAreRefusedRawAndKeptEscaped() {
        let raw = failure { () throws(OTLPDecodeError) in try document(Array(#"{"k":"a"#.utf8) + [0] + Array(#"b"}"#.utf8)) }
        #expect(raw?.kind == .malformed && raw?.message.contains("control character") == true)
        let outside = failure { () throws(OTLPDecodeError) in try document([UInt8(ascii: "[")] + [0] + [UInt8(ascii: "]")]) }
        #expect(outside?.offset == 1 && outside?.message.contains("byte 0x0") == true)
        #expect((try? document(#"["a\u0000b"]"#)) == .array([.string([0x61, 0, 0x62])]))
    }

    @Test func truncatedAndBrokenTextNamesWhereAndWhat() {
        let cases: [(String, Int, String)] = [
            (#"{"a":1"#, 6, "expected ',' or '}'"),
            (#"{"a" 1}"#, 5, "expected ':'"),
            (#"{a:1}"#, 1, "member name in quotes"),
            (#"{"a":tru}"#, 5, "expected true or false"),
            (#"{"a":"x}"#, 5, "unterminated string"),
            (#"[1,]"#, 3, "expected a value"),
            (#"{"a":1} x"#, 8, "unexpected data after the value"),
            ("", 0, "found the end of the text"),
        ]
        for (text, offset, words) in cases {
            let error = failure { () throws(OTLPDecodeError) in try document(text) }
            #expect(error?.offset == offset && error?.message.contains(words) == true, "\(text): \(String(describing: error))")
        }
    }

    @Test func aStreamOfObjectsAcceptsEveryFormGatewaysWrite() throws {
        let one = try objects(#"{"event_id":"e1"}"#)
        #expect(one.count == 1 && one[0].offset == 0)
        let array = try objects(#" [{"event_id":"e1"}, {"event_id":"e2"}] "#)
        #expect(array.map(\.offset) == [2, 21])
        let ndjson = try objects("{\"n\":1}\n{\"n\":2}\r\n\n{\"n\":3}\n")
        #expect(ndjson.map { $0.members[0].value } == [.int(1), .int(2), .int(3)])
        let mixed = try objects(#"{"n":1}[{"n":2}][]{"n":3}"#)
        #expect(mixed.count == 3)
        #expect(try objects("[]").isEmpty && objects(" \n").isEmpty)
    }

    @Test func aStreamRefusesWhatIsNotAnObjectWithItsOffset() {
        let cases: [(String, Int, String)] = [
            (#"[{"a":1},"b"]"#, 9, "expected an object (each element of the array is one)"),
            (#"[{"a":1},]"#, 9, "expected an object"),
            (#"[{"a":1} {"b":2}]"#, 9, "expected ',' or ']'"),
            ("{\"a\":1}\n42\n", 8, "expected an object or an array of objects"),
            (#"[[{"a":1}]]"#, 1, "expected an object"),
        ]
        for (text, offset, words) in cases {
            let error = failure { () throws(OTLPDecodeError) in try objects(text) }
            #expect(error?.offset == offset && error?.message.contains(words) == true, "\(text): \(String(describing: error))")
        }
    }

    @Test func theValueBudgetBoundsWhatOneTextMayHold() {
        #expect(failure { () throws(OTLPDecodeError) in try document("[1,2,3]", maxValues: 4) } == nil)
        let error = failure { () throws(OTLPDecodeError) in try document("[1,2,3,4]", maxValues: 4) }
        #expect(error?.kind == .tooLarge && error?.offset == 7)
    }

    @Test func linesAreCountedFromOne() {
        Array("a\nb\n\nc".utf8).withUnsafeBufferPointer { buffer in
            let reader = JSONValueReader(buffer)
            #expect(reader.line(at: 0) == 1 && reader.line(at: 2) == 2 && reader.line(at: 5) == 4 && reader.line(at: 99) == 4)
        }
    }

    /// Random bytes and random mutations of a valid event: every outcome is a value
    /// or an error, never a trap. Seeded, so a failure repeats.
    @Test func randomInputNeverCrashes() {
        var generator = SplitMix64(seed: 0x5eed)
        let event = Array(#"{"event_id":"e-1","timestamp":"2026-11-21T10:00:00Z","n":[1,2.5,{"x":null}],"ok":true}"#.utf8)
        let alphabet = Array(#"{}[]":,\u0 19.eE-+tfn"#.utf8) + [0x00, 0xFF, 0xC3, 0xA9, 0x0A]
        for round in 0..<3000 {
            var text: [UInt8]
            if round % 2 == 0 {
                text = (0..<Int.random(in: 0..<64, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }
            } else {
                text = event
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    let k = Int.random(in: 0..<text.count, using: &generator)
                    text[k] = alphabet.randomElement(using: &generator)!
                }
            }
            _ = try? document(text, maxDepth: 8)
        }
    }
}

import Foundation
import Testing
@testable import SluiceOTLP

/// Input a hostile or broken client can send. Every case must come back as an error
/// value, never a crash; `make test-asan` runs this suite under AddressSanitizer.
@Suite struct HostileInputTests {
    @Test func hundredThousandNestedKVListsInProtobufAreRefused() {
        let payload = Payloads.nestedKVListProtobuf(levels: 100_000)
        do {
            _ = try OTLPBatch.decode(protobuf: payload, signal: .logs)
            Issue.record("accepted")
        } catch {
            #expect(error.kind == .tooDeep)
            #expect(error.description.contains("deeper than 64"))
        }
    }

    @Test func nestingJustUnderTheLimitIsAccepted() throws {
        // Request(1) → ResourceLogs → ScopeLogs → LogRecord → AnyValue(5); each kvlist
        // level adds three messages (KeyValueList, KeyValue, AnyValue).
        let payload = Payloads.nestedKVListProtobuf(levels: 19)
        let batch = try OTLPBatch.decode(protobuf: payload, signal: .logs)
        #expect(batch.itemCount == 1)
        let deeper = Payloads.nestedKVListProtobuf(levels: 21)
        #expect(throws: OTLPDecodeError.self) { try OTLPBatch.decode(protobuf: deeper, signal: .logs) }
    }

    @Test func hundredThousandNestedKVListsInJSONAreRefused() {
        let payload = Payloads.nestedKVListJSON(levels: 100_000)
        do {
            _ = try OTLPBatch.decode(json: payload, signal: .logs)
            Issue.record("accepted")
        } catch {
            #expect(error.kind == .tooDeep)
        }
        // Deep unknown fields are refused the same way.
        let unknown = Array(("{\"x\":" + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}").utf8)
        #expect(throws: OTLPDecodeError.self) { try OTLPBatch.decode(json: unknown, signal: .logs) }
    }

    @Test func gzipBombStopsAtTheCap() throws {
        // 64 MiB of zeros compress to about 64 KiB; the cap is 4 MiB.
        let zeros = [UInt8](repeating: 0, count: 64 << 20)
        let bomb = try #require(Compression.gzip(zeros, level: 9))
        #expect(bomb.count < 1 << 20)
        do {
            _ = try Decompression.decompress(bomb, encoding: .gzip, limit: 4 << 20)
            Issue.record("accepted")
        } catch {
            #expect(error.kind == .tooLarge)
            #expect(error.description.contains("4 MiB"))
        }
    }

    @Test(arguments: [
        [0x0A, 0x05, 0x0A],                      // length past the end
        [0x0A],                                  // truncated tag payload
        [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],  // overlong varint
        [0x0B, 0x0C],                            // group wire types
        [0x00, 0x00],                            // field number 0
        [0x0A, 0x03, 0x80, 0x00, 0x00],          // field number 0 in a two-byte tag (protobuf-c takes it)
    ] as [[UInt8]])
    func malformedProtobufIsRefusedWithAnOffset(payload: [UInt8]) {
        do {
            _ = try OTLPBatch.decode(protobuf: payload, signal: .logs)
            Issue.record("accepted \(payload)")
        } catch {
            #expect(error.kind == .malformed)
            #expect(error.offset != nil)
        }
    }

    @Test(arguments: [
        [0x0A, 0x02, 0x08, 0x01],                // ResourceLogs.resource as a varint, not a message
        [0x0A, 0x02, 0x12, 0x05],                // a nested length past its parent's end
        [0x0A, 0x03, 0x12, 0x01, 0x80],          // a truncated varint inside a short message
    ] as [[UInt8]])
    func malformedInsideShortMessagesIsRefusedByProtobufC(payload: [UInt8]) {
        // Short messages are not walked by the nesting check; protobuf-c refuses these.
        do {
            _ = try OTLPBatch.decode(protobuf: payload, signal: .logs)
            Issue.record("accepted \(payload)")
        } catch {
            #expect(error.kind == .malformed)
        }
    }

    @Test func randomBytesNeverCrash() {
        var generator = SplitMix64(seed: 42)
        var refused = 0
        for _ in 0..<2_000 {
            let count = Int(generator.next() % 512)
            let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            for signal in OTLPSignal.allCases {
                if (try? OTLPBatch.decode(protobuf: bytes, signal: signal)) == nil { refused += 1 }
                if (try? OTLPBatch.decode(json: bytes, signal: signal)) == nil { refused += 1 }
            }
        }
        #expect(refused > 0)
    }

    @Test func oversizedBodyIsTooLarge() {
        let limits = OTLPDecodeLimits(maxBodyBytes: 1024)
        let payload = [UInt8](repeating: 0x20, count: 2048)
        do {
            _ = try OTLPBatch.decode(json: payload, signal: .logs, limits: limits)
            Issue.record("accepted")
        } catch {
            #expect(error.kind == .tooLarge)
        }
    }

    @Test func arenaLimitTurnsIntoAnErrorNotACrash() {
        // 100,000 empty KeyValues (2 bytes each on the wire) need far more memory
        // than 1 byte per input byte allows.
        var record: [UInt8] = []
        for _ in 0..<100_000 { record += [0x32, 0x00] }
        let payload = Payloads.field(1, Payloads.field(2, Payloads.field(2, record)))
        let limits = OTLPDecodeLimits(maxArenaBytesPerInputByte: 1)
        #expect(throws: OTLPDecodeError.self) { try OTLPBatch.decode(protobuf: payload, signal: .logs, limits: limits) }
        // With the default allowance the same payload decodes.
        #expect((try? OTLPBatch.decode(protobuf: payload, signal: .logs)) != nil)
    }
}

/// A small deterministic generator, so a failure can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

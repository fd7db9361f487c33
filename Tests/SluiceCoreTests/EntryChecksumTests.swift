import CChecksum
import Foundation
import Testing
@testable import SluiceCore

/// CRC-32C, the disk log's entry checksum, and entries written with the CRC-32 that
/// came before it.
@Suite struct EntryChecksumTests {
    static func crc(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { SegmentFormat.entryChecksum($0, continuing: crc) }
    }

    @Test func knownValues() {
        // The CRC-32C check value (RFC 3720, and every CRC catalogue).
        #expect(Self.crc(Array("123456789".utf8)) == 0xE306_9283)
        // RFC 3720 B.4: 32 bytes of zeros, and of 0xFF.
        #expect(Self.crc([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(Self.crc([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(Self.crc([]) == 0)
    }

    @Test func hardwareAndPortableAgreeAtEveryLengthAndOffset() {
        var generator = SystemRandomNumberGenerator()
        let data = (0..<(400 << 10)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        // Lengths around the three-lane threshold and the 8-byte steps, from odd offsets.
        let lengths = [0, 1, 7, 8, 9, 100, 3 * 3072 - 1, 3 * 3072, 3 * 3072 + 5, 65_536, 376_637, data.count - 3]
        data.withUnsafeBytes { raw in
            for length in lengths {
                for offset in [0, 1, 3] where offset + length <= raw.count {
                    let base = raw.baseAddress! + offset
                    #expect(sluice_crc32c(0, base, length) == sluice_crc32c_portable(0, base, length), "length \(length) offset \(offset)")
                }
            }
        }
    }

    @Test func continuingIsTheSameAsOnePass() {
        let data = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        for split in [0, 1, 4_999, 20_000, 49_999] {
            let first = Array(data[..<split]), second = Array(data[split...])
            #expect(Self.crc(second, continuing: Self.crc(first)) == Self.crc(data))
        }
    }

    /// An entry as Sluice wrote it before CRC-32C: magic "SLE1" and zlib's CRC-32.
    static func entryWithCRC32(sequence: UInt64, items: Int, payload: [UInt8]) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: SegmentFormat.headerSize)
        header.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: SegmentFormat.magicCRC32.littleEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 4, as: UInt32.self)
            raw.storeBytes(of: sequence.littleEndian, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: UInt32(items).littleEndian, toByteOffset: 16, as: UInt32.self)
            raw.storeBytes(of: UInt64(1_700_000_000_000).littleEndian, toByteOffset: 24, as: UInt64.self)
            let payloadSum = payload.withUnsafeBytes { SegmentFormat.crc($0) }
            let sum = SegmentFormat.crc(UnsafeRawBufferPointer(rebasing: raw[4..<32]), continuing: payloadSum)
            raw.storeBytes(of: sum.littleEndian, toByteOffset: 32, as: UInt32.self)
        }
        return header + payload
    }

    @Test func entriesWrittenWithCRC32AreReadAndTheLogGoesOn() async throws {
        let base = DiskPipelineLogTests.temporaryDirectory()
        let directory = base + "/logs_audit"
        try FileManager.default.createDirectory(atPath: directory + "/cursors", withIntermediateDirectories: true)
        var segment: [UInt8] = []
        for sequence in 1...3 {
            let payload = try DiskPipelineLogTests.batch("old\(sequence)").encodeProtobuf()
            segment += Self.entryWithCRC32(sequence: UInt64(sequence), items: 2, payload: payload)
        }
        // One damaged old entry at the end is a torn tail, as before.
        var damaged = Self.entryWithCRC32(sequence: 4, items: 2, payload: try DiskPipelineLogTests.batch("old4").encodeProtobuf())
        damaged[damaged.count - 1] ^= 0xFF
        segment += damaged
        try Data(segment).write(to: URL(fileURLWithPath: directory + "/" + SegmentFormat.segmentName(first: 1)))
        let log = try DiskPipelineLogTests.open(base, settings: DiskLogSettings(segmentBytes: 1 << 20))
        defer { log.close() }
        // The last segment is continued with new entries after the old ones.
        #expect(try await DiskPipelineLogTests.append(log, "new") == 4)
        log.flush()
        let cursor = log.cursor(DiskPipelineLogTests.reader)
        let entries = await DiskPipelineLogTests.readAvailable(log, DiskPipelineLogTests.reader, cursor)
        #expect(entries.map(\.sequence) == [1, 2, 3, 4])
        #expect(DiskPipelineLogTests.bodies(entries) == ["old1-0", "old1-1", "old2-0", "old2-1", "old3-0", "old3-1", "new-0", "new-1"])
    }
}

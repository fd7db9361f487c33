import Foundation
import NIOCore
import NIOHTTP1
import Testing
import SluiceCore
import SluiceNet
@testable import SluiceComponents

/// The kit's pieces for JSON-array destinations: records framed as arrays within
/// the byte and item limits, and a destination's clock read from its Date header.
@Suite struct PayloadFramingTests {
    func records(_ sizes: [Int]) -> EncodedRecords {
        var records = EncodedRecords()
        for (i, size) in sizes.enumerated() {
            records.bytes += Array("\"\(String(repeating: "x", count: size - 2))\"".utf8)
            records.ends.append(records.bytes.count)
            records.locators.append(RecordLocator(batch: 0, resource: 0, scope: 0, record: Int32(i)))
        }
        return records
    }

    @Test func arraysCountTheirBracketsAndCommasAgainstTheLimit() throws {
        // Ten records of 10 bytes: an array of n of them is 10n + (n - 1) + 2 bytes.
        let encoded = records(Array(repeating: 10, count: 10))
        var packer = PayloadPacker(limit: 45, gzip: false)
        packer.limitsRawBytes = true
        packer.framing = .jsonArray
        let (payloads, tooLarge) = packer.pack(encoded, Array(0..<10))
        #expect(tooLarge.isEmpty)
        #expect(payloads.map(\.records.count) == [4, 4, 2], "four records are 40 + 3 commas + 2 brackets = 45 bytes; five would be 56")
        for payload in payloads {
            #expect(payload.body.count <= 45 && payload.rawBytes == payload.body.count)
            let array = try #require(try JSONSerialization.jsonObject(with: Data(payload.body)) as? [String])
            #expect(array.count == payload.records.count)
        }
    }

    @Test func itemLimitsAndGzipKeepTheArrayWhole() throws {
        let encoded = records(Array(repeating: 200, count: 25))
        var packer = PayloadPacker(limit: 1 << 20, gzip: true, maxItems: 10)
        packer.framing = .jsonArray
        let payloads = packer.pack(encoded, Array(0..<25)).payloads
        #expect(payloads.map(\.records.count) == [10, 10, 5])
        for payload in payloads {
            let raw = try Decompression.decompress(payload.body, encoding: .gzip, limit: 1 << 20)
            #expect((try JSONSerialization.jsonObject(with: Data(raw)) as? [String])?.count == payload.records.count)
            #expect(raw == PayloadPacker.concatenate(encoded, payload.records, framing: .jsonArray))
        }
    }

    @Test func aDestinationsClockIsReadFromItsDateHeader() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        func response(_ date: String?) -> HTTPClientResponse {
            HTTPClientResponse(status: .unauthorized, headers: HTTPHeaders(date.map { [("Date", $0)] } ?? []), body: ByteBuffer())
        }
        #expect(ResponseClass.clockSkew(response(HTTPDate.format(now.addingTimeInterval(-900))), now: now) == -900)
        #expect(ResponseClass.clockSkew(response(HTTPDate.format(now.addingTimeInterval(30))), now: now) == nil, "within a minute: in step")
        #expect(ResponseClass.clockSkew(response(nil), now: now) == nil)
        #expect(ResponseClass.clockSkew(response("yesterday"), now: now) == nil)
        let note = ResponseClass.clockSkewNote(response(HTTPDate.format(now.addingTimeInterval(-900))), now: now, window: "w")
        #expect(note.contains("900 s behind this host's") && note.contains("NTP"))
    }
}

import Foundation
import Testing
@testable import SluiceOTLP

@Suite struct DecompressionTests {
    let text = Array(String(repeating: "governance event ", count: 1000).utf8)

    @Test func gzipRoundTrip() throws {
        let packed = try #require(Compression.gzip(text))
        #expect(packed.count < text.count)
        #expect(try Decompression.decompress(packed, encoding: .gzip, limit: 1 << 20) == text)
    }

    @Test func concatenatedGzipMembersAreOneBody() throws {
        let a = try #require(Compression.gzip(Array("first ".utf8)))
        let b = try #require(Compression.gzip(Array("second".utf8)))
        #expect(try Decompression.decompress(a + b, encoding: .gzip, limit: 1 << 20) == Array("first second".utf8))
    }

    @Test func truncatedGzipIsRefused() throws {
        let packed = try #require(Compression.gzip(text))
        do {
            _ = try Decompression.decompress(Array(packed.prefix(packed.count / 2)), encoding: .gzip, limit: 1 << 20)
            Issue.record("accepted")
        } catch {
            #expect(error.kind == .badCompression)
        }
    }

    @Test func garbageIsRefusedForEveryEncoding() {
        let garbage: [UInt8] = Array("this is not compressed at all".utf8)
        for encoding in [ContentEncoding.gzip, .deflate, .zstd] {
            #expect(throws: OTLPDecodeError.self) { try Decompression.decompress(garbage, encoding: encoding, limit: 1 << 20) }
        }
    }

    @Test func identityRespectsTheLimit() {
        #expect(throws: OTLPDecodeError.self) { try Decompression.decompress(text, encoding: .identity, limit: 10) }
    }

    @Test func contentEncodingHeaderValues() {
        #expect(ContentEncoding(headerValue: " GZIP ") == .gzip)
        #expect(ContentEncoding(headerValue: "") == .identity)
        #expect(ContentEncoding(headerValue: "br") == nil)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CSluiceShims
import CZlib
import CZstd

/// The `Content-Encoding`s an OTLP receiver accepts.
public enum ContentEncoding: String, Sendable, CaseIterable {
    case identity, gzip, deflate, zstd

    /// `nil` for an encoding Sluice does not speak (the receiver answers 415).
    public init?(headerValue: String) {
        switch headerValue.lowercased().trimmingASCIISpaces {
        case "", "identity": self = .identity
        case "gzip", "x-gzip": self = .gzip
        case "deflate": self = .deflate
        case "zstd": self = .zstd
        default: return nil
        }
    }
}

extension String {
    var trimmingASCIISpaces: Substring {
        let bytes = self[...]
        guard let first = bytes.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return "" }
        let last = bytes.lastIndex(where: { $0 != " " && $0 != "\t" })!
        return bytes[first...last]
    }
}

/// Decompresses request bodies with a hard cap on the output, so a small bomb
/// (a few KiB of gzip that expand to gigabytes) is refused at the cap and memory
/// stays bounded by it.
public enum Decompression {
    /// zstd frames may ask for a window of up to 2 GiB; a client that needs more
    /// than 8 MiB of decoder memory is refused instead of obeyed.
    static let zstdMaxWindowLog: Int32 = 23

    public static func decompress(_ input: [UInt8], encoding: ContentEncoding, limit: Int) throws(OTLPDecodeError) -> [UInt8] {
        do {
            return try input.withUnsafeBytes { buffer in try decompress(buffer, encoding: encoding, limit: limit) }
        } catch let error as OTLPDecodeError {
            throw error
        } catch {
            throw OTLPDecodeError(.badCompression, "\(error)")
        }
    }

    public static func decompress(_ input: UnsafeRawBufferPointer, encoding: ContentEncoding, limit: Int) throws(OTLPDecodeError) -> [UInt8] {
        switch encoding {
        case .identity:
            guard input.count <= limit else { throw tooLarge(limit) }
            return Array(input)
        case .gzip:
            return try inflate(input, windowBits: 15 + 16, limit: limit, name: "gzip")
        case .deflate:
            // HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2), but some
            // clients send raw deflate; the zlib header tells them apart.
            let zlibHeader = input.count >= 2 && input[0] & 0x0F == 8 && (UInt16(input[0]) << 8 | UInt16(input[1])) % 31 == 0
            return try inflate(input, windowBits: zlibHeader ? 15 : -15, limit: limit, name: "deflate")
        case .zstd:
            return try unzstd(input, limit: limit)
        }
    }

    static func tooLarge(_ limit: Int) -> OTLPDecodeError {
        OTLPDecodeError(.tooLarge, "the request decompresses to more than \(limit.byteCountText), the limit")
    }

    private static func inflate(_ input: UnsafeRawBufferPointer, windowBits: Int32, limit: Int, name: String) throws(OTLPDecodeError) -> [UInt8] {
        var stream = z_stream()
        guard sluice_inflate_init2(&stream, windowBits) == Z_OK else {
            throw OTLPDecodeError(.outOfMemory, "cannot start \(name) decompression")
        }
        defer { inflateEnd(&stream) }
        let output = OutputBuffer(limit: limit, expected: input.count * 4)
        var consumed = 0
        while true {
            guard let space = output.freeSpace() else { throw tooLarge(limit) }
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: UInt8.self)).map { $0 + consumed }
            stream.avail_in = UInt32(min(input.count - consumed, Int(UInt32.max)))
            stream.next_out = space.baseAddress
            stream.avail_out = UInt32(min(space.count, Int(UInt32.max)))
            let before = stream.avail_in
            let result = CZlib.inflate(&stream, Z_NO_FLUSH)
            consumed += Int(before - stream.avail_in)
            let produced = min(space.count, Int(UInt32.max)) - Int(stream.avail_out)
            output.count += produced
            guard output.count <= limit else { throw tooLarge(limit) }
            switch result {
            case Z_STREAM_END:
                // gzip allows several members one after another.
                if consumed < input.count, windowBits > 15 {
                    guard inflateReset(&stream) == Z_OK else { throw OTLPDecodeError(.badCompression, "invalid \(name) data") }
                    continue
                }
                guard consumed == input.count else {
                    throw OTLPDecodeError(.badCompression, "invalid \(name) body: data after the end of the stream", offset: consumed)
                }
                return output.array()
            case Z_OK:
                if produced == 0 && consumed == input.count {
                    throw OTLPDecodeError(.badCompression, "invalid \(name) body: truncated")
                }
            case Z_BUF_ERROR:
                if consumed == input.count { throw OTLPDecodeError(.badCompression, "invalid \(name) body: truncated") }
            default:
                let reason = stream.msg.map { String(cString: $0) } ?? "error \(result)"
                throw OTLPDecodeError(.badCompression, "invalid \(name) body: \(reason)", offset: consumed)
            }
        }
    }

    private static func unzstd(_ input: UnsafeRawBufferPointer, limit: Int) throws(OTLPDecodeError) -> [UInt8] {
        guard let context = ZSTD_createDCtx() else { throw OTLPDecodeError(.outOfMemory, "cannot start zstd decompression") }
        defer { ZSTD_freeDCtx(context) }
        ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, zstdMaxWindowLog)
        let output = OutputBuffer(limit: limit, expected: input.count * 4)
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var lastResult = 1
        while true {
            guard let space = output.freeSpace() else { throw tooLarge(limit) }
            var outBuffer = ZSTD_outBuffer(dst: space.baseAddress, size: space.count, pos: 0)
            let code = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
            if ZSTD_isError(code) != 0 {
                throw OTLPDecodeError(.badCompression, "invalid zstd body: \(String(cString: ZSTD_getErrorName(code)))", offset: inBuffer.pos)
            }
            output.count += outBuffer.pos
            guard output.count <= limit else { throw tooLarge(limit) }
            lastResult = code
            if inBuffer.pos == inBuffer.size && outBuffer.pos < space.count { break }
        }
        guard lastResult == 0 else { throw OTLPDecodeError(.badCompression, "invalid zstd body: truncated") }
        return output.array()
    }
}

/// Decompressed bytes, written in place by zlib or zstd. It grows with realloc,
/// which for large blocks remaps pages instead of copying them, and never past
/// `limit + 1` bytes (one more than allowed, to notice that the limit was passed):
/// a bomb costs at most the limit in memory, not the double an array's growth would.
final class OutputBuffer {
    private var base: UnsafeMutableRawPointer?
    private var capacity = 0
    var count = 0
    let limit: Int

    init(limit: Int, expected: Int) {
        self.limit = limit
        grow(to: min(limit + 1, max(expected, 4096)))
    }

    deinit { free(base) }

    private func grow(to newCapacity: Int) {
        guard let grown = realloc(base, newCapacity) else { return }
        base = grown
        capacity = newCapacity
    }

    /// Room to write into, or `nil` when the buffer holds more than `limit` bytes
    /// already or memory ran out.
    func freeSpace() -> UnsafeMutableBufferPointer<UInt8>? {
        if count == capacity {
            guard capacity <= limit else { return nil }
            grow(to: min(limit + 1, max(capacity * 2, 64 * 1024)))
            guard count < capacity else { return nil }
        }
        return UnsafeMutableBufferPointer(start: base!.assumingMemoryBound(to: UInt8.self) + count, count: capacity - count)
    }

    func array() -> [UInt8] {
        guard let base, count > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: base, count: count))
    }
}

/// Compresses payloads on the way out (exporters' `compression: gzip`).
public enum Compression {
    public static func gzip(_ input: UnsafeRawBufferPointer, level: Int32 = 6) -> [UInt8]? {
        var stream = z_stream()
        guard sluice_deflate_init2(&stream, level, 15 + 16) == Z_OK else { return nil }
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, UInt(input.count)))
        var output = [UInt8](repeating: 0, count: bound)
        var result: Int32 = Z_OK
        output.withUnsafeMutableBufferPointer { out in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: UInt8.self))
            stream.avail_in = UInt32(input.count)
            stream.next_out = out.baseAddress
            stream.avail_out = UInt32(out.count)
            result = deflate(&stream, Z_FINISH)
        }
        guard result == Z_STREAM_END else { return nil }
        output.removeLast(Int(stream.avail_out))
        return output
    }

    public static func gzip(_ input: [UInt8], level: Int32 = 6) -> [UInt8]? {
        input.withUnsafeBytes { gzip($0, level: level) }
    }

    /// One zstd frame holding `input`, with its size in the frame header.
    public static func zstd(_ input: [UInt8], level: Int32 = 3) -> [UInt8]? {
        var output = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let written = output.withUnsafeMutableBytes { out in
            input.withUnsafeBytes { ZSTD_compress(out.baseAddress, out.count, $0.baseAddress, $0.count, level) }
        }
        guard ZSTD_isError(written) == 0 else { return nil }
        output.removeLast(output.count - written)
        return output
    }
}

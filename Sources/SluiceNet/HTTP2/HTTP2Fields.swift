// What the HTTP/2 server and client sessions both need from nghttp2: header fields
// handed over as `nghttp2_nv`, and the output drained into a buffer.
import CNGHTTP2
import NIOCore

enum HTTP2Fields {
    /// Headers HTTP/2 forbids (RFC 9113 §8.2.2,
    /// https://www.rfc-editor.org/rfc/rfc9113#section-8.2.2), which HTTP/1.1 code may
    /// set; `host` becomes `:authority` and content-length is written by the session.
    static let connectionSpecific: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "content-length", "host",
    ]

    /// Calls `body` with the fields as `nghttp2_nv`s. nghttp2 copies them while
    /// submitting, so the storage only lives through the call.
    static func withNameValues<R>(_ fields: [(String, String)], _ body: (UnsafeBufferPointer<nghttp2_nv>) -> R) -> R {
        var storage = [UInt8]()
        var spans: [(name: Int, nameLength: Int, value: Int, valueLength: Int)] = []
        for (name, value) in fields {
            let nameStart = storage.count
            storage.append(contentsOf: name.utf8)
            let valueStart = storage.count
            storage.append(contentsOf: value.utf8)
            spans.append((nameStart, valueStart - nameStart, valueStart, storage.count - valueStart))
        }
        return storage.withUnsafeMutableBufferPointer { bytes in
            let base = bytes.baseAddress ?? UnsafeMutablePointer<UInt8>(bitPattern: 1)!
            let nv = spans.map { span in
                nghttp2_nv(name: base + span.name, value: base + span.value, namelen: span.nameLength, valuelen: span.valueLength,
                           flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return nv.withUnsafeBufferPointer(body)
        }
    }

    /// Everything the session wants sent, or `nil` when nothing is pending.
    static func drainOutput(_ session: OpaquePointer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        var output: ByteBuffer?
        while true {
            var data: UnsafePointer<UInt8>?
            let length = nghttp2_session_mem_send(session, &data)
            guard length > 0, let data else { break }
            if output == nil { output = allocator.buffer(capacity: max(Int(length), 4096)) }
            output!.writeBytes(UnsafeRawBufferPointer(start: data, count: Int(length)))
        }
        return output
    }

    /// Copies up to `length` bytes of `body` into nghttp2's buffer for a DATA frame;
    /// true when the body is used up.
    static func copyBody(_ body: inout ByteBuffer, into buffer: UnsafeMutablePointer<UInt8>, length: Int) -> (count: Int, finished: Bool) {
        let count = min(length, body.readableBytes)
        if count > 0 {
            body.readWithUnsafeReadableBytes { bytes in
                buffer.update(from: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: count)
                return count
            }
        }
        return (count, body.readableBytes == 0)
    }
}

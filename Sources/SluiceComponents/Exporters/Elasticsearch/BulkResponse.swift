import Foundation
import NIOCore

/// A bulk API answer read item by item: errors are per document inside an HTTP 200
/// (`{"took":3,"errors":true,"items":[{"create":{"_id":…,"status":400,"error":{"type":…,"reason":…}}}]}`,
/// https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html#bulk-api-response-body).
enum BulkResponse {
    /// One result per document sent, in order; nil when the body is not a bulk
    /// answer (a proxy's page): then nothing is known to be indexed.
    static func results(_ body: ByteBuffer, retryOn: Set<Int>) -> [RecordResult]? {
        // Elasticsearch writes "errors" before "items": when it is false, every
        // document was taken and the (large) items array need not be read.
        let head = body.getString(at: body.readerIndex, length: min(body.readableBytes, 128)) ?? ""
        if let range = head.range(of: "\"errors\":") {
            let after = head[range.upperBound...].drop { $0 == " " }
            if after.hasPrefix("false"), let items = itemCount(body) { return Array(repeating: .delivered, count: items) }
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any],
              let items = object["items"] as? [[String: Any]] else { return nil }
        return items.map { item in
            guard let result = item.values.first as? [String: Any] else { return .retry("a bulk item without a result") }
            let status = (result["status"] as? Int) ?? 0
            let error = result["error"] as? [String: Any]
            let type = error?["type"] as? String ?? ""
            let reason = error?["reason"] as? String ?? ""
            let index = result["_index"] as? String ?? ""
            switch status {
            case 200..<300:
                return .delivered
            case 409:
                // `create` of an _id the index already has: a retry of a document
                // that was indexed before. Delivered, once.
                return .delivered
            default:
                var why = "Elasticsearch refused the document (status \(status)"
                if !index.isEmpty { why += ", index \(index)" }
                why += ")"
                if !type.isEmpty { why += ": \(type)" }
                if !reason.isEmpty { why += ": \(reason.prefix(500))" }
                return retryOn.contains(status) || status == 0 ? .retry(why) : .refused(why)
            }
        }
    }

    /// The number of items in an answer known to hold no errors, counted without
    /// parsing: each item is one object whose first key is the action.
    static func itemCount(_ body: ByteBuffer) -> Int? {
        let view = body.readableBytesView
        guard let start = findItems(view) else { return nil }
        var depth = 0, count = 0, inString = false, escaped = false
        for byte in view[start...] {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                if depth == 1, byte == UInt8(ascii: "{") { count += 1 }
                depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 0 { return count }
            default: break
            }
        }
        return nil
    }

    /// Where the `[` of `"items":` is.
    private static func findItems(_ view: ByteBufferView) -> ByteBufferView.Index? {
        let key = Array("\"items\":".utf8)
        var i = view.startIndex
        while i + key.count <= view.endIndex {
            if view[i] == key[0], view[i..<(i + key.count)].elementsEqual(key) {
                var j = i + key.count
                while j < view.endIndex, view[j] == UInt8(ascii: " ") { j += 1 }
                return j < view.endIndex && view[j] == UInt8(ascii: "[") ? j : nil
            }
            i += 1
        }
        return nil
    }
}

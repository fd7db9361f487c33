import Foundation
import NIOCore

/// A bulk API answer read item by item: errors are per document inside an HTTP 200
/// (`{"took":3,"errors":true,"items":[{"create":{"_id":…,"status":400,"error":{"type":…,"reason":…}}}]}`,
/// https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html#bulk-api-response-body).
enum BulkResponse {
    /// One result per document sent, in order; nil when the body is not a bulk
    /// answer (a proxy's page): then nothing is known to be indexed.
    ///
    /// The items are scanned for their `status` without building objects; only an
    /// item that failed is parsed whole, for its error's type and reason. A retried
    /// request whose documents are all there already answers thousands of 409s, and
    /// Foundation's parser spent more CPU on such an answer than encoding it had.
    static func results(_ body: ByteBuffer, retryOn: Set<Int>) -> [RecordResult]? {
        guard let items = scan(body) else { return nil }
        let view = body.readableBytesView
        return items.map { item in
            switch item.status {
            case 200..<300:
                return .delivered
            case 409:
                // `create` of an _id the index already has: a retry of a document
                // that was indexed before. Delivered, once.
                return .delivered
            default:
                let object = (try? JSONSerialization.jsonObject(with: Data(view[item.range]))) as? [String: Any]
                let result = object?.values.first as? [String: Any]
                let error = result?["error"] as? [String: Any]
                let type = error?["type"] as? String ?? ""
                let reason = error?["reason"] as? String ?? ""
                let index = result?["_index"] as? String ?? ""
                var why = "Elasticsearch refused the document (status \(item.status)"
                if !index.isEmpty { why += ", index \(index)" }
                why += ")"
                if !type.isEmpty { why += ": \(type)" }
                if !reason.isEmpty { why += ": \(reason.prefix(500))" }
                return retryOn.contains(item.status) || item.status == 0 ? .retry(why) : .refused(why)
            }
        }
    }

    /// Each item's `status` (0 when it has none) and where the item is in the body.
    /// In valid JSON a `:` always follows its key, so the last string read before a
    /// `:` at an item's action object (depth 3) is that member's key.
    static func scan(_ body: ByteBuffer) -> [(status: Int, range: Range<Int>)]? {
        let view = body.readableBytesView
        guard let start = findItems(view) else { return nil }
        var items: [(status: Int, range: Range<Int>)] = []
        var depth = 0, inString = false, escaped = false
        var itemStart = start, status = 0
        var stringStart = start, lastString = start..<start
        var i = start
        while i < view.endIndex {
            let byte = view[i]
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                    lastString = stringStart..<i
                }
                i += 1
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                inString = true
                stringStart = i + 1
            case UInt8(ascii: ":"):
                if depth == 3, view[lastString].elementsEqual("status".utf8) {
                    var j = i + 1
                    while j < view.endIndex, view[j] == UInt8(ascii: " ") { j += 1 }
                    var value = 0
                    while j < view.endIndex, view[j] >= UInt8(ascii: "0"), view[j] <= UInt8(ascii: "9"), value < 1000 {
                        value = value * 10 + Int(view[j] - UInt8(ascii: "0"))
                        j += 1
                    }
                    status = value
                }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                if depth == 1 {
                    itemStart = i
                    status = 0
                }
                depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 1 { items.append((status, itemStart..<(i + 1))) }
                if depth == 0 { return items }
            default:
                break
            }
            i += 1
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

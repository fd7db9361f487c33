import Foundation
import SluiceCore

/// Keys already written into the JSON object being built, so each key is written
/// once: the first writer wins (derived fields, then the record's attributes, then
/// the resource's). Compared as escaped bytes, with a hash to skip most compares.
struct ObjectKeys {
    struct Entry {
        var hash: UInt64
        var keyStart: Int
        var keyEnd: Int
        /// Where the member (`"key":value`) starts, after any comma.
        var memberStart: Int
    }

    var entries: [Entry] = []

    mutating func reset() { entries.removeAll(keepingCapacity: true) }

    static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    /// Whether `key` (escaped bytes) is among the keys written into `buffer`.
    func contains(_ key: UnsafeBufferPointer<UInt8>, hash: UInt64, in buffer: UnsafeBufferPointer<UInt8>) -> Bool {
        for entry in entries where entry.hash == hash && entry.keyEnd - entry.keyStart == key.count {
            if key.count == 0 || memcmp(buffer.baseAddress! + entry.keyStart, key.baseAddress!, key.count) == 0 { return true }
        }
        return false
    }

    /// Starts `"<prefix><key>":` in `out` unless that key is already in the object
    /// (then writes nothing and returns false). `first` says whether a comma is due.
    static func beginMember(_ out: inout JSONOutput, _ keys: inout ObjectKeys, prefix: [UInt8]?, key: UnsafeBufferPointer<UInt8>,
                            _ first: inout Bool) -> Bool {
        let mark = out.count
        if !first { out.append(UInt8(ascii: ",")) }
        let memberStart = out.count
        out.append(UInt8(ascii: "\""))
        let keyStart = out.count
        if let prefix { out.appendRaw(prefix) }
        out.appendStringContents(key)
        let keyEnd = out.count
        let duplicate = out.bytes.withUnsafeBufferPointer { buffer in
            let written = UnsafeBufferPointer(rebasing: buffer[keyStart..<keyEnd])
            let hash = ObjectKeys.hash(written)
            if keys.contains(written, hash: hash, in: buffer) { return true }
            keys.entries.append(.init(hash: hash, keyStart: keyStart, keyEnd: keyEnd, memberStart: memberStart))
            return false
        }
        if duplicate {
            out.bytes.removeLast(out.count - mark)
            return false
        }
        out.append(ascii: "\":")
        first = false
        return true
    }

    static func beginMember(_ out: inout JSONOutput, _ keys: inout ObjectKeys, prefix: [UInt8]?, key: String, _ first: inout Bool) -> Bool {
        var key = key
        return key.withUTF8 { beginMember(&out, &keys, prefix: prefix, key: $0, &first) }
    }
}

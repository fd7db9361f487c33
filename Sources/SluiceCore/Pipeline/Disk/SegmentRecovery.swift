import Foundation
import Logging

/// What the directory held at open, after repairs.
struct RecoveredLog {
    struct Entry {
        var sequence: UInt64
        var offset: Int
        var payloadLength: Int
        var items: Int
        var appendedAtMillis: UInt64
    }

    struct Segment {
        var first: UInt64
        var path: String
        var bytes: Int
        var lastSequence: UInt64
        /// Renamed to `.corrupt`: its entries before the damage are still read, and
        /// the file is left for inspection when every reader is past them.
        var quarantined: Bool
        /// Entries not yet committed by every reader.
        var entries: [Entry]
    }

    var segments: [Segment] = []
    /// The highest sequence seen in a valid entry or implied by a segment's name.
    var highestSequence: UInt64 = 0
}

/// Scans the segments at open, in order, checking every entry's header and checksum.
///
/// - A torn or damaged tail of the last segment (what `kill -9` or a power cut leaves)
///   is truncated away, with a warning saying how many bytes went.
/// - A damaged entry in any earlier segment cannot be from a crash: the segment is
///   renamed to `….corrupt`, an error is logged and counted, the entries before the
///   damage are kept, and the scan goes on with the next segment.
/// - Segments every reader has committed past (known from the next segment's name)
///   are deleted without being read.
///
/// Limitation: damage in the middle of the *last* segment is indistinguishable from a
/// torn write here, so the entries after it are truncated with it (and logged).
struct SegmentRecovery {
    let directory: String
    let signal: OTLPSignal
    let pipeline: String
    /// Entries at or below this sequence are committed by every reader.
    let floor: UInt64
    let logger: Logger
    let quarantined: Counter

    func run() throws(POSIXFile.Failure) -> RecoveredLog {
        var recovered = RecoveredLog()
        let names = try POSIXFile.fileNames(in: directory)
        let segments = names.compactMap { name in SegmentFormat.firstSequence(ofSegmentNamed: name).map { (first: $0, name: name) } }
            .sorted { $0.first < $1.first }
        for (index, segment) in segments.enumerated() {
            let path = directory + "/" + segment.name
            let isLast = index == segments.count - 1
            recovered.highestSequence = max(recovered.highestSequence, segment.first > 0 ? segment.first - 1 : 0)
            if !isLast, segments[index + 1].first > 0, segments[index + 1].first - 1 <= floor {
                unlink(path)
                continue
            }
            let next = isLast ? nil : segments[index + 1].first
            if let scanned = try scan(path: path, first: segment.first, next: next, after: recovered.highestSequence) {
                recovered.highestSequence = max(recovered.highestSequence, scanned.lastSequence)
                recovered.segments.append(scanned)
            }
        }
        return recovered
    }

    /// One segment (`next`: the first sequence of the segment after it); nil when it
    /// ends up empty (and deleted).
    private func scan(path: String, first: UInt64, next: UInt64?, after previous: UInt64) throws(POSIXFile.Failure) -> RecoveredLog.Segment? {
        let isLast = next == nil
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXFile.Failure(operation: "open", path: path, code: errno) }
        defer { close(fd) }
        let size = try POSIXFile.size(fd, path: path)
        var window = ReadWindow(fd: fd, path: path)
        var segment = RecoveredLog.Segment(first: first, path: path, bytes: size, lastSequence: 0, quarantined: false, entries: [])
        var lastSequence = previous
        var offset = 0
        var damage: String?
        var padding = false
        while offset < size {
            // An entry starts with its magic, never with a zero byte.
            if try window.bytes(at: offset, count: 1).first == 0, try window.isZero(from: offset, to: size) {
                padding = true
                break
            }
            guard size - offset >= SegmentFormat.headerSize else { damage = "a partial entry header"; break }
            let bytes = try window.bytes(at: offset, count: SegmentFormat.headerSize)
            guard let header = bytes.withUnsafeBytes({ SegmentFormat.parseHeader($0) }) else { damage = "an invalid entry header"; break }
            guard header.payloadLength <= size - offset - SegmentFormat.headerSize else { damage = "an entry longer than the file"; break }
            guard header.sequence > lastSequence else { damage = "a sequence out of order"; break }
            guard header.signal == signal else { damage = "an entry of signal \(header.signal), not \(signal)"; break }
            let entry = try window.bytes(at: offset, count: SegmentFormat.headerSize + header.payloadLength)
            let valid = entry.withUnsafeBytes { raw in
                SegmentFormat.verify(header: UnsafeRawBufferPointer(rebasing: raw[0..<SegmentFormat.headerSize]),
                                     payload: UnsafeRawBufferPointer(rebasing: raw[SegmentFormat.headerSize...]), expected: header.crc)
            }
            guard valid else { damage = "a checksum mismatch"; break }
            if header.sequence > floor {
                segment.entries.append(RecoveredLog.Entry(sequence: header.sequence, offset: offset, payloadLength: header.payloadLength,
                                                          items: header.items, appendedAtMillis: header.appendedAtMillis))
            }
            lastSequence = header.sequence
            segment.lastSequence = header.sequence
            offset += SegmentFormat.headerSize + header.payloadLength
        }
        if padding, let next, next > lastSequence + 1 {
            // The segment after this one starts later than its last entry: zeros
            // stand where entries were.
            padding = false
            damage = "zeros where entries \(max(lastSequence + 1, first))...\(next - 1) were"
        }
        if padding {
            // Only zeros after the last entry: the padding of a direct write, or the
            // space reserved for submitted writes, of a segment that was not finished
            // (a crash, or the segment being written). Not damage.
            guard ftruncate(fd, off_t(offset)) == 0 else { throw POSIXFile.Failure(operation: "truncate", path: path, code: errno) }
            segment.bytes = offset
        } else if let damage {
            if isLast {
                logger.warning("pipeline log: truncating a torn or damaged tail of the last segment (what a crash or power cut leaves)",
                               metadata: ["pipeline": "\(pipeline)", "segment": "\(path)", "offset": "\(offset)",
                                          "bytes_removed": "\(size - offset)", "reason": "\(damage)"])
                guard ftruncate(fd, off_t(offset)) == 0 else { throw POSIXFile.Failure(operation: "truncate", path: path, code: errno) }
                segment.bytes = offset
            } else {
                let corrupt = path + ".corrupt"
                guard rename(path, corrupt) == 0 else { throw POSIXFile.Failure(operation: "rename", path: path, code: errno) }
                quarantined.increment()
                logger.error("pipeline log: a segment is damaged; it is quarantined and the log goes on with the next one",
                             metadata: ["pipeline": "\(pipeline)", "segment": "\(corrupt)", "offset": "\(offset)", "reason": "\(damage)",
                                        "entries_kept": "\(segment.entries.count)", "bytes_lost": "\(size - offset)"])
                segment.path = corrupt
                segment.quarantined = true
                segment.bytes = offset
            }
        }
        if segment.bytes == 0 {
            // Nothing to read; a quarantined file stays for inspection.
            if !segment.quarantined { unlink(segment.path) }
            return nil
        }
        return segment
    }
}

/// Reads a file through a buffer of a megabyte or so, so that scanning many small
/// entries costs few system calls.
private struct ReadWindow {
    let fd: Int32
    let path: String
    var buffer: [UInt8] = []
    var start = 0

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Whether every byte in `start..<end` (in the file) is zero; read a megabyte at
    /// a time (a reserved segment is mostly zeros).
    mutating func isZero(from start: Int, to end: Int) throws(POSIXFile.Failure) -> Bool {
        var offset = start
        while offset < end {
            let count = min(end - offset, 1 << 20)
            guard try bytes(at: offset, count: count).allSatisfy({ $0 == 0 }) else { return false }
            offset += count
        }
        return true
    }

    /// `count` bytes at `offset` (the caller has checked they are in the file).
    mutating func bytes(at offset: Int, count: Int) throws(POSIXFile.Failure) -> ArraySlice<UInt8> {
        if offset < start || offset + count > start + buffer.count {
            let length = max(count, 1 << 20)
            var fresh = [UInt8](repeating: 0, count: length)
            let read = try POSIXFile.read(fd, into: &fresh, at: offset, path: path)
            fresh.removeLast(length - read)
            buffer = fresh
            start = offset
            guard read >= count else { throw POSIXFile.Failure(operation: "read", path: path, code: EIO) }
        }
        return buffer[(offset - start)..<(offset - start + count)]
    }
}

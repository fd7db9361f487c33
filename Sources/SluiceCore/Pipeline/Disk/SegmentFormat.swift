import CChecksum
import CZlib
import Foundation

/// The bytes of the disk log.
///
/// A pipeline's directory holds segment files `segment-<first sequence, 20 digits>.log`
/// (so name order is sequence order), `cursors/<reader>.cursor`, and any quarantined
/// `segment-….log.corrupt`. A segment is a run of entries and nothing else:
///
/// ```
/// offset  size  field (little-endian)
///      0     4  magic "SLE2" (53 4C 45 32)
///      4     4  payload length n (UInt32)
///      8     8  sequence (UInt64, increasing through the log)
///     16     4  item count (UInt32: log records, spans or data points)
///     20     1  signal (0 logs, 1 traces, 2 metrics)
///     21     3  reserved, zero
///     24     8  append time, milliseconds since the Unix epoch (UInt64)
///     32     4  CRC-32C of the payload followed by bytes 4..<32 of this header
///     36     n  payload: the batch's Export*ServiceRequest protobuf
/// ```
///
/// The payload comes first in the checksum, then the header's fields: the payload's
/// sum can be taken before the header is known.
///
/// Entries written before CRC-32C (magic "SLE1") have the same layout with zlib's
/// CRC-32 and are still read, so a log survives an upgrade; new entries are "SLE2".
enum SegmentFormat {
    static let headerSize = 36
    /// "SLE2" read as a little-endian UInt32: CRC-32C (`sluice_crc32c`).
    static let magic: UInt32 = 0x3245_4C53
    /// "SLE1": CRC-32 (zlib), what Sluice wrote before.
    static let magicCRC32: UInt32 = 0x314C_4553

    struct Header: Equatable {
        var payloadLength: Int
        var sequence: UInt64
        var items: Int
        var signal: OTLPSignal
        var appendedAtMillis: UInt64
        var crc: UInt32
    }

    static func signalCode(_ signal: OTLPSignal) -> UInt8 {
        switch signal {
        case .logs: 0
        case .traces: 1
        case .metrics: 2
        }
    }

    static func signal(code: UInt8) -> OTLPSignal? {
        switch code {
        case 0: .logs
        case 1: .traces
        case 2: .metrics
        default: nil
        }
    }

    /// CRC-32C, the checksum of new entries: in hardware, about four times zlib's
    /// CRC-32 here.
    static func entryChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return crc }
        return sluice_crc32c(crc, base, bytes.count)
    }

    /// zlib's CRC-32: entries with magic "SLE1", and cursor files.
    static func crc(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return crc }
        // zlib takes a uInt length: feed large buffers in pieces.
        var value = UInt(crc)
        var offset = 0
        while offset < bytes.count {
            let n = min(bytes.count - offset, 1 << 30)
            value = CZlib.crc32(value, base.advanced(by: offset).assumingMemoryBound(to: Bytef.self), uInt(n))
            offset += n
        }
        return UInt32(truncatingIfNeeded: value)
    }

    /// The 36 header bytes for an entry whose payload checksums to `payloadCRC`.
    static func header(payloadLength: Int, sequence: UInt64, items: Int, signal: OTLPSignal, appendedAtMillis: UInt64, payloadCRC: UInt32) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: headerSize)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: UInt32(payloadLength).littleEndian, toByteOffset: 4, as: UInt32.self)
            raw.storeBytes(of: sequence.littleEndian, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: UInt32(clamping: items).littleEndian, toByteOffset: 16, as: UInt32.self)
            raw.storeBytes(of: signalCode(signal), toByteOffset: 20, as: UInt8.self)
            raw.storeBytes(of: appendedAtMillis.littleEndian, toByteOffset: 24, as: UInt64.self)
            let sum = entryChecksum(UnsafeRawBufferPointer(rebasing: raw[4..<32]), continuing: payloadCRC)
            raw.storeBytes(of: sum.littleEndian, toByteOffset: 32, as: UInt32.self)
        }
        return bytes
    }

    /// The header's fields, or nil when the bytes are not a header (wrong magic, an
    /// unknown signal, reserved bytes set).
    static func parseHeader(_ raw: UnsafeRawBufferPointer) -> Header? {
        guard raw.count >= headerSize else { return nil }
        let found = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        guard found == magic || found == magicCRC32,
              let signal = signal(code: raw[20]), raw[21] == 0, raw[22] == 0, raw[23] == 0 else { return nil }
        return Header(
            payloadLength: Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))),
            sequence: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            items: Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self))),
            signal: signal,
            appendedAtMillis: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
            crc: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 32, as: UInt32.self)))
    }

    /// Whether `payload` and the header bytes match the header's checksum.
    /// (The header's magic says which checksum.)
    static func verify(header raw: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, expected: UInt32) -> Bool {
        let fields = UnsafeRawBufferPointer(rebasing: raw[4..<32])
        if UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == magicCRC32 {
            return crc(fields, continuing: crc(payload)) == expected
        }
        return entryChecksum(fields, continuing: entryChecksum(payload)) == expected
    }

    static func segmentName(first: UInt64) -> String {
        let digits = String(first)
        return "segment-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".log"
    }

    static func firstSequence(ofSegmentNamed name: String) -> UInt64? {
        guard name.hasPrefix("segment-"), name.hasSuffix(".log") else { return nil }
        let digits = name.dropFirst("segment-".count).dropLast(".log".count)
        guard digits.count == 20, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return UInt64(digits)
    }

    /// A directory name for a pipeline: letters, digits, `.`, `_` and `-` kept, the
    /// rest (the `/` of `logs/audit`) turned into `_`.
    static func fileSafe(_ name: String) -> String { POSIXFile.fileSafe(name) }
}

/// Small POSIX helpers that keep errno.
public enum POSIXFile {
    /// Files Sluice creates that hold data or state (log segments, cursors, dead
    /// letters, the file exporter's output) are its own: another local user must
    /// not read audit records. The Collector's file_storage creates its files 0600.
    public static let privateFileMode: mode_t = 0o600
    /// Directories Sluice creates for them, unless configured
    /// (`file_storage.directory_permissions`, the file exporter's).
    public static let privateDirectoryMode: mode_t = 0o700

    /// `open` of one of Sluice's own files: one it creates (`O_CREAT` in `flags`)
    /// gets `mode` exactly whatever the umask, and so does one an older version
    /// created with a looser mode. -1 with errno on failure.
    public static func openPrivate(_ path: String, flags: Int32, mode: mode_t = privateFileMode) -> Int32 {
        let fd = open(path, flags, mode)
        guard fd >= 0 else { return fd }
        var info = stat()
        if fstat(fd, &info) == 0, info.st_mode & 0o7777 != mode { _ = fchmod(fd, mode) }
        return fd
    }

    /// A file or directory name for a component or pipeline: letters, digits, `.`,
    /// `_` and `-` kept, the rest (the `/` of `logs/audit`) turned into `_`.
    public static func fileSafe(_ name: String) -> String {
        let safe = String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-") ? $0 : "_" })
        return safe.isEmpty || safe.allSatisfy({ $0 == "." }) ? "_" + safe : safe
    }

    public struct Failure: Error, CustomStringConvertible {
        public let operation: String
        public let path: String
        public let code: Int32
        public var description: String { "\(operation) \(path): \(String(cString: strerror(code))) (errno \(code))" }

        public init(operation: String, path: String, code: Int32) {
            self.operation = operation
            self.path = path
            self.code = code
        }
    }

    /// Writes all of `bytes` at `offset`, retrying short writes and EINTR.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws(Failure) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress!.advanced(by: done), bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(operation: "write", path: path, code: errno)
            }
            if n == 0 { throw Failure(operation: "write", path: path, code: EIO) }
            done += n
        }
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws(Failure) {
        let result = bytes.withUnsafeBytes { raw -> Result<Void, Failure> in
            do throws(Failure) { try writeAll(fd, raw, at: offset, path: path) } catch { return .failure(error) }
            return .success(())
        }
        try result.get()
    }

    /// Writes every byte `vectors` point at, in order, from `offset` (`pwritev`),
    /// retrying short writes and EINTR. `vectors` is used up on the way.
    static func writeAll(_ fd: Int32, _ vectors: inout [iovec], at offset: Int, path: String) throws(Failure) {
        // Linux's IOV_MAX.
        let maxVectors = 1024
        var index = 0
        var position = offset
        while index < vectors.count {
            if vectors[index].iov_len == 0 {
                index += 1
                continue
            }
            let count = min(vectors.count - index, maxVectors)
            let n = vectors.withUnsafeBufferPointer { pwritev(fd, $0.baseAddress! + index, Int32(count), off_t(position)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(operation: "write", path: path, code: errno)
            }
            if n == 0 { throw Failure(operation: "write", path: path, code: EIO) }
            position += n
            var left = n
            while left > 0 {
                let length = vectors[index].iov_len
                if left >= length {
                    left -= length
                    index += 1
                } else {
                    vectors[index].iov_base += left
                    vectors[index].iov_len -= left
                    left = 0
                }
            }
        }
    }

    /// Fills `buffer` from `offset`; returns how many bytes were there.
    static func read(_ fd: Int32, into buffer: inout [UInt8], at offset: Int, path: String) throws(Failure) -> Int {
        let result = buffer.withUnsafeMutableBytes { raw -> Result<Int, Failure> in
            do throws(Failure) { return .success(try read(fd, into: raw, at: offset, path: path)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Reads up to `count` bytes at `offset`; fewer only at the end of the file.
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, path: String) throws(Failure) -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress!.advanced(by: done), buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(operation: "read", path: path, code: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    static func sync(_ fd: Int32, path: String) throws(Failure) {
        while fsync(fd) != 0 {
            if errno == EINTR { continue }
            throw Failure(operation: "fsync", path: path, code: errno)
        }
    }

    /// `fdatasync`: the data and the file's size, without its timestamps (one journal
    /// commit fewer on ext4 when only the size changed).
    static func syncData(_ fd: Int32, path: String) throws(Failure) {
        while fdatasync(fd) != 0 {
            if errno == EINTR { continue }
            throw Failure(operation: "fdatasync", path: path, code: errno)
        }
    }

    /// fsyncs a directory, so a file created or renamed in it survives a power cut.
    static func syncDirectory(_ path: String) throws(Failure) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(operation: "open", path: path, code: errno) }
        defer { close(fd) }
        try sync(fd, path: path)
    }

    static func size(_ fd: Int32, path: String) throws(Failure) -> Int {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Failure(operation: "stat", path: path, code: errno) }
        return Int(info.st_size)
    }

    /// `mkdir -p`, keeping the errno of the step that failed. Directories it
    /// creates get `mode` exactly, whatever the umask; existing ones are left as
    /// they are (a mounted volume's owner decides those).
    public static func makeDirectories(_ path: String, mode: mode_t = privateDirectoryMode) throws(Failure) {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) == 0 {
                _ = chmod(current, mode)
            } else if errno != EEXIST {
                throw Failure(operation: "mkdir", path: current, code: errno)
            }
        }
        var info = stat()
        guard stat(path, &info) == 0 else { throw Failure(operation: "stat", path: path, code: errno) }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw Failure(operation: "mkdir", path: path, code: ENOTDIR) }
    }

    static func fileNames(in directory: String) throws(Failure) -> [String] {
        guard let dir = opendir(directory) else { throw Failure(operation: "opendir", path: directory, code: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

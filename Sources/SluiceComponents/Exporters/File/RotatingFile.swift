import Foundation
import Logging
import SluiceCore
import Synchronization

/// Why the output file could not be written, as the exporter's retry reason:
/// `<path>: <strerror>`, with what was being done when it was not a plain write.
struct FileExporterError: Error, CustomStringConvertible {
    var path: String
    var action: String?
    var code: Int32

    init(_ path: String, _ code: Int32, _ action: String? = nil) {
        self.path = path
        self.code = code
        self.action = action
    }

    var description: String {
        let reason = String(cString: strerror(code))
        return action.map { "\(path): \($0): \(reason)" } ?? "\(path): \(reason)"
    }
}

/// The file exporter's output file.
///
/// - A payload is appended whole or not at all: a write that fails part-way is cut
///   back with `ftruncate`, so the retry never lands after a torn line or frame.
/// - With rotation, the file is rolled over before a write would take it past the
///   size limit. The rotated file gets lumberjack's name (what the Collector writes),
///   is gzipped, and only the newest `max_backups` within `max_days` are kept.
/// - When the path stops naming the open file (removed, or renamed by an outside
///   rotator) the next write creates the file again at the path.
///
/// Not thread-safe: the exporter keeps it behind a mutex and calls it from the
/// blocking thread pool, since every method here may wait on the disk.
struct RotatingFile {
    struct Options: Sendable {
        var rotation: FileExporterConfig.Rotation?
        var format: FileExporterConfig.Format
        /// Without rotation or `append`, the Collector starts each run with an empty file.
        var truncateAtStart: Bool
        var fsync: Bool
        var directoryMode: mode_t
        /// Output and rotated files (`file_mode`).
        var fileMode: mode_t
    }
    /// Rotated files are gzipped this much at a time, each piece a gzip member of
    /// its own (RFC 1952 §2.2 allows a file of several; gunzip and zlib read them
    /// as one stream), so a 100 MiB rotation never holds 100 MiB in memory.
    static let compressionChunk = 8 << 20

    let path: String
    let options: Options
    let naming: BackupNaming
    let logger: Logger
    /// Milliseconds since the epoch: names rotated files and ages them.
    let now: @Sendable () -> Int64

    private var fd: Int32 = -1
    private var identity: FileIdentity?
    /// Set when a failed write could not be cut back: the length the file must
    /// return to before anything else is written to it.
    private var cutBackTo: off_t?
    /// A rotation happened and its file still needs gzipping and pruning.
    private var millPending = false

    init(path: String, options: Options, logger: Logger, now: @escaping @Sendable () -> Int64 = RotatingFile.wallClock) {
        self.path = path
        self.options = options
        self.logger = logger
        self.now = now
        naming = BackupNaming(path: path, localTime: options.rotation?.localTime ?? false)
    }

    static let wallClock: @Sendable () -> Int64 = {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    // MARK: Opening and closing

    private static let openedThisRun = Mutex<Set<String>>([])

    /// Opens the file at start: truncated, or continued (with rotation or `append`),
    /// in which case a tail torn by a crash is repaired first.
    mutating func open() throws(FileExporterError) {
        // Started once: a second start must not truncate what was written since.
        guard fd < 0 else { return }
        // "Each run" is each process: an exporter rebuilt by a reload continues the
        // file its predecessor wrote instead of emptying it.
        let firstOpenThisRun = Self.openedThisRun.withLock { $0.insert(path).inserted }
        let continued = !options.truncateAtStart || !firstOpenThisRun
        try openFile(truncate: !continued)
        if continued { try repairTail() }
        if options.rotation != nil { mill() }
    }

    /// Makes the data durable and closes. A cut-back still owed is tried once more;
    /// it belongs to this file, never to the next one opened at the path.
    mutating func close() {
        guard fd >= 0 else { return }
        if let length = cutBackTo {
            if ftruncate(fd, length) != 0 {
                logger.error("file exporter: cannot cut back a torn write; the file ends with part of a request",
                             metadata: ["path": "\(path)", "error": "\(String(cString: strerror(errno)))"])
            }
            cutBackTo = nil
        }
        if fsync(fd) != 0 {
            logger.warning("file exporter: cannot fsync on close", metadata: ["path": "\(path)", "error": "\(String(cString: strerror(errno)))"])
        }
        Foundation.close(fd)
        fd = -1
        identity = nil
    }

    private mutating func openFile(truncate: Bool) throws(FileExporterError) {
        // Read-write: repairing a torn tail reads the file back.
        let flags = O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0)
        var descriptor = POSIXFile.openPrivate(path, flags: flags, mode: options.fileMode)
        if descriptor < 0 && errno == ENOENT {
            do {
                try POSIXFile.makeDirectories(naming.directory, mode: options.directoryMode)
            } catch {
                throw FileExporterError(error.path, error.code, "cannot create the directory")
            }
            descriptor = POSIXFile.openPrivate(path, flags: flags, mode: options.fileMode)
        }
        guard descriptor >= 0 else { throw FileExporterError(path, errno, "cannot open") }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let code = errno
            Foundation.close(descriptor)
            throw FileExporterError(path, code, "cannot stat")
        }
        fd = descriptor
        identity = FileIdentity(status)
        // A new directory entry survives a power cut only once the directory is synced.
        if options.fsync { Self.syncDirectory(naming.directory) }
    }

    /// Follows the path: when it no longer names the open file, the file was removed
    /// or moved away from outside, and writing on into it would hide the data.
    private mutating func ensureOpen() throws(FileExporterError) {
        if fd >= 0 {
            var status = stat()
            if stat(path, &status) == 0 {
                if FileIdentity(status) == identity { return }
            } else if errno != ENOENT {
                throw FileExporterError(path, errno, "cannot stat")
            }
            logger.info("file exporter: the file was moved or removed; writing a new one at the path", metadata: ["path": "\(path)"])
            close()
        }
        try openFile(truncate: false)
    }

    /// A crash in the middle of a write leaves part of a payload at the end of the
    /// file. JSON lines: end that line, so the next request starts a line of its
    /// own. Length-prefixed protobuf: cut the torn frame off, since every frame after
    /// it would be read at the wrong offset. Neither loses an acknowledged request:
    /// the torn one was never counted as delivered and is sent again.
    private mutating func repairTail() throws(FileExporterError) {
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw FileExporterError(path, errno, "cannot stat") }
        let size = off_t(status.st_size)
        guard size > 0 else { return }
        switch options.format {
        case .json:
            var last: UInt8 = 0
            guard pread(fd, &last, 1, size - 1) == 1 else { throw FileExporterError(path, errno, "cannot read the end of the file") }
            guard last != 0x0A else { return }
            logger.warning("file exporter: the file ends inside a line (a write was cut short); ending that line", metadata: ["path": "\(path)"])
            var newline: UInt8 = 0x0A
            guard Foundation.write(fd, &newline, 1) == 1 else { throw FileExporterError(path, errno) }
        case .proto:
            var offset: off_t = 0
            var prefix = [UInt8](repeating: 0, count: 4)
            while offset + 4 <= size {
                guard pread(fd, &prefix, 4, offset) == 4 else { throw FileExporterError(path, errno, "cannot read the file back") }
                let length = off_t(prefix[0]) << 24 | off_t(prefix[1]) << 16 | off_t(prefix[2]) << 8 | off_t(prefix[3])
                if offset + 4 + length > size { break }
                offset += 4 + length
            }
            guard offset < size else { return }
            logger.warning("file exporter: the last frame is torn (a write was cut short); cutting it off",
                           metadata: ["path": "\(path)", "bytes": "\(size - offset)"])
            guard ftruncate(fd, offset) == 0 else { throw FileExporterError(path, errno, "cannot cut off a torn frame") }
        }
    }

    // MARK: Writing

    /// Appends `payload` in one write loop; on any failure the file is as it was
    /// before the call and the error says why.
    mutating func append(_ payload: [UInt8]) throws(FileExporterError) {
        try ensureOpen()
        if let length = cutBackTo {
            guard ftruncate(fd, length) == 0 else { throw FileExporterError(path, errno, "cannot cut back a torn write") }
            cutBackTo = nil
        }
        guard !payload.isEmpty else { return }
        var before = try currentSize()
        if let rotation = options.rotation, before > 0, Int(before) + payload.count > rotation.maxBytes {
            try rotate()
            before = try currentSize()
        }
        let (written, failure) = Self.writeLoop(fd, payload)
        if let failure {
            if written > 0 { cutBack(to: before) }
            throw FileExporterError(path, failure)
        }
        if options.fsync && fsync(fd) != 0 {
            // After a failed fsync the kernel may have dropped the dirty pages and
            // forgotten the error: only writing the payload again makes it durable.
            let code = errno
            cutBack(to: before)
            throw FileExporterError(path, code, "fsync")
        }
        if millPending {
            millPending = false
            mill()
        }
    }

    private func currentSize() throws(FileExporterError) -> off_t {
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw FileExporterError(path, errno, "cannot stat") }
        return off_t(status.st_size)
    }

    private mutating func cutBack(to length: off_t) {
        if ftruncate(fd, length) != 0 { cutBackTo = length }
    }

    // MARK: Rotation

    /// Renames the file to its backup name and opens a new one at the path. The
    /// backup is gzipped after the write that caused the rotation, so the payload
    /// does not wait for the compression.
    private mutating func rotate() throws(FileExporterError) {
        let backup = naming.unusedBackupPath(at: now())
        guard rename(path, backup) == 0 else { throw FileExporterError(path, errno, "cannot rename to \(backup)") }
        logger.debug("file exporter: rotated", metadata: ["path": "\(path)", "backup": "\(backup)"])
        millPending = true
        // Closing only releases the descriptor: what was written is in the backup.
        Foundation.close(fd)
        fd = -1
        identity = nil
        try openFile(truncate: false)
    }

    /// Gzips rotated files that are not yet gzipped and deletes those past
    /// `max_backups` or `max_days`, as lumberjack's "mill" does. Also finishes what
    /// a crash interrupted: a stale temporary file is deleted, a file with a complete
    /// `.gz` beside it is deleted, a file left uncompressed is compressed. Failures
    /// are logged and tried again at the next rotation; the data stays where it is.
    mutating func mill() {
        guard let rotation = options.rotation else { return }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: naming.directory)
        } catch {
            logger.warning("file exporter: cannot list rotated files", metadata: ["directory": "\(naming.directory)", "error": "\(error)"])
            return
        }
        var backups: [String: (time: Int64, plain: Bool, gzipped: Bool)] = [:]
        for name in names {
            if name.hasSuffix(".gz.tmp"), let stale = naming.parse(String(name.dropLast(4))), stale.gzipped {
                unlink(naming.directory + "/" + name)
                continue
            }
            guard let backup = naming.parse(name) else { continue }
            var entry = backups[backup.stem] ?? (backup.time, false, false)
            if backup.gzipped { entry.gzipped = true } else { entry.plain = true }
            backups[backup.stem] = entry
        }
        let newestFirst = backups.sorted { $0.value.time != $1.value.time ? $0.value.time > $1.value.time : $0.key > $1.key }
        let oldestKept = rotation.maxDays > 0 ? now() - Int64(rotation.maxDays) * 86_400_000 : Int64.min
        for (index, (stem, entry)) in newestFirst.enumerated() {
            let plainPath = naming.directory + "/" + stem
            let expired = (rotation.maxBackups > 0 && index >= rotation.maxBackups) || entry.time < oldestKept
            if expired {
                if entry.plain { unlink(plainPath) }
                if entry.gzipped { unlink(plainPath + ".gz") }
            } else if entry.plain {
                // A .gz is renamed into place only after it was fsynced whole, so
                // when both exist the compression finished and only the unlink did not.
                if entry.gzipped {
                    unlink(plainPath)
                    continue
                }
                do {
                    try Self.gzip(plainPath, mode: options.fileMode)
                } catch {
                    logger.warning("file exporter: cannot gzip a rotated file; it stays uncompressed and is tried again at the next rotation",
                                   metadata: ["error": "\(error)"])
                }
            }
        }
    }

    /// `x` → `x.gz`: compressed into `x.gz.tmp`, synced, renamed, and only then is
    /// `x` deleted, so at every moment one complete copy is on disk.
    static func gzip(_ source: String, mode: mode_t) throws(FileExporterError) {
        let target = source + ".gz"
        let temporary = target + ".tmp"
        let input = Foundation.open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw FileExporterError(source, errno, "cannot open") }
        defer { Foundation.close(input) }
        let output = POSIXFile.openPrivate(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: mode)
        guard output >= 0 else { throw FileExporterError(temporary, errno, "cannot create") }
        var finished = false
        defer {
            Foundation.close(output)
            if !finished { unlink(temporary) }
        }
        var chunk = [UInt8](repeating: 0, count: compressionChunk)
        var first = true
        while true {
            let filled = try readFully(input, into: &chunk, path: source)
            // An empty file still becomes a valid (empty) gzip member.
            if filled == 0 && !first { break }
            first = false
            guard let member = chunk.withUnsafeBytes({ Compression.gzip(UnsafeRawBufferPointer(rebasing: $0[0..<filled])) }) else {
                throw FileExporterError(source, ENOMEM, "cannot gzip")
            }
            try writeAll(output, member, path: temporary)
            if filled < chunk.count { break }
        }
        guard fsync(output) == 0 else { throw FileExporterError(temporary, errno, "fsync") }
        guard rename(temporary, target) == 0 else { throw FileExporterError(temporary, errno, "cannot rename to \(target)") }
        finished = true
        syncDirectory((source as NSString).deletingLastPathComponent)
        guard unlink(source) == 0 else { throw FileExporterError(source, errno, "cannot delete after gzipping") }
    }

    // MARK: Helpers

    private static func readFully(_ fd: Int32, into buffer: inout [UInt8], path: String) throws(FileExporterError) -> Int {
        var filled = 0
        let failure: Int32? = buffer.withUnsafeMutableBytes { raw in
            while filled < raw.count {
                let n = read(fd, raw.baseAddress! + filled, raw.count - filled)
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                if n == 0 { break }
                filled += n
            }
            return nil
        }
        if let failure { throw FileExporterError(path, failure, "cannot read") }
        return filled
    }

    /// Writes all of `bytes`, retrying on EINTR; returns how much was written and
    /// the errno that stopped it, if any.
    private static func writeLoop(_ fd: Int32, _ bytes: [UInt8]) -> (written: Int, failure: Int32?) {
        var written = 0
        let failure: Int32? = bytes.withUnsafeBytes { raw in
            while written < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                // write(2) returns 0 only for a zero count; never loop on it.
                if n == 0 { return EIO }
                written += n
            }
            return nil
        }
        return (written, failure)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(FileExporterError) {
        if let failure = writeLoop(fd, bytes).failure { throw FileExporterError(path, failure) }
    }

    static func syncDirectory(_ directory: String) {
        let descriptor = Foundation.open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        _ = fsync(descriptor)
        Foundation.close(descriptor)
    }
}

/// Which file a descriptor or path refers to.
struct FileIdentity: Equatable {
    var device: UInt64
    var inode: UInt64

    init(_ status: stat) {
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
    }
}

/// lumberjack's names for rotated files, which the Collector's file exporter
/// writes: `dir/name.json` → `dir/name-2006-01-02T15-04-05.000.json`, the time in
/// UTC unless `localtime`. Sluice adds `.gz`.
struct BackupNaming: Sendable {
    /// Where the file and its backups are ("." for a bare file name).
    let directory: String
    /// The file name up to its extension (`name`), as Go's `filepath.Ext` splits it.
    let prefix: String
    /// The extension with its dot (`.json`), or empty.
    let ext: String
    let localTime: Bool

    init(path: String, localTime: Bool) {
        let directory = (path as NSString).deletingLastPathComponent
        self.directory = directory.isEmpty ? "." : directory
        let base = (path as NSString).lastPathComponent
        if let dot = base.lastIndex(of: ".") {
            prefix = String(base[..<dot])
            ext = String(base[dot...])
        } else {
            prefix = base
            ext = ""
        }
        self.localTime = localTime
    }

    /// The backup file name for a rotation at `time` (milliseconds since the epoch).
    func name(at time: Int64) -> String {
        var seconds = time_t(time >= 0 ? time / 1000 : (time - 999) / 1000)
        let milliseconds = Int32(time - Int64(seconds) * 1000)
        var parts = tm()
        if localTime { localtime_r(&seconds, &parts) } else { gmtime_r(&seconds, &parts) }
        let stamp = String(format: "%04d-%02d-%02dT%02d-%02d-%02d.%03d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                           parts.tm_hour, parts.tm_min, parts.tm_sec, milliseconds)
        return "\(prefix)-\(stamp)\(ext)"
    }

    /// A backup path not yet taken, plain or gzipped: two rotations within one
    /// millisecond must not overwrite each other (lumberjack would).
    func unusedBackupPath(at time: Int64) -> String {
        var time = time
        while true {
            let path = directory + "/" + name(at: time)
            if access(path, F_OK) != 0 && access(path + ".gz", F_OK) != 0 { return path }
            time += 1
        }
    }

    /// A rotated file's name without `.gz`, its time, and whether it is gzipped;
    /// `nil` for anything else in the directory (the live file among them).
    func parse(_ name: String) -> (stem: String, time: Int64, gzipped: Bool)? {
        guard name.hasPrefix(prefix + "-") else { return nil }
        var rest = Substring(name).dropFirst(prefix.count + 1)
        var stem = Substring(name)
        let gzipped = rest.hasSuffix(ext + ".gz")
        if gzipped {
            rest = rest.dropLast(ext.count + 3)
            stem = stem.dropLast(3)
        } else if rest.hasSuffix(ext) {
            rest = rest.dropLast(ext.count)
        } else {
            return nil
        }
        guard let time = parseStamp(Array(rest.utf8)) else { return nil }
        return (String(stem), time, gzipped)
    }

    /// `2006-01-02T15-04-05.000` → milliseconds since the epoch.
    private func parseStamp(_ s: [UInt8]) -> Int64? {
        guard s.count == 23, s[4] == UInt8(ascii: "-"), s[7] == UInt8(ascii: "-"), s[10] == UInt8(ascii: "T"),
              s[13] == UInt8(ascii: "-"), s[16] == UInt8(ascii: "-"), s[19] == UInt8(ascii: ".") else { return nil }
        func number(_ range: Range<Int>) -> Int32? {
            var value: Int32 = 0
            for i in range {
                guard s[i] >= UInt8(ascii: "0"), s[i] <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int32(s[i] - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
              let minute = number(14..<16), let second = number(17..<19), let millisecond = number(20..<23) else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        parts.tm_isdst = -1
        let seconds = localTime ? mktime(&parts) : timegm(&parts)
        return Int64(seconds) * 1000 + Int64(millisecond)
    }
}

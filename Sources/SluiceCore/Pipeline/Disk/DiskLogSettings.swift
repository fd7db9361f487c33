import Foundation

/// When the disk log makes appended data durable.
public enum FsyncPolicy: Sendable, Equatable {
    /// Every entry is fsynced before the client is answered. Entries written while
    /// one fsync runs share the next one (group commit), so this costs one fsync per
    /// round of the writer, not one per request.
    case always
    /// Entries are written (into the page cache) before the client is answered and
    /// fsynced every `interval` in the background: a `kill -9` loses nothing, a power
    /// cut at most the last interval.
    case interval(Duration)
    /// Never fsync: the kernel writes back when it likes. Survives `kill -9` only.
    case never

    public static let `default` = FsyncPolicy.interval(.milliseconds(200))
}

/// What `append` does when the log's byte limit would be passed.
public enum WhenFull: String, Sendable, Equatable {
    /// Refuse: receivers answer 429/503 with Retry-After and nothing is lost.
    case block
    /// Delete the oldest segments, whether or not every exporter has read them; the
    /// dropped items are counted and logged.
    case dropOldest = "drop_oldest"
}

public struct DiskLogSettings: Sendable, Equatable {
    public var fsync: FsyncPolicy
    /// Bytes on disk (segments plus entries not yet written) the log may hold.
    public var maxSizeBytes: Int
    public var whenFull: WhenFull
    /// Size at which a new segment file is started. Capped at a quarter of
    /// `maxSizeBytes`, so that space goes back in steps small enough for a full log
    /// to take data again once its readers catch up.
    public var segmentBytes: Int

    /// After a failed write (a full disk), appends are refused this long before one
    /// is let through to test the disk again.
    public var writeRetryDelay: Duration = .seconds(1)

    /// Write segments with `O_DIRECT`, past the page cache (see `SegmentAppender`).
    /// Falls back to buffered writes by itself where the file system refuses it.
    public var directIO = true

    /// Mode of the directories the log creates (`file_storage.directory_permissions`);
    /// its files are always `POSIXFile.privateFileMode`.
    public var directoryMode: mode_t = POSIXFile.privateDirectoryMode

    /// An event loop's inline write that takes longer than this plus 1 ms per 400 KB
    /// (a local disk's pace) hands writing to the writer thread for 10 s.
    var slowInlineWrite: Duration = .milliseconds(1)

    public init(fsync: FsyncPolicy = .default, maxSizeBytes: Int = 1 << 30, whenFull: WhenFull = .block, segmentBytes: Int = 64 << 20) {
        self.fsync = fsync
        self.maxSizeBytes = maxSizeBytes
        self.whenFull = whenFull
        self.segmentBytes = segmentBytes
    }

    /// The segment size actually used (see `segmentBytes`).
    var effectiveSegmentBytes: Int { max(4096, min(segmentBytes, maxSizeBytes / 4)) }

    /// Decoded batches kept in memory for readers, so that a reader that keeps up
    /// never reads back from disk.
    ///
    /// Twice the memory log's default: entries stay in it from append until every
    /// reader commits, which is a write longer than in a memory log, and a reader
    /// pushed out of it once decodes entries again, which costs as much CPU as taking
    /// them did and pushes it further out. At 64 MiB, 8 clients sending 1,000-record
    /// requests as fast as they could made the reader decode 2,300 of 3,000 entries
    /// again (twice the CPU, 189 MiB peak RSS); at 128 MiB none (139 MiB).
    var memoryBudgetBytes: Int { max(0, min(128 << 20, maxSizeBytes / 4)) }
}

/// A disk log that cannot be opened. The message names the path, the system's reason
/// and what to do.
public struct DiskLogError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { message }

    static func notWritable(_ path: String, pipeline: String, operation: String, errno code: Int32) -> DiskLogError {
        DiskLogError(path: path, message: """
            pipeline \(pipeline): the log directory \(path) is not writable (\(operation) failed: \
            \(String(cString: strerror(code))), errno \(code)). Give the user Sluice runs as write access \
            to it (in Kubernetes: a volume mounted without readOnly, with fsGroup set), or point \
            file_storage's directory at a writable path.
            """)
    }
}

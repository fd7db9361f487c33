import CSluiceShims
import Foundation

/// Appends entries to the active segment through a staging buffer aligned for
/// direct I/O (`O_DIRECT`).
///
/// Why direct I/O: a buffered write makes the kernel allocate a page-cache page for
/// every 4 KiB of the log, charge it to the pod's memory cgroup and write it back
/// later. On the CI machine (ext4 on virtio) that costs 2.4 s of system time per GB
/// written; a direct write of the same bytes costs 0.12 s. The log is written once
/// and read back only by a reader that fell behind, so the page cache buys nothing,
/// and with direct I/O the log no longer fills the pod's memory with it.
///
/// Direct I/O needs the file offset, the length and the buffer address aligned to the
/// device's block; entries are not. So the staging buffer starts at the block
/// boundary at or before the file's logical end: its first bytes are the end of what
/// is already on disk (written again, unchanged, with the next write), and a write is
/// padded with zeros to a whole block. Until `finish` cuts it, the file is longer than
/// its entries by less than a block of zeros; recovery takes such a tail for padding.
///
/// A file system that refuses direct I/O (EINVAL: tmpfs before Linux 6.6, some FUSE
/// and network file systems) gets buffered writes instead: at open, or at the first
/// write it refuses (then `direct` turns false).
///
/// Owned by the writer thread; not thread-safe.
final class SegmentAppender {
    /// Covers 512-byte and 4 KiB logical blocks.
    static let blockSize = 4096
    /// Whole blocks are written out when this much is staged; an entry larger than
    /// this goes to disk in pieces.
    static let stagingCapacity = 4 << 20

    let fd: Int32
    let path: String
    private(set) var direct: Bool
    /// Bytes of whole entries on disk: the file's logical size.
    private(set) var committed: Int
    private let staging: UnsafeMutableRawPointer
    /// The file offset of `staging[0]`.
    private var stagingOffset: Int
    private var stagedCount = 0
    /// The committed bytes of the block at `alignedDown(committed)`, to put back
    /// in front of the staging buffer when a write fails.
    private let anchor: UnsafeMutableRawPointer
    private var anchorCount = 0
    /// A write of whole blocks during `append` failed; `flush` reports it.
    private var pendingFailure: POSIXFile.Failure?

    /// Bytes appended, committed or not.
    var end: Int { stagingOffset + stagedCount }

    /// Takes over `fd` (opened for reading and writing, with `O_DIRECT` when `direct`),
    /// whose entries end at `size`. Reads the block the next entry starts in, so
    /// it can be written again whole.
    init(fd: Int32, path: String, direct: Bool, size: Int) throws(POSIXFile.Failure) {
        self.fd = fd
        self.path = path
        self.direct = direct
        self.committed = size
        var staging: UnsafeMutableRawPointer?, anchor: UnsafeMutableRawPointer?
        guard posix_memalign(&staging, Self.blockSize, Self.stagingCapacity) == 0, let staging,
              posix_memalign(&anchor, Self.blockSize, Self.blockSize) == 0, let anchor else {
            free(staging)
            throw POSIXFile.Failure(operation: "allocate a write buffer for", path: path, code: ENOMEM)
        }
        self.staging = staging
        self.anchor = anchor
        stagingOffset = direct ? size / Self.blockSize * Self.blockSize : size
        // From here on `deinit` frees the buffers if this throws.
        let partial = size - stagingOffset
        if partial > 0 {
            let read = try POSIXFile.read(fd, into: UnsafeMutableRawBufferPointer(start: staging, count: Self.blockSize), at: stagingOffset, path: path)
            guard read >= partial else { throw POSIXFile.Failure(operation: "read", path: path, code: EIO) }
            stagedCount = partial
        }
        saveAnchor()
    }

    deinit {
        free(staging)
        free(anchor)
    }

    /// Opens a segment for appending, with direct I/O when asked and the file system
    /// allows it. Returns the descriptor and whether it is direct; -1 with errno set
    /// when the file cannot be opened at all.
    static func open(_ path: String, flags: Int32, direct: Bool) -> (fd: Int32, direct: Bool) {
        let base = O_RDWR | O_CLOEXEC | flags
        if direct {
            let fd = Foundation.open(path, base | sluice_o_direct(), 0o644)
            if fd >= 0 { return (fd, true) }
            if errno != EINVAL { return (-1, false) }
        }
        return (Foundation.open(path, base, 0o644), false)
    }

    /// Copies `bytes` into the staging buffer, writing out whole blocks when it fills.
    /// Nothing is committed until `flush`.
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard var source = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            if pendingFailure != nil { return }
            if stagedCount == Self.stagingCapacity { writeWholeBlocks() }
            let n = min(left, Self.stagingCapacity - stagedCount)
            memcpy(staging + stagedCount, source, n)
            stagedCount += n
            source += n
            left -= n
        }
    }

    func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Writes everything appended (the last block padded with zeros) and commits it.
    /// On failure the file is cut back to the last commit, what was appended since is
    /// forgotten, and the error is thrown.
    func flush() throws(POSIXFile.Failure) {
        if let failure = pendingFailure {
            rollback()
            throw failure
        }
        guard end > committed else { return }
        let alignment = direct ? Self.blockSize : 1
        let length = (stagedCount + alignment - 1) / alignment * alignment
        memset(staging + stagedCount, 0, length - stagedCount)
        if let failure = write(length) {
            rollback()
            throw failure
        }
        committed = end
        keepLastBlock()
        saveAnchor()
    }

    /// Cuts the padding off the file (before it is closed for good, or left behind
    /// for a newer segment).
    func finish() {
        _ = ftruncate(fd, off_t(committed))
    }

    // MARK: Internals

    /// Writes the staged whole blocks and moves the partial one to the front.
    private func writeWholeBlocks() {
        let alignment = direct ? Self.blockSize : 1
        let whole = stagedCount / alignment * alignment
        guard whole > 0 else { return }
        if let failure = write(whole) {
            pendingFailure = failure
            return
        }
        keepLastBlock()
    }

    /// After a successful write: the staging buffer keeps only the partial block
    /// the next entry starts in.
    private func keepLastBlock() {
        let alignment = direct ? Self.blockSize : 1
        let whole = stagedCount / alignment * alignment
        guard whole > 0 else { return }
        let rest = stagedCount - whole
        if rest > 0 { memmove(staging, staging + whole, rest) }
        stagingOffset += whole
        stagedCount = rest
    }

    private func saveAnchor() {
        anchorCount = stagedCount
        if anchorCount > 0 { memcpy(anchor, staging, anchorCount) }
    }

    /// Back to the state of the last commit: the file cut there, the staging buffer
    /// holding only its last partial block.
    private func rollback() {
        pendingFailure = nil
        _ = ftruncate(fd, off_t(committed))
        stagingOffset = committed - anchorCount
        stagedCount = anchorCount
        if anchorCount > 0 { memcpy(staging, anchor, anchorCount) }
    }

    /// Writes `length` staged bytes at `stagingOffset`; nil when all were written.
    private func write(_ length: Int) -> POSIXFile.Failure? {
        let bytes = UnsafeRawBufferPointer(start: staging, count: length)
        guard direct else {
            do throws(POSIXFile.Failure) { try POSIXFile.writeAll(fd, bytes, at: stagingOffset, path: path) } catch { return error }
            return nil
        }
        while true {
            let n = pwrite(fd, bytes.baseAddress!, length, off_t(stagingOffset))
            if n == length { return nil }
            if n >= 0 {
                // A short direct write leaves an unaligned rest that cannot be written
                // directly; it happens when the file system is full.
                return POSIXFile.Failure(operation: "write", path: path, code: ENOSPC)
            }
            let code = errno
            if code == EINTR { continue }
            guard code == EINVAL, fallBackToBuffered() else { return POSIXFile.Failure(operation: "write", path: path, code: code) }
            do throws(POSIXFile.Failure) { try POSIXFile.writeAll(fd, bytes, at: stagingOffset, path: path) } catch { return error }
            return nil
        }
    }

    /// The file system took `O_DIRECT` at open but refuses the write: go on buffered.
    private func fallBackToBuffered() -> Bool {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~sluice_o_direct()) == 0 else { return false }
        direct = false
        return true
    }
}

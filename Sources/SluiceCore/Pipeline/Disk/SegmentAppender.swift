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
/// Submitted writes (`aio`): a direct write waits about 230 µs for the
/// device (376 KB on the CI machine), and a client waits with it. Handed to the
/// kernel with `io_submit` instead, it returns in about 30 µs, and what it holds
/// survives the process as a buffered write's would: when a process dies, the kernel
/// finishes its submitted I/O before letting go of its memory (`exit_aio`). So an
/// entry counts as written once submitted. ext4 runs a direct write that extends the
/// file synchronously even when submitted, so such a segment first reserves its
/// whole size (`fallocate`); that also keeps a full disk from failing a write
/// after its entries were answered (without room for it, writes are made here and
/// report a full disk before answering). One write is in flight at a time: the next one
/// rewrites the block this one ends in, and two writes of one block in flight may
/// land in either order. Entries appended meanwhile are staged behind it.
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
    /// Where writes are submitted; nil when they are made here.
    private var aio: AIOContext?
    /// Bytes from `staging[0]` submitted and not yet complete.
    private var submittedLength = 0
    /// A submitted write failed, and so did writing it again here: its entries were
    /// answered already. `takeLostWrite` reports it once.
    private var lostWrite: POSIXFile.Failure?

    /// Writes are submitted, not made here.
    var submits: Bool { aio != nil }

    /// A write was submitted and has not been seen to complete.
    var writing: Bool { submittedLength > 0 }

    /// Bytes appended, committed or not.
    var end: Int { stagingOffset + stagedCount }

    /// Takes over `fd` (opened for reading and writing, with `O_DIRECT` when `direct`),
    /// whose entries end at `size`. Reads the block the next entry starts in, so
    /// it can be written again whole.
    /// With `aio` (and a new, empty, direct segment), reserves `reserve` bytes and
    /// submits writes through it. Without room for the reservation or fallocate, or
    /// on tmpfs, writes are made here.
    init(fd: Int32, path: String, direct: Bool, size: Int, aio: AIOContext? = nil, reserve: Int = 0) throws(POSIXFile.Failure) {
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
        if let aio, direct, size == 0, reserve > 0, !Self.isInMemory(fd) {
            if sluice_fallocate(fd, Int64((reserve + Self.blockSize - 1) / Self.blockSize * Self.blockSize)) == 0 {
                self.aio = aio
            } else {
                // Not enough room for a whole segment (or no fallocate): writes made
                // here report a full disk entry by entry. A failed fallocate may
                // leave blocks behind.
                _ = ftruncate(fd, 0)
            }
        }
    }

    /// tmpfs: its "disk" is memory, so reserving a segment would take that memory
    /// up front, and it has no device to wait for.
    private static func isInMemory(_ fd: Int32) -> Bool { sluice_is_tmpfs(fd) == 1 }

    deinit {
        // The buffer must outlive a write still in flight.
        completeSubmitted()
        free(staging)
        free(anchor)
    }

    /// Opens a segment for appending, with direct I/O when asked and the file system
    /// allows it. Returns the descriptor and whether it is direct; -1 with errno set
    /// when the file cannot be opened at all.
    static func open(_ path: String, flags: Int32, direct: Bool) -> (fd: Int32, direct: Bool) {
        let base = O_RDWR | O_CLOEXEC | flags
        if direct {
            let fd = POSIXFile.openPrivate(path, flags: base | sluice_o_direct())
            if fd >= 0 { return (fd, true) }
            if errno != EINVAL { return (-1, false) }
        }
        return (POSIXFile.openPrivate(path, flags: base), false)
    }

    /// Copies `bytes` into the staging buffer, writing out whole blocks when it fills.
    /// Nothing is committed until `flush`.
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard var source = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            if pendingFailure != nil { return }
            if stagedCount == Self.stagingCapacity {
                completeSubmitted()
                writeWholeBlocks()
            }
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

    /// Writes everything appended (the last block padded with zeros) and commits it:
    /// submitted, when writes are, after the previous one completed. On failure the
    /// file is cut back to the last commit, what was appended since is forgotten, and
    /// the error is thrown.
    func flush() throws(POSIXFile.Failure) {
        completeSubmitted()
        if let failure = pendingFailure {
            rollback()
            throw failure
        }
        guard end > committed else { return }
        let alignment = direct ? Self.blockSize : 1
        let length = (stagedCount + alignment - 1) / alignment * alignment
        memset(staging + stagedCount, 0, length - stagedCount)
        if let aio {
            if sluice_aio_pwrite(aio.context, fd, staging, length, Int64(stagingOffset)) == 0 {
                submittedLength = length
                committed = end
                return
            }
            // The kernel would not queue it (no AIO for this file after all): write
            // here from now on.
            self.aio = nil
        }
        if let failure = write(length) {
            rollback()
            throw failure
        }
        committed = end
        keepLastBlock()
        saveAnchor()
    }

    /// Whether the submitted write, if any, has completed, without waiting; if it has,
    /// as `completeSubmitted`.
    func pollSubmitted() -> Bool { reap(wait: false) }

    /// Waits for the submitted write, if any. One that failed is made again here; if
    /// that fails too, `takeLostWrite` says so.
    func completeSubmitted() { _ = reap(wait: true) }

    /// Takes the submitted write's completion; false when it has not come (only
    /// without `wait`).
    private func reap(wait: Bool) -> Bool {
        guard submittedLength > 0, let aio else { return true }
        var result: Int64 = 0
        let reaped = sluice_aio_reap(aio.context, wait ? 1 : 0, &result)
        if reaped == 0 { return false }
        // io_getevents itself failed: the write's fate is unknown, so make it again.
        if reaped < 0 { result = Int64(reaped) }
        let length = submittedLength
        submittedLength = 0
        if result != Int64(length) {
            if let failure = write(length) {
                lostWrite = failure
            } else if result >= 0 {
                // A short write: ENOSPC despite the reservation, or a file system that
                // does not keep it. Writing here succeeded; go on that way.
                self.aio = nil
            }
        }
        keepLastBlock()
        saveAnchor()
        return true
    }

    /// A submitted write that was lost after its entries were answered (the device
    /// failed it twice), once.
    func takeLostWrite() -> POSIXFile.Failure? {
        defer { lostWrite = nil }
        return lostWrite
    }

    /// Cuts the padding and the reserved space off the file (before it is closed for
    /// good, or left behind for a newer segment).
    func finish() {
        completeSubmitted()
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
        keepLastBlock(written: whole)
    }

    /// After a successful write of the first `written` staged bytes (everything up to
    /// `committed` unless said): the staging buffer keeps the partial block the next
    /// entry starts in, and what was staged after it.
    private func keepLastBlock(written: Int? = nil) {
        let alignment = direct ? Self.blockSize : 1
        let whole = (written ?? committed - stagingOffset) / alignment * alignment
        guard whole > 0 else { return }
        let rest = stagedCount - whole
        if rest > 0 { memmove(staging, staging + whole, rest) }
        stagingOffset += whole
        stagedCount = rest
    }

    private func saveAnchor() {
        anchorCount = committed - stagingOffset
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

/// A Linux AIO context (`io_setup`), one per disk log: `io_destroy` waits for an RCU
/// grace period (milliseconds), too slow for every segment.
final class AIOContext {
    let context: UInt

    /// nil when the kernel offers no AIO (or a seccomp profile refuses it).
    init?() {
        var context: UInt = 0
        guard sluice_aio_setup(4, &context) == 0 else { return nil }
        self.context = context
    }

    deinit { _ = sluice_aio_destroy(context) }
}

import Foundation
import SluiceCore
#if canImport(Glibc)
import Glibc
#endif

/// Where a chain's head is kept between runs, so the first record after a restart
/// links to the last record before it (`integrity_prev` plus
/// `integrity_prev_stream` / `integrity_prev_seq`) and `sluice verify` can tell a
/// restart from a removed run of records.
///
/// One small file per processor and pipeline, rewritten in place after every
/// appended batch (no fsync: after a crash the head may be a few batches old, and
/// the next run then links to a record before the old stream's end, which verify
/// accepts; see docs/processors.md). Files are 0600 in a 0700 directory.
struct IntegrityChainStore {
    struct Head: Equatable {
        var stream: String
        var seq: Int64
        var hash: String
    }

    let path: String
    private let fd: Int32

    /// Opens (creating) the head file; nil with the reason when it cannot.
    static func open(directory: String, processor: ComponentID, pipeline: String) -> Result<IntegrityChainStore, POSIXFile.Failure> {
        do {
            try POSIXFile.makeDirectories(directory)
        } catch {
            return .failure(error)
        }
        let path = directory + "/" + POSIXFile.fileSafe(processor.description) + "__" + POSIXFile.fileSafe(pipeline) + ".chain"
        let fd = POSIXFile.openPrivate(path, flags: O_RDWR | O_CREAT | O_CLOEXEC)
        guard fd >= 0 else { return .failure(POSIXFile.Failure(operation: "open", path: path, code: errno)) }
        return .success(IntegrityChainStore(path: path, fd: fd))
    }

    /// The head the last run left, if any (a damaged file counts as none).
    func read() -> Head? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = pread(fd, &buffer, buffer.count, 0)
        guard n > 0,
              let object = try? JSONSerialization.jsonObject(with: Data(buffer[0..<n])) as? [String: Any],
              let stream = object["stream"] as? String, let seq = (object["seq"] as? NSNumber)?.int64Value,
              let hash = object["hash"] as? String else { return nil }
        return Head(stream: stream, seq: seq, hash: hash)
    }

    func write(_ head: Head) throws(POSIXFile.Failure) {
        var out = JSONOutput()
        out.append(ascii: "{\"stream\":")
        out.appendString(head.stream)
        out.append(ascii: ",\"seq\":")
        out.appendInt(head.seq)
        out.append(ascii: ",\"hash\":")
        out.appendString(head.hash)
        out.append(ascii: "}\n")
        try POSIXFile.writeAll(fd, out.bytes, at: 0, path: path)
        _ = ftruncate(fd, off_t(out.bytes.count))
    }

    func close() {
        _ = fsync(fd)
        _ = Glibc.close(fd)
    }
}

import Foundation

/// Each reader's committed position, one small file per reader in `<dir>/cursors/`:
/// `<reader, file-safe>.cursor`, 16 bytes: magic "SLC1", the last committed sequence
/// (UInt64 little-endian), and the CRC-32 of the first 12 bytes. A file is replaced by
/// writing a temporary file and renaming it over the old one, so a crash leaves the
/// old position or the new one. A missing or damaged file reads as "no cursor": the
/// reader then starts at the oldest entry on disk (duplicates, never loss).
struct CursorStore {
    let directory: String
    let syncWrites: Bool

    static let magic: UInt32 = 0x3143_4C53 // "SLC1" little-endian
    static let suffix = ".cursor"

    func path(_ reader: ComponentID) -> String { directory + "/" + reader.fileSafe + Self.suffix }

    /// Every saved position, by the reader's file-safe name.
    func loadAll() -> [String: UInt64] {
        guard let names = try? POSIXFile.fileNames(in: directory) else { return [:] }
        var positions: [String: UInt64] = [:]
        for name in names where name.hasSuffix(Self.suffix) {
            let key = String(name.dropLast(Self.suffix.count))
            if let value = load(path: directory + "/" + name) { positions[key] = value }
        }
        return positions
    }

    func load(path: String) -> UInt64? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 17)
        let count = (try? POSIXFile.read(fd, into: &bytes, at: 0, path: path)) ?? 0
        guard count == 16 else { return nil }
        return bytes.withUnsafeBytes { raw -> UInt64? in
            guard UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == Self.magic else { return nil }
            let sum = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
            guard SegmentFormat.crc(UnsafeRawBufferPointer(rebasing: raw[0..<12])) == sum else { return nil }
            return UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt64.self))
        }
    }

    func save(_ reader: ComponentID, committed: UInt64) throws(POSIXFile.Failure) {
        var bytes = [UInt8](repeating: 0, count: 16)
        bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: committed.littleEndian, toByteOffset: 4, as: UInt64.self)
            let sum = SegmentFormat.crc(UnsafeRawBufferPointer(rebasing: raw[0..<12]))
            raw.storeBytes(of: sum.littleEndian, toByteOffset: 12, as: UInt32.self)
        }
        let target = path(reader)
        let temporary = target + ".tmp"
        let fd = POSIXFile.openPrivate(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXFile.Failure(operation: "open", path: temporary, code: errno) }
        do throws(POSIXFile.Failure) {
            try POSIXFile.writeAll(fd, bytes, at: 0, path: temporary)
            if syncWrites { try POSIXFile.sync(fd, path: temporary) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, target) == 0 else {
            let code = errno
            unlink(temporary)
            throw POSIXFile.Failure(operation: "rename", path: target, code: code)
        }
        if syncWrites { try POSIXFile.syncDirectory(directory) }
    }
}

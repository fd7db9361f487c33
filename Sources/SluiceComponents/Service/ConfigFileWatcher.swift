import Foundation
import Synchronization

/// Notices when the configuration file says something new, for a reload without a
/// signal — a Kubernetes ConfigMap update is the case to serve: the kubelet writes a
/// new timestamped directory and swaps the `..data` symlink, so the file's own path,
/// inode and often its mtime tell nothing. The watcher reads through the symlinks and
/// compares a hash of the content, together with the files the configuration's
/// `${file:…}` substitutions read (a mounted Secret changes the same way). Reading a
/// few kilobytes every few seconds is the whole cost.
public final class ConfigFileWatcher: Sendable {
    public let path: String
    private let last: Mutex<UInt64?>

    public init(path: String) {
        self.path = path
        last = Mutex(Self.fingerprint(path: path))
    }

    /// Takes the file as it is now as the loaded one (call right before loading it,
    /// so a reload started another way is not followed by a second one).
    public func rebaseline() { last.withLock { $0 = Self.fingerprint(path: path) } }

    /// True once when the content differs from the last look (a file that cannot be
    /// read counts as unchanged: a ConfigMap swap is not atomic for readers that
    /// follow the old link, and the next look sees the new file).
    public func changed() -> Bool {
        guard let now = Self.fingerprint(path: path) else { return false }
        return last.withLock { seen in
            defer { seen = now }
            return seen != now
        }
    }

    /// Polls every `interval` and yields each change until the task is cancelled.
    public func changes(every interval: Duration) -> AsyncStream<Void> {
        AsyncStream { continuation in
            let task = Task {
                while !Task.isCancelled {
                    do { try await Task.sleep(for: interval) } catch { break }
                    if changed() { continuation.yield() }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// The file where the symlinks lead, for the log.
    public var resolvedPath: String { URL(fileURLWithPath: path).resolvingSymlinksInPath().path }

    /// FNV-1a over the file and every `${file:PATH}` it names, or nil when the file
    /// cannot be read.
    static func fingerprint(path: String) -> UInt64? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: some Sequence<UInt8>) {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
        }
        mix(data)
        for referenced in referencedFiles(String(decoding: data, as: UTF8.self)) {
            mix(referenced.utf8)
            mix(FileManager.default.contents(atPath: referenced) ?? Data())
        }
        return hash
    }

    /// The paths in `${file:PATH}` substitutions.
    static func referencedFiles(_ text: String) -> [String] {
        var paths: [String] = []
        var rest = text[...]
        while let start = rest.range(of: "${file:") {
            rest = rest[start.upperBound...]
            guard let end = rest.firstIndex(of: "}") else { break }
            paths.append(String(rest[..<end]))
            rest = rest[end...]
        }
        return paths
    }
}

import Foundation
import Synchronization

/// An exporter's health as users see it on `/status` and in metrics, so that an
/// operator sees at a glance whether events reach the destination:
/// `active` — delivering (records refused one by one inside an accepted request
/// are dead-lettered and counted, but the destination takes data);
/// `degraded` — failing, the data is kept in the pipeline log and retried;
/// `failed` — not delivered: the destination refused a whole request for good, or
/// retries ran out, and the data goes to the dead-letter file. Someone must act.
public final class ExporterStatus: Sendable {
    public enum State: String, Sendable { case active, degraded, failed }

    public struct Snapshot: Sendable {
        public var state: State
        public var lastError: String?
        public var since: Date
        /// Items written to the dead-letter file since `since`: what this state has
        /// cost, which `sluice replay` would send again.
        public var deadLetteredItems: Int = 0
    }

    public let id: ComponentID
    private let snapshotBox: Mutex<Snapshot>

    public init(id: ComponentID) {
        self.id = id
        snapshotBox = Mutex(Snapshot(state: .active, lastError: nil, since: Date()))
    }

    public var snapshot: Snapshot { snapshotBox.withLock { $0 } }

    /// Returns true when the state changed, so the caller logs the transition once
    /// rather than on every retry.
    @discardableResult
    public func set(_ state: State, error: String? = nil) -> Bool {
        snapshotBox.withLock { s in
            if let error { s.lastError = error }
            guard s.state != state else { return false }
            s.state = state
            s.since = Date()
            s.deadLetteredItems = 0
            return true
        }
    }

    /// Counts items the exporter wrote to the dead-letter file.
    public func deadLettered(_ items: Int) {
        snapshotBox.withLock { $0.deadLetteredItems += items }
    }
}

/// Every exporter's status and lag, for `/status`.
public final class StatusBoard: Sendable {
    public struct Entry: Sendable {
        public let status: ExporterStatus
        /// The exporter's dead-letter file, whose size tells what `sluice replay` will send.
        public let deadLetterPath: String?
        public let lag: @Sendable () -> CursorLag
    }

    private let entries = Mutex<[(ComponentID, Entry)]>([])

    public init() {}

    public func register(_ status: ExporterStatus, deadLetter path: String? = nil, lag: @escaping @Sendable () -> CursorLag) {
        entries.withLock { list in
            list.removeAll { $0.0 == status.id }
            list.append((status.id, Entry(status: status, deadLetterPath: path, lag: lag)))
        }
    }

    /// `{"exporters":{"otlphttp":{"status":"active",…,"dead_lettered_items":0,
    /// "dead_letter":{"path":"data/dead-letter/otlphttp.ndjson","bytes":0}}}}`.
    public func json() -> [UInt8] {
        let list = entries.withLock { $0 }
        var out = JSONOutput()
        out.append(ascii: "{\"exporters\":{")
        for (i, (id, entry)) in list.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            let s = entry.status.snapshot
            let lag = entry.lag()
            out.appendString(id.description)
            out.append(ascii: ":{\"status\":")
            out.appendString(s.state.rawValue)
            out.append(ascii: ",\"since\":")
            out.appendString(ISO8601DateFormatter().string(from: s.since))
            out.append(ascii: ",\"last_error\":")
            if let error = s.lastError { out.appendString(error) } else { out.appendNull() }
            out.append(ascii: ",\"lag\":{\"entries\":")
            out.appendInt(Int64(lag.entries))
            out.append(ascii: ",\"items\":")
            out.appendInt(Int64(lag.items))
            out.append(ascii: ",\"bytes\":")
            out.appendInt(Int64(lag.bytes))
            out.append(ascii: ",\"oldest_age_seconds\":")
            out.appendDouble((lag.oldestAgeSeconds * 1000).rounded() / 1000)
            out.append(ascii: "},\"dead_lettered_items\":")
            out.appendInt(Int64(s.deadLetteredItems))
            if let path = entry.deadLetterPath {
                out.append(ascii: ",\"dead_letter\":{\"path\":")
                out.appendString(path)
                out.append(ascii: ",\"bytes\":")
                out.appendInt(Self.fileSize(path))
                out.append(ascii: "}")
            }
            out.append(ascii: "}")
        }
        out.append(ascii: "}}\n")
        return out.bytes
    }

    /// 0 while the file does not exist: nothing was dead-lettered (or it was moved away).
    static func fileSize(_ path: String) -> Int64 {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }
}

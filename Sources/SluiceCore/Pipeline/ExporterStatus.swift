import Foundation
import Synchronization

/// An exporter's health as users see it on `/status` and in metrics:
/// `active` (delivering), `degraded` (failing and buffering), `failed` (retries
/// exhausted; its data went to the dead-letter file).
public final class ExporterStatus: Sendable {
    public enum State: String, Sendable { case active, degraded, failed }

    public struct Snapshot: Sendable {
        public var state: State
        public var lastError: String?
        public var since: Date
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
            return true
        }
    }
}

/// Every exporter's status and lag, for `/status`.
public final class StatusBoard: Sendable {
    public struct Entry: Sendable {
        public let status: ExporterStatus
        public let lag: @Sendable () -> CursorLag
    }

    private let entries = Mutex<[(ComponentID, Entry)]>([])

    public init() {}

    public func register(_ status: ExporterStatus, lag: @escaping @Sendable () -> CursorLag) {
        entries.withLock { list in
            list.removeAll { $0.0 == status.id }
            list.append((status.id, Entry(status: status, lag: lag)))
        }
    }

    /// `{"exporters":{"otlphttp":{"status":"active",…}}}`.
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
            out.append(ascii: "}}")
        }
        out.append(ascii: "}}\n")
        return out.bytes
    }
}

/// Readers leaving a disk log on a reload (Sources/SluiceComponents/Service/Service+Reload.swift).
///
/// Kept apart from DiskPipelineLog.swift so the reload's two additions stay out of
/// the writer's hot path. A detached reader no longer counts for the floor: its
/// entries go with their segments at the next commit of another reader, and its
/// cursor file stays in `cursors/`, so the exporter resumes there if it comes back
/// while the entries are still on disk. The service detaches a reader only after
/// its delivery task has ended: a read still waiting here would not be woken.
extension DiskPipelineLog {
    public var lastSequence: UInt64 { state.withLock { $0.nextSequence - 1 } }

    public var isClosed: Bool { state.withLock { $0.closed } }

    public func detach(_ reader: ComponentID) {
        _ = state.withLock { s in s.readers.removeValue(forKey: reader) }
    }
}

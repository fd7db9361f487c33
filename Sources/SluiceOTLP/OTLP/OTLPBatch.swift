import COTLP
import Synchronization

/// One decoded OTLP export request: protobuf-c's structs in an arena this batch owns.
///
/// A batch is created by a receiver's decode on one event loop, edited in place by
/// processors on that same task, and only then appended to the pipeline log, after
/// which every reader treats it as immutable. That hand-over discipline is what makes
/// the `@unchecked Sendable` sound; nothing mutates a batch once it is shared.
public final class OTLPBatch: @unchecked Sendable {
    public let signal: OTLPSignal
    let arena: OTLPArena
    /// The `Export*ServiceRequest` message, allocated in `arena`.
    let message: UnsafeMutablePointer<ProtobufCMessage>
    /// The protobuf the batch was decoded from, copied into `arena`, while it still
    /// says exactly what `message` says: the disk log writes it as is instead of
    /// packing the message again. Kept only while `keepsProtobufSource` is on.
    /// Every edit goes through `edit { … }` (OTLPBatch+Editing.swift), whose
    /// editors set this to nil before they change anything. Valid as long as the
    /// batch is.
    public internal(set) var protobufSource: UnsafeRawBufferPointer?
    /// Set by the first change an editor makes.
    var edited = false

    private static let keepSource = Atomic<Bool>(false)

    /// Whether protobuf decodes keep their input (`protobufSource`). Turned on (for
    /// the rest of the process) when a disk log opens, since it writes every batch's
    /// protobuf: a copy into the arena costs a fraction of packing the message
    /// again. Off, decoding is as cheap as it can be for logs that only hold batches
    /// in memory.
    public static var keepsProtobufSource: Bool {
        get { keepSource.load(ordering: .relaxed) }
        set { keepSource.store(newValue, ordering: .relaxed) }
    }

    init(signal: OTLPSignal, arena: OTLPArena, message: UnsafeMutablePointer<ProtobufCMessage>) {
        self.signal = signal
        self.arena = arena
        self.message = message
    }

    /// Memory the decoded batch holds (what pipeline logs count against their limit).
    public var memoryBytes: Int { arena.reservedBytes }

    /// An empty request of `signal`.
    public static func empty(_ signal: OTLPSignal) -> OTLPBatch? {
        guard let arena = OTLPArena(), let message = arena.newMessage(signal.requestDescriptor) else { return nil }
        return OTLPBatch(signal: signal, arena: arena, message: message.assumingMemoryBound(to: ProtobufCMessage.self))
    }
}

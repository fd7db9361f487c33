#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SluiceCore

/// A request body of gateway events → one logs batch: one resource (empty, for
/// `resourcedetection` to fill), one scope (`sluice.events`), a record per event.
///
/// The body is one or more JSON values separated by whitespace, each an event
/// object or an array of them: one object, an array, NDJSON (one object per line)
/// or objects written one after another all read the same way, so a client that
/// labels NDJSON `application/json` is understood. Errors name the byte offset,
/// and the line when the body has more than one.
struct EventsDecoder: Sendable {
    var mapping = EventLogMapping()
    var maxEvents = 10_000
    var maxValues = 250_000
    var maxDepth = 64

    static let scopeName = "sluice.events"

    /// `nil` when the body holds no event (`[]`): nothing to deliver, nothing wrong.
    func decode(_ raw: UnsafeRawBufferPointer, receivedAt observed: UInt64 = Self.now()) throws(OTLPDecodeError) -> OTLPBatch? {
        let text = raw.assumingMemoryBound(to: UInt8.self)
        var reader = JSONValueReader(text, maxDepth: maxDepth, maxValues: maxValues)
        var records: [NewLogRecord] = []
        do throws(OTLPDecodeError) {
            while let (members, offset) = try reader.nextObject() {
                guard records.count < maxEvents else {
                    throw OTLPDecodeError(.tooLarge, "more than \(maxEvents) events in one request (max_events_per_request); send them in smaller requests",
                                          offset: offset)
                }
                switch mapping.record(members, observedTimeUnixNano: observed) {
                case .success(let record): records.append(record)
                case .failure(let problem):
                    throw OTLPDecodeError(.malformed, "event \(records.count + 1): \(problem.field): \(problem.message)", offset: offset)
                }
            }
        } catch {
            throw Self.located(error, in: reader, text: text)
        }
        if records.isEmpty {
            guard reader.offset > 0, text.contains(where: { $0 == UInt8(ascii: "[") }) else {
                throw OTLPDecodeError(.malformed, "the body is empty; send an event object, an array of them, or NDJSON (one object per line)")
            }
            return nil
        }
        do {
            return try OTLPBatch.makeLogs(resource: [], scopeName: Self.scopeName, scopeVersion: SluiceVersion.current, records: records)
        } catch {
            throw OTLPDecodeError(.outOfMemory, "out of memory building \(records.count) log records; retry later")
        }
    }

    /// `error` with the line of its offset, when the body has more than one line.
    private static func located(_ error: OTLPDecodeError, in reader: JSONValueReader, text: UnsafeBufferPointer<UInt8>) -> OTLPDecodeError {
        guard let offset = error.offset, text.contains(UInt8(ascii: "\n")) else { return error }
        var located = error
        located.message += " on line \(reader.line(at: offset))"
        return located
    }

    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}

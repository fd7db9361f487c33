import SluiceCore

/// Cuts a call's events into PutLogEvents requests that keep every limit of the API
/// (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html):
///
/// > The maximum batch size is 1,048,576 bytes. This size is calculated as the sum of
/// > all event messages in UTF-8, plus 26 bytes for each log event.
/// > The maximum number of log events in a batch is 10,000.
/// > The log events in the batch must be in chronological order by their timestamp.
/// > A batch of log events in a single request cannot span more than 24 hours.
/// > Each log event can be no larger than 1 MB.
///
/// One request per stream: events are grouped by stream, sorted by time (stably,
/// so events of one time keep their order), and cut where the next event would
/// break a limit. Events that could never be sent (too large, too old, too far
/// ahead) are returned apart with the reason, for the dead-letter file.
struct PutLogEventsBatcher {
    struct Limits: Sendable {
        var events = 10_000
        var bytes = 1_048_576
        var overheadPerEvent = 26
        /// First and last event of a request at most this far apart.
        var spanMillis: Int64 = 24 * 3_600_000 - 1
        /// One event, overhead included.
        var eventBytes = 1_048_576
        /// Events older than this are refused by CloudWatch Logs (14 days, or the
        /// group's retention when shorter).
        var maxAgeMillis: Int64 = 14 * 86_400_000
        /// Events this far ahead of now are refused.
        var maxAheadMillis: Int64 = 2 * 3_600_000
    }

    var limits = Limits()

    /// What is sent, and what never can be.
    struct Result {
        var payloads: [Payload] = []
        var unsendable: [(record: Int, reason: String)] = []
    }

    func batch(_ events: LogEventEncoder.Output, _ order: [Int], nowMillis: Int64) -> Result {
        var result = Result()
        var byStream: [Int: [Int]] = [:]
        var streams: [Int] = []
        let oldest = nowMillis - limits.maxAgeMillis, newest = nowMillis + limits.maxAheadMillis
        for record in order {
            let time = events.timestamps[record]
            let size = events.messageBytes[record] + limits.overheadPerEvent
            if size > limits.eventBytes {
                result.unsendable.append((record, "an event of \(size) bytes (message plus 26) is over CloudWatch Logs' limit of \(limits.eventBytes) bytes per event"))
            } else if events.messageBytes[record] == 0 {
                result.unsendable.append((record, "an empty message: CloudWatch Logs takes messages of at least 1 byte"))
            } else if time < oldest {
                result.unsendable.append((record, "the event's time (\(time) ms) is more than \(limits.maxAgeMillis / 86_400_000) days in the past: CloudWatch Logs refuses it (too old)"))
            } else if time > newest {
                result.unsendable.append((record, "the event's time (\(time) ms) is more than 2 hours ahead of this host's clock: CloudWatch Logs refuses it (too new); check the sender's clock"))
            } else {
                let stream = events.streamOf[record]
                if byStream[stream] == nil { streams.append(stream) }
                byStream[stream, default: []].append(record)
            }
        }
        for stream in streams {
            let sorted = byStream[stream]!.enumerated().sorted {
                let (a, b) = (events.timestamps[$0.element], events.timestamps[$1.element])
                return a != b ? a < b : $0.offset < $1.offset
            }.map(\.element)
            let name = events.streams[stream]
            var start = 0
            while start < sorted.count {
                var end = start + 1
                var bytes = events.messageBytes[sorted[start]] + limits.overheadPerEvent
                let first = events.timestamps[sorted[start]]
                while end < sorted.count, end - start < limits.events {
                    let next = sorted[end]
                    let size = events.messageBytes[next] + limits.overheadPerEvent
                    guard bytes + size <= limits.bytes, events.timestamps[next] - first <= limits.spanMillis else { break }
                    bytes += size
                    end += 1
                }
                let records = Array(sorted[start..<end])
                let body = Self.body(name, events.records, records)
                result.payloads.append(Payload(records: records, body: body, gzipped: false, rawBytes: bytes))
                start = end
            }
        }
        return result
    }

    /// `{"logGroupName":…,"logStreamName":…,"logEvents":[…]}`.
    static func body(_ name: LogStreamName, _ records: EncodedRecords, _ indices: [Int]) -> [UInt8] {
        var out = JSONOutput()
        out.bytes.reserveCapacity(indices.reduce(96 + name.group.utf8.count + name.stream.utf8.count) { $0 + records.size($1) + 1 })
        out.append(ascii: "{\"logGroupName\":")
        out.appendString(name.group)
        out.append(ascii: ",\"logStreamName\":")
        out.appendString(name.stream)
        out.append(ascii: ",\"logEvents\":[")
        for (i, record) in indices.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.appendRaw(records.bytes[records.range(record)])
        }
        out.append(ascii: "]}")
        return out.bytes
    }
}

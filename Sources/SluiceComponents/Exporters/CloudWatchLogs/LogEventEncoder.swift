import SluiceCore
import SluiceNet

/// Turns log records into PutLogEvents events, `{"timestamp":<ms>,"message":"…"}`,
/// each with the stream it goes to.
///
/// The message is the body as it is with `raw_log: true`; otherwise one JSON object
/// per record, with the Collector exporter's members (`body`, `severity_number`,
/// `severity_text`, `flags`, `trace_id`, `span_id`, `attributes`, `resource`) and
/// the gateway's fields (docs/events.md) also at the top, so that Logs Insights
/// finds them by their own names: `filter action = "block"`.
struct LogEventEncoder: Sendable {
    var logGroup: NameTemplate
    var logStream: NameTemplate
    var rawLog: Bool

    /// The fields security teams query, copied to the top of each message.
    static let gatewayFields: [String] = ["event_id", "event_type", "action", "policy_name", "model", "gateway_id", "user_id", "org_id"]

    /// The events of one call.
    struct Output {
        var records = EncodedRecords()
        /// Each event's time, in milliseconds since the epoch.
        var timestamps: [Int64] = []
        /// Each message's UTF-8 bytes (what CloudWatch Logs counts, plus 26 per event).
        var messageBytes: [Int] = []
        /// Each event's stream, an index into `streams`.
        var streamOf: [Int] = []
        var streams: [LogStreamName] = []
    }

    /// `nowMillis` stands in for records that carry no time at all.
    func encode(_ batches: [OTLPBatch], nowMillis: Int64) -> Output {
        var output = Output()
        var out = JSONOutput()
        out.bytes.reserveCapacity(batches.reduce(0) { $0 + $1.memoryBytes } + 1024)
        var message = JSONObjectWriter()
        var streamIndex: [LogStreamName: Int] = [:]
        for (b, batch) in batches.enumerated() {
            batch.withLogs { request in
                for (r, resourceLogs) in request.resourceLogs.enumerated() {
                    let resource = resourceLogs.resource?.attributes
                    let name = LogStreamName(group: logGroup.render(resource), stream: logStream.render(resource))
                    let stream: Int
                    if let known = streamIndex[name] {
                        stream = known
                    } else {
                        stream = output.streams.count
                        output.streams.append(name)
                        streamIndex[name] = stream
                    }
                    for (s, scopeLogs) in resourceLogs.scopeLogs.enumerated() {
                        for (k, record) in scopeLogs.logRecords.enumerated() {
                            let nanos = record.effectiveTimeUnixNano
                            let millis = nanos == 0 ? nowMillis : Int64(nanos / 1_000_000)
                            message.out.bytes.removeAll(keepingCapacity: true)
                            writeMessage(record, resource: resource, into: &message)
                            out.append(ascii: "{\"timestamp\":")
                            out.appendInt(millis)
                            out.append(ascii: ",\"message\":")
                            message.out.bytes.withUnsafeBufferPointer { out.appendString($0) }
                            out.append(UInt8(ascii: "}"))
                            output.records.ends.append(out.count)
                            output.records.locators.append(RecordLocator(batch: Int32(b), resource: Int32(r), scope: Int32(s), record: Int32(k)))
                            output.timestamps.append(millis)
                            output.messageBytes.append(message.out.count)
                            output.streamOf.append(stream)
                        }
                    }
                }
            }
        }
        output.records.bytes = out.bytes
        return output
    }

    /// The message's bytes (not yet escaped as a JSON string) into `message.out`.
    func writeMessage(_ record: LogRecordView, resource: AttributesView?, into message: inout JSONObjectWriter) {
        if rawLog, let body = record.body, !LogEventEncoder.isEmpty(body) {
            if case .string(let text) = body.value {
                message.out.appendRaw(text.utf8)
            } else {
                message.out.appendRaw(Array(body.stringValue.utf8))
            }
            return
        }
        message.begin()
        if let body = record.body, message.key("body") { body.writePlainJSON(to: &message.out) }
        if record.severityNumber != 0 { message.int("severity_number", Int64(record.severityNumber)) }
        message.string("severity_text", record.severityText)
        if record.droppedAttributesCount != 0 { message.int("dropped_attributes_count", Int64(record.droppedAttributesCount)) }
        if record.flags != 0 { message.int("flags", Int64(record.flags)) }
        message.hex("trace_id", record.traceID)
        message.hex("span_id", record.spanID)
        message.string("event_name", record.eventName)
        for field in Self.gatewayFields {
            if let value = record.attributes[field], message.key(field) { value.writePlainJSON(to: &message.out) }
        }
        message.object("attributes", record.attributes)
        message.object("resource", resource)
        message.end()
    }

    static func isEmpty(_ body: AnyValueView) -> Bool {
        if case .string(let text) = body.value { return text.isEmpty }
        return false
    }
}

/// Where events go: a log group and a stream in it.
struct LogStreamName: Hashable, Sendable, CustomStringConvertible {
    var group: String
    var stream: String
    var description: String { "\(group)/\(stream)" }
}

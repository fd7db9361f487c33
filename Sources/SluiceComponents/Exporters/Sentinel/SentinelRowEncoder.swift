import SluiceCore

/// Turns log records into rows for a Log Analytics table, one JSON object each:
///
/// `{"TimeGenerated":"2026-11-21T10:00:00.123Z","event_id":"…","action":"block",…,
///   "tokens_prompt":42,"Message":"…","SeverityText":"WARN","SeverityNumber":13,
///   "TraceId":"…","SpanId":"…","ServiceName":"ai-gateway","HostName":"gw-7",
///   "Resource":{"service.name":"ai-gateway",…}}`
///
/// - Column names may hold only letters, digits and underscores: an attribute
///   `tokens.prompt` is the column `tokens_prompt`. The gateway's fields
///   (docs/events.md) keep their names, so KQL queries them as they are.
/// - The record's time is `TimeGenerated` for the Logs Ingestion API (every table
///   has it) and `timestamp` too (docs/events.md's name): Azure replaces a
///   TimeGenerated more than two days old with the time of ingestion, and
///   `timestamp` keeps the event's own. The Data Collector API names its time field
///   in the `time-generated-field` header; the row carries it as `timestamp`,
///   stored as `timestamp_t`, and the API suffixes every column with its type
///   (`action_s`, `tokens_prompt_d`, `blocked_b`).
/// - A key is written once: the time first, then the record's attributes, then
///   the record's own fields.
struct SentinelRowEncoder: Sendable {
    /// The columns that carry the record's time.
    let timeColumns: [String]

    func encode(_ batches: [OTLPBatch]) -> EncodedRecords {
        EncodedRecords.logs(batches) { doc, context in
            write(&doc, context)
            return true
        }.records
    }

    func write(_ doc: inout JSONObjectWriter, _ context: LogRecordContext) {
        let record = context.record
        doc.begin()
        for column in timeColumns { doc.time(column, record.effectiveTimeUnixNano, digits: 3) }
        var name: [UInt8] = []
        for attribute in record.attributes {
            guard let value = attribute.value else { continue }
            Self.columnName(attribute.key.utf8, into: &name)
            let fresh = name.withUnsafeBufferPointer { ObjectKeys.beginMember(&doc.out, &doc.keys, prefix: nil, key: $0, &doc.first) }
            if fresh { value.writePlainJSON(to: &doc.out) }
        }
        if let body = record.body, doc.key("Message") { body.writeText(to: &doc.out) }
        doc.string("SeverityText", record.severityText)
        if record.severityNumber != 0 { doc.int("SeverityNumber", Int64(record.severityNumber)) }
        doc.hex("TraceId", record.traceID)
        doc.hex("SpanId", record.spanID)
        if let service = context.resource?["service.name"], doc.key("ServiceName") { service.writeText(to: &doc.out) }
        if let host = context.resource?["host.name"], doc.key("HostName") { host.writeText(to: &doc.out) }
        doc.object("Resource", context.resource)
        doc.end()
    }

    /// Letters, digits and `_` as they are; any other byte (`.`, `-`, a
    /// non-ASCII letter's bytes) becomes `_`; a name that would start with a digit
    /// gets a leading `_`.
    static func columnName(_ key: UnsafeBufferPointer<UInt8>, into name: inout [UInt8]) {
        name.removeAll(keepingCapacity: true)
        if let first = key.first, first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") { name.append(UInt8(ascii: "_")) }
        for byte in key {
            let letter = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            let digit = byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
            name.append(letter || digit || byte == UInt8(ascii: "_") ? byte : UInt8(ascii: "_"))
        }
    }
}

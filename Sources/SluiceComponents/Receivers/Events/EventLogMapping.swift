import SluiceCore

/// How one gateway decision event (docs/events.md) becomes a log record:
/// - every member is an attribute of the same name (objects as maps, arrays as
///   arrays, integers exact, other numbers doubles, `null` an empty value), so
///   `action`, `policy_name`, `user_id`, … reach the SIEM as the fields its rules
///   query;
/// - `timestamp` is `time_unix_nano` (EventTimestamp); the observed time is when
///   the request arrived;
/// - `event_type` (a string) is the record's `event_name`;
/// - `severity`, else `level`: a name (`info`, `warning`, `error`, …) is the
///   severity text and gives its number; a number from 1 to 24 is the number;
/// - `trace_id` (32 hex digits) and `span_id` (16) link the record to a trace;
/// - the whole object is the body, as a map (`body: map`), unless `body: none`.
struct EventLogMapping: Sendable {
    enum Body: String, Sendable, CaseIterable { case map, none }
    var body: Body = .map

    /// The record for `members`, the event object at `offset` of the body. A
    /// `timestamp` that is not one of the accepted forms is an error at its value.
    func record(_ members: [OTLPKeyValue], observedTimeUnixNano: UInt64) -> Result<NewLogRecord, EventMappingError> {
        var record = NewLogRecord()
        record.observedTimeUnixNano = observedTimeUnixNano
        record.attributes = members
        if body == .map { record.body = .map(members) }
        var severitySeen = false
        for member in members {
            switch member.key {
            case Self.timestamp:
                if case .empty = member.value { continue }
                guard let time = EventTimestamp.nanoseconds(member.value) else {
                    return .failure(EventMappingError(field: "timestamp", "expected \(EventTimestamp.expected)"))
                }
                record.timeUnixNano = time
            case Self.eventType:
                if case .string(let name) = member.value { record.eventName = name }
            case Self.severity, Self.level:
                // `severity` wins over `level` wherever each stands.
                guard !severitySeen || member.key == Self.severity else { continue }
                if Self.setSeverity(member.value, on: &record) { severitySeen = true }
            case Self.traceID:
                if case .string(let hex) = member.value, let id = Self.hex(hex, bytes: 16) { record.traceID = id }
            case Self.spanID:
                if case .string(let hex) = member.value, let id = Self.hex(hex, bytes: 8) { record.spanID = id }
            default:
                continue
            }
        }
        return .success(record)
    }

    private static let timestamp = Array("timestamp".utf8)
    private static let eventType = Array("event_type".utf8)
    private static let severity = Array("severity".utf8)
    private static let level = Array("level".utf8)
    private static let traceID = Array("trace_id".utf8)
    private static let spanID = Array("span_id".utf8)

    /// True when `value` gave the record a severity.
    private static func setSeverity(_ value: OTLPValue, on record: inout NewLogRecord) -> Bool {
        switch value {
        case .string(let text):
            record.severityText = text
            record.severityNumber = severityNumber(text)
            return true
        case .int(let number) where (1...24).contains(number):
            record.severityNumber = Int32(number)
            record.severityText = []
            return true
        default:
            return false
        }
    }

    /// The OTLP SeverityNumber of a level name, case-insensitive: the log data
    /// model's short names (https://opentelemetry.io/docs/specs/otel/logs/data-model/#field-severitynumber)
    /// with their number suffixes (`INFO2`), and the syslog names mapped as its
    /// appendix maps them. Unknown names are UNSPECIFIED (0), their text kept.
    static func severityNumber(_ text: [UInt8]) -> Int32 {
        let name = String(decoding: text, as: UTF8.self).lowercased()
        let bases: [(String, Int32)] = [("trace", 1), ("debug", 5), ("info", 9), ("warn", 13), ("error", 17), ("fatal", 21)]
        for (base, number) in bases where name.hasPrefix(base) {
            let suffix = name.dropFirst(base.count)
            if suffix.isEmpty { return number }
            if let step = Int32(suffix), (1...4).contains(step) { return number + step - 1 }
        }
        switch name {
        case "information", "informational": return 9
        case "notice": return 10
        case "warning": return 13
        case "err": return 17
        case "crit", "critical": return 21
        case "alert": return 23
        case "emerg", "emergency", "panic": return 24
        default: return 0
        }
    }

    /// `count` bytes from `2 * count` hex digits; an all-zero id is no id.
    private static func hex(_ text: [UInt8], bytes count: Int) -> [UInt8]? {
        guard text.count == count * 2, let id = JSONValueReader.hexBytes(text), id.contains(where: { $0 != 0 }) else { return nil }
        return id
    }
}

/// A member of an event that has the wrong form.
struct EventMappingError: Error, Sendable {
    let field: String
    let message: String
    init(field: String, _ message: String) {
        self.field = field
        self.message = message
    }
}

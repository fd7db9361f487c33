import Foundation
import SluiceCore

/// Turns log records and spans into HEC event JSON (docs/splunk-hec.md shows an
/// example and every field).
///
/// A log record becomes
/// `{"time":1433188255.500,"host":…,"source":…,"sourcetype":…,"index":…,"event":<body>,"fields":{…}}`:
/// - `time`: seconds with a millisecond fraction, from `time_unix_nano` (or the
///   observed time); left out when both are zero, so Splunk uses the arrival time.
/// - `host`, `source`, `sourcetype`, `index`: from the attributes named in
///   `otel_attrs_to_hec_metadata` (record over resource), else the configuration;
///   left out when empty. The `com.splunk.*` attributes that set them are not
///   repeated in `fields` (`host.name` is).
/// - `fields` (fields_mode indexed/both): indexed fields must be flat strings, so
///   resource then record attributes (the record's win) are flattened — nested maps
///   to dotted keys, arrays of scalars to arrays of strings, arrays holding arrays
///   or maps to a JSON string — plus `trace_id`, `span_id`, `severity_text`,
///   `severity_number` and `event_name` when set.
/// - `event`: the body (a string, or JSON for maps and arrays); with fields_mode
///   event/both an object `{"message":<body>, …the same fields with nested values kept}`.
///
/// Everything is written with `JSONOutput`, which repairs ill-formed UTF-8, so every
/// event is valid JSON whatever the client sent.
struct HECEncoder: Sendable {
    struct Settings: Sendable {
        var source: String = ""
        var sourcetype: String = ""
        var index: String = ""
        var metadata = SplunkHECConfig.MetadataAttributes()
        var severityTextField = "severity_text"
        var severityNumberField = "severity_number"
        var fieldsMode: SplunkHECConfig.FieldsMode = .indexed
        /// `export_raw`: each log record is its body's text and a newline, for the raw endpoint.
        var rawLogs = false

        init() {}

        init(_ config: SplunkHECConfig) {
            source = config.source
            sourcetype = config.sourcetype
            index = config.index
            metadata = config.metadataAttributes
            severityTextField = config.severityTextField
            severityNumberField = config.severityNumberField
            fieldsMode = config.fieldsMode
            rawLogs = config.exportRaw
        }
    }

    /// The resource attribute the Collector reads a per-resource token from. Sluice
    /// does not send with it, and a credential must never become an indexed field.
    static let tokenAttribute = "com.splunk.hec.access_token"
    /// What `event` says when a record has no body: HEC refuses a blank event
    /// (code 12/13), and the record's fields still deserve to be indexed.
    static let emptyBody = "(no body)"

    let settings: Settings

    init(_ settings: Settings) { self.settings = settings }

    /// Every record (or span) of `batches` as one event each, in order.
    func encode(_ batches: [OTLPBatch], signal: OTLPSignal) -> EncodedRecords {
        var writer = EventWriter(settings: settings)
        writer.out.bytes.reserveCapacity(batches.reduce(0) { $0 + $1.memoryBytes } + 4096)
        for (b, batch) in batches.enumerated() {
            switch signal {
            case .logs: batch.withLogs { writer.appendLogs($0, batch: Int32(b)) }
            case .traces: batch.withTraces { writer.appendTraces($0, batch: Int32(b)) }
            case .metrics: writer.appendMetrics(batch, batch: Int32(b))
            }
        }
        writer.events.bytes = writer.out.bytes
        return writer.events
    }
}

// MARK: - Writing

/// Members written once per resource and copied into each of its records' objects.
struct PrecomputedMembers {
    var bytes: [UInt8] = []
    var keys = ObjectKeys()
    /// The member ranges, in order (each `"key":value`, without commas).
    var members: [(entry: ObjectKeys.Entry, end: Int)] = []

    init() {}

    init(bytes: [UInt8], keys: ObjectKeys) {
        self.bytes = bytes
        self.keys = keys
        members = keys.entries.enumerated().map { i, entry in
            (entry, i + 1 < keys.entries.count ? keys.entries[i + 1].memberStart - 1 : bytes.count)
        }
    }
}

/// The attribute names that carry HEC metadata, as bytes: every attribute of every
/// record is checked against them, so the check is a length compare and a memcmp.
struct MetadataKeys {
    enum Role { case host, source, sourcetype, index, token }

    let names: [[UInt8]]
    let roles: [Role]
    /// Bit n set when a name is n bytes long (n < 64): most keys fail this test alone.
    let lengths: UInt64

    init(_ m: SplunkHECConfig.MetadataAttributes) {
        let pairs: [(String, Role)] = [(m.host, .host), (m.source, .source), (m.sourcetype, .sourcetype), (m.index, .index),
                                       (HECEncoder.tokenAttribute, .token)]
        names = pairs.map { Array($0.0.utf8) }
        roles = pairs.map(\.1)
        lengths = names.reduce(0) { $0 | ($1.count < 64 ? 1 << UInt64($1.count) : 0) }
    }

    func role(of key: StringView) -> Role? { role(of: key.utf8) }

    func role(of k: UnsafeBufferPointer<UInt8>) -> Role? {
        if k.count < 64, lengths & (1 << UInt64(k.count)) == 0 { return nil }
        for i in names.indices where names[i].count == k.count {
            if k.isEmpty || names[i].withUnsafeBufferPointer({ memcmp($0.baseAddress!, k.baseAddress!, k.count) }) == 0 { return roles[i] }
        }
        return nil
    }

    /// The metadata attributes of one list, in one pass (the first of a name wins).
    func values(_ attributes: AttributesView) -> MetadataValues {
        var values = MetadataValues()
        for attribute in attributes {
            guard let role = role(of: attribute.key), let value = attribute.value else { continue }
            switch role {
            case .host: values.host = values.host ?? value
            case .source: values.source = values.source ?? value
            case .sourcetype: values.sourcetype = values.sourcetype ?? value
            case .index: values.index = values.index ?? value
            case .token: break
            }
        }
        return values
    }
}

struct MetadataValues {
    var host: AnyValueView?
    var source: AnyValueView?
    var sourcetype: AnyValueView?
    var index: AnyValueView?
}

/// What one resource contributes to its records' events.
struct ResourceContext {
    var metadata = MetadataValues()
    /// Flattened attributes for `fields`.
    var flat = PrecomputedMembers()
    /// Attributes with nested values kept, for the `event` object.
    var plain = PrecomputedMembers()
}

struct EventWriter {
    let settings: HECEncoder.Settings
    let metadataKeys: MetadataKeys
    /// Event ends and locators; the bytes are `out`'s when writing is done.
    var events = EncodedRecords()
    var keys = ObjectKeys()
    var out = JSONOutput()

    init(settings: HECEncoder.Settings) {
        self.settings = settings
        metadataKeys = MetadataKeys(settings.metadata)
    }

    // MARK: Logs

    mutating func appendLogs(_ request: LogsRequestView, batch: Int32) {
        for (r, resourceLogs) in request.resourceLogs.enumerated() {
            let resource = context(resourceLogs.resource?.attributes)
            for (s, scopeLogs) in resourceLogs.scopeLogs.enumerated() {
                for (k, record) in scopeLogs.logRecords.enumerated() {
                    if settings.rawLogs { appendRawLine(record) } else { appendLogEvent(record, resource) }
                    finishEvent(RecordLocator(batch: batch, resource: Int32(r), scope: Int32(s), record: Int32(k)))
                }
            }
        }
    }

    /// Ends the event just written: `out` holds every event of the call, back to back.
    private mutating func finishEvent(_ locator: RecordLocator) {
        events.ends.append(out.count)
        events.locators.append(locator)
    }

    /// The body as the Collector's `export_raw` sends it: its text (a string as it is,
    /// anything else as JSON) and a newline. A newline inside the body would split
    /// it into two events at the raw endpoint, as in the Collector.
    mutating func appendRawLine(_ record: LogRecordView) {
        if let body = record.body {
            if case .string(let text) = body.value { out.appendRaw(text.utf8) } else { out.appendRaw(Array(body.stringValue.utf8)) }
        }
        out.append(UInt8(ascii: "\n"))
    }

    mutating func appendLogEvent(_ record: LogRecordView, _ resource: ResourceContext) {
        let attributes = record.attributes
        let metadata = metadataKeys.values(attributes)
        appendEventHead(time: record.effectiveTimeUnixNano, metadata, resource)
        switch settings.fieldsMode {
        case .indexed:
            appendBody(record.body, eventName: record.eventName)
        case .event, .both:
            out.append(UInt8(ascii: "{"))
            keys.reset()
            var firstMember = true
            if let body = record.body, !Self.isBlank(body) {
                _ = beginMember(prefix: nil, key: "message", &firstMember)
                appendBodyValue(body)
            }
            appendDerivedFields(record, &firstMember)
            appendPlainMembers(attributes, &firstMember)
            appendPrecomputed(resource.plain, &firstMember)
            if firstMember {
                out.append(ascii: "\"message\":")
                out.appendString(Self.emptyBodyText(record.eventName))
            }
            out.append(UInt8(ascii: "}"))
        }
        if settings.fieldsMode != .event {
            let mark = out.count
            out.append(ascii: ",\"fields\":{")
            keys.reset()
            var firstField = true
            appendDerivedFields(record, &firstField)
            appendFlatFields(attributes, prefix: nil, topLevel: true, &firstField)
            appendPrecomputed(resource.flat, &firstField)
            if firstField {
                out.bytes.removeLast(out.count - mark)
            } else {
                out.append(UInt8(ascii: "}"))
            }
        }
        out.append(UInt8(ascii: "}"))
    }

    // MARK: Metrics

    /// HEC metric events, as the Collector writes them (translator MetricToSplunkEvent):
    /// `"event":"metric"` and in `fields` the value as `metric_name:<name>`, the
    /// `metric_type`, then the point's and the resource's attributes as dimensions.
    /// A histogram becomes `<name>_sum`, `<name>_count` and a cumulative
    /// `<name>_bucket` per bound (`le`, the last `+Inf`); a summary `<name>_sum`,
    /// `<name>_count` and `<name>` per quantile (`qt`). Every event of one data point
    /// is one record: they are sent, refused and retried together.
    /// (https://docs.splunk.com/Documentation/Splunk/latest/Metrics/GetMetricsInOther#The_multiple-metric_JSON_format)
    mutating func appendMetrics(_ batch: OTLPBatch, batch index: Int32) {
        var contexts: [Int: ResourceContext] = [:]
        var point = 0
        batch.forEachMetricPoint { p in
            let resource = contexts[p.resourceIndex] ?? context(p.resource)
            contexts[p.resourceIndex] = resource
            let name = p.name.string
            let kind = p.kind.rawValue
            switch p.value {
            case .number(let value):
                appendMetricEvent(p, resource, name: name, value: value, kind: kind)
            case .histogram(let count, let sum, let bounds, let counts):
                if let sum { appendMetricEvent(p, resource, name: name + "_sum", value: sum, kind: kind) }
                appendMetricEvent(p, resource, name: name + "_count", value: Double(count), kind: kind)
                var cumulative: UInt64 = 0
                for (i, bucket) in counts.enumerated() {
                    cumulative += bucket
                    let bound = i < bounds.count ? Self.number(bounds[i]) : "+Inf"
                    appendMetricEvent(p, resource, name: name + "_bucket", value: Double(cumulative), kind: kind, extra: ("le", bound))
                }
            case .summary(let count, let sum, let quantiles):
                appendMetricEvent(p, resource, name: name + "_sum", value: sum, kind: kind)
                appendMetricEvent(p, resource, name: name + "_count", value: Double(count), kind: kind)
                for (quantile, value) in quantiles {
                    appendMetricEvent(p, resource, name: name, value: value, kind: kind, extra: ("qt", Self.number(quantile)))
                }
            case .exponential(let count, let sum):
                if let sum { appendMetricEvent(p, resource, name: name + "_sum", value: sum, kind: kind) }
                appendMetricEvent(p, resource, name: name + "_count", value: Double(count), kind: kind)
            }
            // One record per data point (all its events), located by request only:
            // metrics are dead-lettered a request at a time (RejectedRecords).
            finishEvent(RecordLocator(batch: index, resource: Int32(p.resourceIndex), scope: Int32(p.scopeIndex), record: Int32(point)))
            point += 1
        }
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    private mutating func appendMetricEvent(_ p: MetricPointView, _ resource: ResourceContext, name: String, value: Double, kind: String,
                                            extra: (String, String)? = nil) {
        let metadata = metadataKeys.values(p.attributes)
        appendEventHead(time: p.timeUnixNano, metadata, resource)
        out.append(ascii: "\"metric\",\"fields\":{")
        keys.reset()
        var firstField = true
        // A value JSON has no number for (NaN, ±Inf) goes as its name: valid JSON,
        // and visible in Splunk rather than lost.
        if beginMember(prefix: nil, key: "metric_name:" + name, &firstField) {
            if value.isFinite { out.appendDouble(value) } else { out.appendString(value.isNaN ? "NaN" : value < 0 ? "-Inf" : "+Inf") }
        }
        if beginMember(prefix: nil, key: "metric_type", &firstField) { out.appendString(kind) }
        if let (key, text) = extra, beginMember(prefix: nil, key: key, &firstField) { out.appendString(text) }
        appendFlatFields(p.attributes, prefix: nil, topLevel: true, &firstField)
        appendPrecomputed(resource.flat, &firstField)
        out.append(ascii: "}}")
    }

    /// `trace_id`, `span_id`, severity and event name: the record's own fields, so they
    /// win over attributes of the same name.
    private mutating func appendDerivedFields(_ record: LogRecordView, _ first: inout Bool) {
        let traceID = record.traceID, spanID = record.spanID
        if traceID.bytes.contains(where: { $0 != 0 }), beginMember(prefix: nil, key: "trace_id", &first) {
            out.appendHexString(traceID.bytes)
        }
        if spanID.bytes.contains(where: { $0 != 0 }), beginMember(prefix: nil, key: "span_id", &first) {
            out.appendHexString(spanID.bytes)
        }
        let severityText = record.severityText
        if !severityText.isEmpty, beginMember(prefix: nil, key: settings.severityTextField, &first) {
            out.appendString(severityText.utf8)
        }
        if record.severityNumber != 0, beginMember(prefix: nil, key: settings.severityNumberField, &first) {
            out.append(UInt8(ascii: "\""))
            out.appendInt(Int64(record.severityNumber))
            out.append(UInt8(ascii: "\""))
        }
        let eventName = record.eventName
        if !eventName.isEmpty, beginMember(prefix: nil, key: "event_name", &first) {
            out.appendString(eventName.utf8)
        }
    }

    /// The body as `event`: strings as they are, maps and arrays as JSON, other
    /// scalars as strings (HEC documents `event` as a string or an object).
    private mutating func appendBody(_ body: AnyValueView?, eventName: StringView) {
        guard let body, !Self.isBlank(body) else {
            out.appendString(Self.emptyBodyText(eventName))
            return
        }
        appendBodyValue(body)
    }

    private mutating func appendBodyValue(_ body: AnyValueView) {
        switch body.value {
        case .string(let s): out.appendString(s.utf8)
        case .array, .kvlist: body.writePlainJSON(to: &out)
        default: appendScalarString(body)
        }
    }

    static func isBlank(_ value: AnyValueView) -> Bool { value.isBlank }

    static func emptyBodyText(_ eventName: StringView) -> String {
        eventName.isEmpty ? HECEncoder.emptyBody : eventName.string
    }

    // MARK: Spans

    mutating func appendTraces(_ request: TracesRequestView, batch: Int32) {
        for (r, resourceSpans) in request.resourceSpans.enumerated() {
            let resource = context(resourceSpans.resource?.attributes)
            for (s, scopeSpans) in resourceSpans.scopeSpans.enumerated() {
                for (k, span) in scopeSpans.spans.enumerated() {
                    appendSpanEvent(span, resource)
                    finishEvent(RecordLocator(batch: batch, resource: Int32(r), scope: Int32(s), record: Int32(k)))
                }
            }
        }
    }

    static let kindNames = ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
                            "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"]
    static let statusNames = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]

    /// `{"time":…,"host":…,"source":…,"sourcetype":…,"index":…,"event":` — the
    /// record's own metadata attributes win over its resource's, which win over the
    /// configured defaults; empty metadata is left out (HEC refuses it).
    mutating func appendEventHead(time: UInt64, _ metadata: MetadataValues, _ resource: ResourceContext) {
        out.append(UInt8(ascii: "{"))
        var first = true
        if time != 0 {
            first = false
            out.append(ascii: "\"time\":")
            appendEpochSeconds(time)
        }
        appendMetadata("host", metadata.host ?? resource.metadata.host, fallback: "", &first)
        appendMetadata("source", metadata.source ?? resource.metadata.source, fallback: settings.source, &first)
        appendMetadata("sourcetype", metadata.sourcetype ?? resource.metadata.sourcetype, fallback: settings.sourcetype, &first)
        appendMetadata("index", metadata.index ?? resource.metadata.index, fallback: settings.index, &first)
        if !first { out.append(UInt8(ascii: ",")) }
        out.append(ascii: "\"event\":")
    }

    /// A span as the Collector's exporter writes it (tracedata_to_splunk.go), with
    /// `time` = the start; the resource's attributes are its `fields`.
    mutating func appendSpanEvent(_ span: SpanView, _ resource: ResourceContext) {
        appendEventHead(time: span.startTimeUnixNano, MetadataValues(), resource)
        out.append(ascii: "{\"trace_id\":")
        out.appendHexString(span.traceID.bytes)
        out.append(ascii: ",\"span_id\":")
        out.appendHexString(span.spanID.bytes)
        out.append(ascii: ",\"parent_span_id\":")
        out.appendHexString(span.parentSpanID.bytes)
        out.append(ascii: ",\"name\":")
        out.appendString(span.name.utf8)
        out.append(ascii: ",\"kind\":")
        let kind = Int(span.kindNumber)
        out.appendString(kind >= 0 && kind < Self.kindNames.count ? Self.kindNames[kind] : "SPAN_KIND_\(kind)")
        out.append(ascii: ",\"start_time\":")
        out.appendUInt(span.startTimeUnixNano)
        out.append(ascii: ",\"end_time\":")
        out.appendUInt(span.endTimeUnixNano)
        out.append(ascii: ",\"status\":{\"code\":")
        let code = Int(span.status?.code ?? 0)
        out.appendString(code >= 0 && code < Self.statusNames.count ? Self.statusNames[code] : "STATUS_CODE_\(code)")
        out.append(ascii: ",\"message\":")
        out.appendString(span.status?.message.utf8 ?? UnsafeBufferPointer(start: nil, count: 0))
        out.append(ascii: "},\"attributes\":")
        span.attributes.writePlainJSONObject(to: &out)
        if !span.events.isEmpty {
            out.append(ascii: ",\"events\":[")
            for (i, event) in span.events.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out.append(ascii: "{\"name\":")
                out.appendString(event.name.utf8)
                out.append(ascii: ",\"timestamp\":")
                out.appendUInt(event.timeUnixNano)
                out.append(ascii: ",\"attributes\":")
                event.attributes.writePlainJSONObject(to: &out)
                out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: "]"))
        }
        if !span.links.isEmpty {
            out.append(ascii: ",\"links\":[")
            for (i, link) in span.links.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                out.append(ascii: "{\"trace_id\":")
                out.appendHexString(link.traceID.bytes)
                out.append(ascii: ",\"span_id\":")
                out.appendHexString(link.spanID.bytes)
                out.append(ascii: ",\"trace_state\":")
                out.appendString(link.traceState.utf8)
                out.append(ascii: ",\"attributes\":")
                link.attributes.writePlainJSONObject(to: &out)
                out.append(UInt8(ascii: "}"))
            }
            out.append(UInt8(ascii: "]"))
        }
        if settings.fieldsMode == .event {
            // No indexed fields: the resource goes into the event instead.
            out.append(ascii: ",\"resource\":{")
            var firstMember = true
            keys.reset()
            appendPrecomputed(resource.plain, &firstMember)
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "}"))
        if settings.fieldsMode != .event, !resource.flat.keys.entries.isEmpty {
            out.append(ascii: ",\"fields\":{")
            var firstField = true
            keys.reset()
            appendPrecomputed(resource.flat, &firstField)
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "}"))
    }

    // MARK: Shared pieces

    mutating func appendEpochSeconds(_ nanos: UInt64) { out.appendHECTime(nanos) }

    private mutating func appendMetadata(_ name: StaticString, _ value: AnyValueView?, fallback: String, _ first: inout Bool) {
        if let value, case .string(let s) = value.value {
            guard !s.isEmpty else { return appendMetadataFallback(name, fallback, &first) }
            writeMetadataKey(name, &first)
            out.appendString(s.utf8)
        } else if let value, !Self.isBlank(value), !Self.isNested(value) {
            writeMetadataKey(name, &first)
            appendScalarString(value)
        } else {
            appendMetadataFallback(name, fallback, &first)
        }
    }

    private mutating func appendMetadataFallback(_ name: StaticString, _ fallback: String, _ first: inout Bool) {
        guard !fallback.isEmpty else { return }
        writeMetadataKey(name, &first)
        out.appendString(fallback)
    }

    private mutating func writeMetadataKey(_ name: StaticString, _ first: inout Bool) {
        if !first { out.append(UInt8(ascii: ",")) }
        first = false
        out.append(UInt8(ascii: "\""))
        out.append(ascii: name)
        out.append(ascii: "\":")
    }

    static func isNested(_ value: AnyValueView) -> Bool {
        switch value.value {
        case .array, .kvlist: true
        default: false
        }
    }

    /// A scalar as a JSON string: numbers and booleans in their usual text, bytes in
    /// base64.
    mutating func appendScalarString(_ value: AnyValueView) { value.writeScalarString(to: &out) }

    /// Whether an attribute sets HEC metadata (and so is not repeated as a field).
    func isMetadataKey(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
        switch metadataKeys.role(of: key) {
        case .source, .sourcetype, .index, .token: true
        case .host, nil: false
        }
    }

    /// Starts `"<prefix><key>":` unless that key is already in the object (then
    /// writes nothing and returns false).
    mutating func beginMember(prefix: [UInt8]?, key: UnsafeBufferPointer<UInt8>, _ first: inout Bool) -> Bool {
        ObjectKeys.beginMember(&out, &keys, prefix: prefix, key: key, &first)
    }

    mutating func beginMember(prefix: [UInt8]?, key: String, _ first: inout Bool) -> Bool {
        ObjectKeys.beginMember(&out, &keys, prefix: prefix, key: key, &first)
    }

    /// Attributes flattened for indexed `fields`.
    mutating func appendFlatFields(_ attributes: AttributesView, prefix: [UInt8]?, topLevel: Bool, _ first: inout Bool) {
        for attribute in attributes {
            guard let value = attribute.value else { continue }
            let key = attribute.key.utf8
            // An indexed field needs a name.
            if key.isEmpty, prefix == nil { continue }
            if topLevel, isMetadataKey(key) { continue }
            switch value.value {
            case .empty:
                continue
            case .kvlist(let nested):
                var nestedPrefix = prefix ?? []
                var escaped = JSONOutput()
                escaped.appendStringContents(key)
                nestedPrefix += escaped.bytes
                nestedPrefix.append(UInt8(ascii: "."))
                appendFlatFields(nested, prefix: nestedPrefix, topLevel: false, &first)
            case .array(let items):
                var scalars = 0
                var nested = false
                for item in items {
                    switch item.value {
                    case .array, .kvlist: nested = true
                    case .empty: break
                    default: scalars += 1
                    }
                }
                if nested {
                    // Indexed fields cannot nest: the whole array as a JSON string.
                    if beginMember(prefix: prefix, key: key, &first) { appendScalarString(value) }
                } else if scalars > 0, beginMember(prefix: prefix, key: key, &first) {
                    out.append(UInt8(ascii: "["))
                    var firstItem = true
                    for item in items {
                        if case .empty = item.value { continue }
                        if !firstItem { out.append(UInt8(ascii: ",")) }
                        firstItem = false
                        appendScalarString(item)
                    }
                    out.append(UInt8(ascii: "]"))
                }
            default:
                if beginMember(prefix: prefix, key: key, &first) { appendScalarString(value) }
            }
        }
    }

    /// Attributes with their values as plain JSON, for the `event` object.
    mutating func appendPlainMembers(_ attributes: AttributesView, _ first: inout Bool) {
        for attribute in attributes {
            guard let value = attribute.value else { continue }
            if case .empty = value.value { continue }
            let key = attribute.key.utf8
            if isMetadataKey(key) { continue }
            if beginMember(prefix: nil, key: key, &first) { value.writePlainJSON(to: &out) }
        }
    }

    /// Copies a resource's members whose keys the object does not have yet.
    mutating func appendPrecomputed(_ members: PrecomputedMembers, _ first: inout Bool) {
        guard !members.keys.entries.isEmpty else { return }
        members.bytes.withUnsafeBufferPointer { source in
            for (entry, end) in members.members {
                let key = UnsafeBufferPointer(rebasing: source[entry.keyStart..<entry.keyEnd])
                let present = out.bytes.withUnsafeBufferPointer { keys.contains(key, hash: entry.hash, in: $0) }
                if present { continue }
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                out.appendRaw(UnsafeBufferPointer(rebasing: source[entry.memberStart..<end]))
            }
        }
    }

    /// Reads a resource's metadata attributes and writes its members once.
    mutating func context(_ attributes: AttributesView?) -> ResourceContext {
        var context = ResourceContext()
        guard let attributes, !attributes.isEmpty else { return context }
        context.metadata = metadataKeys.values(attributes)
        let saved = (out, keys)
        if settings.fieldsMode != .event {
            out = JSONOutput()
            keys.reset()
            var first = true
            appendFlatFields(attributes, prefix: nil, topLevel: true, &first)
            context.flat = PrecomputedMembers(bytes: out.bytes, keys: keys)
        }
        if settings.fieldsMode != .indexed {
            out = JSONOutput()
            keys = ObjectKeys()
            var first = true
            appendPlainMembers(attributes, &first)
            context.plain = PrecomputedMembers(bytes: out.bytes, keys: keys)
        }
        (out, keys) = saved
        return context
    }
}

extension JSONOutput {
    /// Seconds since the epoch with exactly three decimals (1433188255.500), rounded
    /// to the millisecond, as HEC documents `time`.
    mutating func appendHECTime(_ nanos: UInt64) {
        let millis = nanos / 1_000_000 + (nanos % 1_000_000 >= 500_000 ? 1 : 0)
        appendUInt(millis / 1000)
        append(UInt8(ascii: "."))
        let fraction = Int(millis % 1000)
        append(UInt8(ascii: "0") + UInt8(fraction / 100))
        append(UInt8(ascii: "0") + UInt8(fraction / 10 % 10))
        append(UInt8(ascii: "0") + UInt8(fraction % 10))
    }
}

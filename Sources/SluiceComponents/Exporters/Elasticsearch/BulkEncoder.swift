import SluiceCore
import SluiceNet

/// Turns log records and spans into bulk API lines: per record an action line and a
/// source line, `{"create":{"_index":…,"_id":…}}\n{…}\n`
/// (https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html).
/// Each record's two lines are one encoded record, so a payload is any run of them.
///
/// - `create`, never `index`: data streams take only `create`, and with a
///   deterministic `_id` a retry of a document Elasticsearch already has is a 409,
///   which counts as delivered, instead of a second copy.
/// - `_id`: the record's `elasticsearch.document_id` attribute (with
///   `logs_dynamic_id`), else its `event_id`, else the SHA-256 of its source line.
/// - The document's layout follows `mapping.mode` (docs/elasticsearch.md shows each).
/// - Every key is written once (ObjectKeys: the first writer wins, so a record's own
///   fields win over its attributes, which win over its resource's): Elasticsearch
///   refuses a document with a duplicate key.
struct BulkEncoder: Sendable {
    let mode: ElasticsearchConfig.MappingMode
    let logsIndex: IndexName
    let tracesIndex: IndexName
    let logsDynamicIndex: Bool
    let tracesDynamicIndex: Bool
    let dynamicID: Bool

    init(_ config: ElasticsearchConfig) {
        mode = config.mode
        logsIndex = IndexName(config.logsIndex, logstash: config.logstash)
        tracesIndex = IndexName(config.tracesIndex, logstash: config.logstash)
        logsDynamicIndex = config.logsDynamicIndex
        tracesDynamicIndex = config.tracesDynamicIndex
        dynamicID = config.dynamicID
    }

    /// The records of one call, and the ones that cannot become a document here
    /// (a `bodymap` record without a map body), with why.
    struct Output {
        var records = EncodedRecords()
        var unencodable: [Int: String] = [:]
    }

    func encode(_ batches: [OTLPBatch], signal: OTLPSignal) -> Output {
        var writer = BulkWriter(encoder: self)
        writer.doc.out.bytes.reserveCapacity(batches.reduce(0) { $0 + $1.memoryBytes } + 4096)
        for (b, batch) in batches.enumerated() {
            switch signal {
            case .logs: batch.withLogs { writer.appendLogs($0, batch: Int32(b)) }
            case .traces: batch.withTraces { writer.appendTraces($0, batch: Int32(b)) }
            case .metrics: break
            }
        }
        writer.output.records.bytes = writer.doc.out.bytes
        return writer.output
    }
}

/// Writes the documents of one call, action line and document of each record one
/// after the other straight into one buffer (`doc.out`): no copy per document.
struct BulkWriter {
    let encoder: BulkEncoder
    var output = BulkEncoder.Output()
    /// Every record's lines so far, and the document being written at its end.
    var doc = JSONObjectWriter()
    /// The last rendered index name and the hour it was rendered for.
    var indexCache: (hour: UInt64, name: String)?

    init(encoder: BulkEncoder) { self.encoder = encoder }

    var mode: ElasticsearchConfig.MappingMode { encoder.mode }

    // MARK: Logs

    mutating func appendLogs(_ request: LogsRequestView, batch: Int32) {
        for (r, resourceLogs) in request.resourceLogs.enumerated() {
            let resource = resourceLogs.resource?.attributes
            for (s, scopeLogs) in resourceLogs.scopeLogs.enumerated() {
                for (k, record) in scopeLogs.logRecords.enumerated() {
                    let locator = RecordLocator(batch: batch, resource: Int32(r), scope: Int32(s), record: Int32(k))
                    let index = indexName(record.effectiveTimeUnixNano, encoder.logsDynamicIndex, type: "logs", record.attributes,
                                          scopeLogs.scope?.attributes, resource, encoder.logsIndex)
                    let id = documentID(record.attributes)
                    let start = doc.out.count
                    if let id { Self.writeAction(&doc.out, index: index, id: id.utf8) }
                    let documentStart = doc.out.count
                    if writeLog(record, scope: scopeLogs.scope, resource: resource) {
                        finish(locator, index: index, idMissing: id == nil, documentStart: documentStart)
                    } else {
                        doc.out.bytes.removeLast(doc.out.count - start)
                        output.unencodable[output.records.count] = "mapping.mode bodymap needs a map body; this record's body is not a map"
                        output.records.ends.append(doc.out.count)
                        output.records.locators.append(locator)
                    }
                }
            }
        }
    }

    /// The record's document into `doc`; false when this mode cannot write it.
    mutating func writeLog(_ record: LogRecordView, scope: ScopeView?, resource: AttributesView?) -> Bool {
        doc.begin()
        let time = record.effectiveTimeUnixNano
        switch mode {
        case .bodymap:
            guard let body = record.body, case .kvlist(let map) = body.value else { return false }
            doc.members(map)
        case .ecs:
            doc.time("@timestamp", time, digits: 3)
            if let body = record.body, doc.key("message") { writeBodyText(body) }
            doc.string("log.level", record.severityText)
            if record.severityNumber != 0 { doc.int("event.severity", Int64(record.severityNumber)) }
            doc.hex("trace.id", record.traceID)
            doc.hex("span.id", record.spanID)
            // ECS's place for what was done (`event.action`, docs/elasticsearch.md), from the gateway's `action`.
            if let action = record.attributes["action"], doc.key("event.action") { action.writePlainJSON(to: &doc.out) }
            doc.members(record.attributes)
            doc.members(resource)
        case .otel:
            doc.time("@timestamp", time, digits: 9)
            if record.observedTimeUnixNano != 0 { doc.time("observed_timestamp", record.observedTimeUnixNano, digits: 9) }
            if let body = record.body, doc.key("body") {
                doc.out.append(ascii: "{")
                if case .kvlist = body.value { doc.out.append(ascii: "\"structured\":") } else { doc.out.append(ascii: "\"text\":") }
                if case .kvlist = body.value { body.writePlainJSON(to: &doc.out) } else { writeBodyText(body) }
                doc.out.append(ascii: "}")
            }
            doc.string("severity_text", record.severityText)
            if record.severityNumber != 0 { doc.int("severity_number", Int64(record.severityNumber)) }
            doc.string("event_name", record.eventName)
            doc.hex("trace_id", record.traceID)
            doc.hex("span_id", record.spanID)
            doc.object("attributes", record.attributes)
            writeOTelScopeAndResource(scope, resource)
        case .none, .raw:
            doc.time("@timestamp", time, digits: 3)
            if let body = record.body, doc.key("Body") { body.writePlainJSON(to: &doc.out) }
            doc.string("SeverityText", record.severityText)
            if record.severityNumber != 0 { doc.int("SeverityNumber", Int64(record.severityNumber)) }
            if record.flags != 0 { doc.int("TraceFlags", Int64(record.flags)) }
            doc.hex("TraceId", record.traceID)
            doc.hex("SpanId", record.spanID)
            doc.members(record.attributes, prefix: mode == .raw ? nil : Self.attributesPrefix)
            doc.members(resource, prefix: Self.resourcePrefix)
            if let scope {
                doc.string("Scope.name", scope.name)
                doc.string("Scope.version", scope.version)
            }
        }
        doc.end()
        return true
    }

    static let attributesPrefix = Array("Attributes.".utf8)
    static let resourcePrefix = Array("Resource.".utf8)
    static let eventsPrefix = Array("Events.".utf8)

    /// A string body as it is; any other body as its JSON text.
    mutating func writeBodyText(_ body: AnyValueView) { body.writeText(to: &doc.out) }

    mutating func writeOTelScopeAndResource(_ scope: ScopeView?, _ resource: AttributesView?) {
        if let scope, !scope.name.isEmpty || !scope.version.isEmpty || !scope.attributes.isEmpty, doc.key("scope") {
            // The nested object's own keys, written into the same buffer (swapped, not copied).
            var inner = JSONObjectWriter()
            swap(&inner.out, &doc.out)
            inner.out.append(UInt8(ascii: "{"))
            inner.string("name", scope.name)
            inner.string("version", scope.version)
            inner.object("attributes", scope.attributes)
            inner.end()
            swap(&inner.out, &doc.out)
        }
        if let resource, !resource.isEmpty, doc.key("resource") {
            doc.out.append(ascii: "{\"attributes\":")
            JSONObjectWriter.writeObject(resource, to: &doc.out)
            doc.out.append(UInt8(ascii: "}"))
        }
    }

    // MARK: Spans

    mutating func appendTraces(_ request: TracesRequestView, batch: Int32) {
        for (r, resourceSpans) in request.resourceSpans.enumerated() {
            let resource = resourceSpans.resource?.attributes
            for (s, scopeSpans) in resourceSpans.scopeSpans.enumerated() {
                for (k, span) in scopeSpans.spans.enumerated() {
                    let locator = RecordLocator(batch: batch, resource: Int32(r), scope: Int32(s), record: Int32(k))
                    let index = indexName(span.startTimeUnixNano, encoder.tracesDynamicIndex, type: "traces", span.attributes,
                                          scopeSpans.scope?.attributes, resource, encoder.tracesIndex)
                    let id = documentID(span.attributes)
                    if let id { Self.writeAction(&doc.out, index: index, id: id.utf8) }
                    let documentStart = doc.out.count
                    writeSpan(span, scope: scopeSpans.scope, resource: resource)
                    finish(locator, index: index, idMissing: id == nil, documentStart: documentStart)
                }
            }
        }
    }

    mutating func writeSpan(_ span: SpanView, scope: ScopeView?, resource: AttributesView?) {
        doc.begin()
        let start = span.startTimeUnixNano, end = span.endTimeUnixNano
        let duration = end > start ? end - start : 0
        let status = span.status
        switch mode {
        case .otel, .bodymap:
            writeSpanIdentity(span, Self.otelSpanNames, duration: duration)
            if let status, doc.key("status") {
                doc.out.append(ascii: "{\"code\":")
                doc.out.appendString(Self.statusName(status.code))
                if !status.message.isEmpty { doc.out.append(ascii: ",\"message\":"); doc.out.appendString(status.message.utf8) }
                doc.out.append(UInt8(ascii: "}"))
            }
            doc.object("attributes", span.attributes)
            writeSpanEvents(span, name: "events", nameKey: "name", timeKey: "time_unix_nano", attributesKey: "attributes")
            writeOTelScopeAndResource(scope, resource)
        case .ecs:
            writeSpanIdentity(span, Self.ecsSpanNames, duration: duration)
            if doc.key("event.outcome") { doc.out.appendString(status.map { $0.code == 2 ? "failure" : $0.code == 1 ? "success" : "unknown" } ?? "unknown") }
            doc.members(span.attributes)
            doc.members(resource)
        case .none, .raw:
            writeSpanIdentity(span, Self.noneSpanNames, duration: duration)
            doc.time("EndTimestamp", end, digits: 3)
            if let status {
                if doc.key("TraceStatus") { doc.out.appendInt(Int64(status.code)) }
                doc.string("TraceStatusDescription", status.message)
            }
            doc.members(span.attributes, prefix: mode == .raw ? nil : Self.attributesPrefix)
            writeSpanEvents(span, name: "Events", nameKey: "Name", timeKey: "@timestamp", attributesKey: "Attributes")
            doc.members(resource, prefix: Self.resourcePrefix)
            if let scope {
                doc.string("Scope.name", scope.name)
                doc.string("Scope.version", scope.version)
            }
        }
        doc.end()
    }

    /// What each mode calls a span's identity fields.
    struct SpanNames {
        var digits: Int
        var trace, span, parent, name, kind, duration: String
        /// Duration in nanoseconds divided by this (the Collector's none mode writes microseconds).
        var durationUnit: UInt64 = 1
    }

    static let otelSpanNames = SpanNames(digits: 9, trace: "trace_id", span: "span_id", parent: "parent_span_id", name: "name", kind: "kind", duration: "duration")
    static let ecsSpanNames = SpanNames(digits: 3, trace: "trace.id", span: "span.id", parent: "parent.id", name: "span.name", kind: "span.kind", duration: "event.duration")
    static let noneSpanNames = SpanNames(digits: 3, trace: "TraceId", span: "SpanId", parent: "ParentSpanId", name: "Name", kind: "Kind", duration: "Duration",
                                         durationUnit: 1000)

    mutating func writeSpanIdentity(_ span: SpanView, _ names: SpanNames, duration: UInt64) {
        doc.time("@timestamp", span.startTimeUnixNano, digits: names.digits)
        doc.hex(names.trace, span.traceID)
        doc.hex(names.span, span.spanID)
        doc.hex(names.parent, span.parentSpanID)
        doc.string(names.name, span.name)
        if doc.key(names.kind) { doc.out.appendString(Self.kindName(span.kindNumber)) }
        if doc.key(names.duration) { doc.out.appendUInt(duration / names.durationUnit) }
    }

    mutating func writeSpanEvents(_ span: SpanView, name: String, nameKey: String, timeKey: String, attributesKey: String) {
        guard !span.events.isEmpty, doc.key(name) else { return }
        doc.out.append(UInt8(ascii: "["))
        for (i, event) in span.events.enumerated() {
            if i > 0 { doc.out.append(UInt8(ascii: ",")) }
            // The nested object's own keys, written into the same buffer (swapped, not copied).
            var inner = JSONObjectWriter()
            swap(&inner.out, &doc.out)
            inner.out.append(UInt8(ascii: "{"))
            inner.string(nameKey, event.name)
            if timeKey == "@timestamp" { inner.time(timeKey, event.timeUnixNano, digits: 3) } else if inner.key(timeKey) { inner.out.appendUInt(event.timeUnixNano) }
            inner.object(attributesKey, event.attributes)
            inner.end()
            swap(&inner.out, &doc.out)
        }
        doc.out.append(UInt8(ascii: "]"))
    }

    static func kindName(_ kind: Int32) -> String {
        switch kind {
        case 1: "Internal"
        case 2: "Server"
        case 3: "Client"
        case 4: "Producer"
        case 5: "Consumer"
        default: "Unspecified"
        }
    }

    static func statusName(_ code: Int32) -> String {
        switch code {
        case 1: "Ok"
        case 2: "Error"
        default: "Unset"
        }
    }

    // MARK: Index and id

    /// The record's index: from its attributes when dynamic (`elasticsearch.index`,
    /// or the data stream `<type>-<data_stream.dataset>-<data_stream.namespace>`, or
    /// the configured name between `elasticsearch.index.prefix`/`.suffix`), else
    /// the configured name; dates from the record's time, in UTC.
    mutating func indexName(_ nanos: UInt64, _ dynamic: Bool, type: String, _ record: AttributesView, _ scope: AttributesView?,
                            _ resource: AttributesView?, _ template: IndexName) -> String {
        if dynamic {
            func lookup(_ key: StaticString) -> String? {
                for attributes in [record, scope, resource] {
                    if let value = attributes?[key], case .string(let s) = value.value, !s.isEmpty { return s.string }
                }
                return nil
            }
            if let index = lookup("elasticsearch.index") { return index }
            let dataset = lookup("data_stream.dataset"), namespace = lookup("data_stream.namespace")
            if dataset != nil || namespace != nil {
                return "\(type)-\(Self.dataStreamPart(dataset ?? "generic"))-\(Self.dataStreamPart(namespace ?? "default"))"
            }
            let prefix = lookup("elasticsearch.index.prefix"), suffix = lookup("elasticsearch.index.suffix")
            if prefix != nil || suffix != nil { return (prefix ?? "") + template.render(nanos) + (suffix ?? "") }
        }
        guard template.hasDate else {
            if let cache = indexCache { return cache.name }
            let name = template.render(nanos)
            indexCache = (0, name)
            return name
        }
        let hour = nanos / 3_600_000_000_000
        if let cache = indexCache, cache.hour == hour { return cache.name }
        let name = template.render(nanos)
        indexCache = (hour, name)
        return name
    }

    /// Data stream names are lowercase and cannot hold `-` inside a part
    /// (https://www.elastic.co/guide/en/ecs/current/ecs-data_stream.html).
    static func dataStreamPart(_ text: String) -> String {
        String(text.lowercased().map { "\\/*?\"<>| ,#:-".contains($0) ? "_" : $0 })
    }

    /// The record's own id, read in place (no copy per record).
    func documentID(_ attributes: AttributesView) -> StringView? {
        if encoder.dynamicID, let value = attributes["elasticsearch.document_id"], case .string(let s) = value.value, !s.isEmpty { return s }
        if let value = attributes["event_id"], case .string(let s) = value.value, !s.isEmpty, s.utf8.count <= 512 { return s }
        return nil
    }

    /// `{"create":{"_index":…,"_id":…}}\n`.
    static func writeAction(_ out: inout JSONOutput, index: String, id: UnsafeBufferPointer<UInt8>) {
        out.append(ascii: "{\"create\":{\"_index\":")
        out.appendString(index)
        out.append(ascii: ",\"_id\":")
        out.appendString(id)
        out.append(ascii: "}}\n")
    }

    /// Ends the record whose document was just written. A record without an id of
    /// its own gets the hash of its document, so the same record always gets the same
    /// id (128 bits of SHA-256, in hex); its action line goes in before the document.
    mutating func finish(_ locator: RecordLocator, index: String, idMissing: Bool, documentStart: Int) {
        if idMissing {
            let hash = doc.out.bytes.withUnsafeBytes { Digest.sha256(UnsafeRawBufferPointer(rebasing: $0[documentStart...])) }
            var action = JSONOutput()
            var id = Digest.hex(Array(hash.prefix(16)))
            id.withUTF8 { Self.writeAction(&action, index: index, id: $0) }
            doc.out.bytes.insert(contentsOf: action.bytes, at: documentStart)
        }
        doc.out.append(UInt8(ascii: "\n"))
        output.records.ends.append(doc.out.count)
        output.records.locators.append(locator)
    }
}

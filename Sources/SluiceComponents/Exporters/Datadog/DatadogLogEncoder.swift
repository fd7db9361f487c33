import SluiceCore
import SluiceNet

/// Turns log records into Datadog log entries, one JSON object each, for the
/// logs intake's array body (https://docs.datadoghq.com/api/latest/logs/#send-logs):
///
/// `{"ddsource":"opentelemetry","ddtags":"env:prod,k8s.namespace.name:edge","hostname":"gw-7",
///   "service":"ai-gateway","status":"warn","message":"…","timestamp":1763719200123,
///   "dd.trace_id":"15130806498427016204","dd.span_id":"17208549089386426740",
///   "event_id":"…","action":"block",…}`
///
/// - Datadog's reserved attributes first (`ddsource`, `ddtags`, `hostname`,
///   `service`, `status`, `message`, `timestamp` in milliseconds), then the
///   record's attributes as top-level keys, so `@action:block` finds the gateway's
///   decisions; a key is written once (the reserved ones win).
/// - `ddtags` from the resource's attributes: `deployment.environment(.name)` as
///   `env`, `service.version` as `version`, the others as `key:value` (Datadog
///   tags are `key:value`, comma-separated); `service.name` and `host.name` are
///   the `service` and `hostname`.
/// - `status` from the severity number, in Datadog's names; the severity text
///   when there is no number.
/// - Trace ids in Datadog's form: the lower 64 bits of the trace id and the span
///   id as unsigned decimals (`dd.trace_id`, `dd.span_id`), which is what Datadog
///   joins logs to APM traces on.
/// - `ddsource` from the `datadog.log.source` attribute (record, then resource),
///   else `opentelemetry`.
struct DatadogLogEncoder: Sendable {
    /// For records whose resource has no `host.name`.
    let hostname: String

    /// The entries of a call, and those whose time is before `oldest` (Unix
    /// milliseconds) with that time.
    func encode(_ batches: [OTLPBatch], oldest: UInt64 = 0) -> (records: EncodedRecords, tooOld: [Int: UInt64]) {
        var tags = ResourceTags()
        var tooOld: [Int: UInt64] = [:]
        var index = 0
        let records = EncodedRecords.logs(batches) { doc, context in
            write(&doc, context, &tags)
            let millis = context.record.effectiveTimeUnixNano / 1_000_000
            if millis != 0, millis < oldest { tooOld[index] = millis }
            index += 1
            return true
        }.records
        return (records, tooOld)
    }

    /// `ddtags` as JSON, written once per resource: every record of a resource has the same.
    struct ResourceTags {
        var batch: Int32 = -1
        var resource: Int32 = -1
        var json = JSONOutput()

        mutating func of(_ context: LogRecordContext, _ attributes: AttributesView) -> [UInt8] {
            if context.locator.batch != batch || context.locator.resource != resource {
                batch = context.locator.batch
                resource = context.locator.resource
                json = JSONOutput()
                DatadogLogEncoder.writeTags(attributes, to: &json)
            }
            return json.bytes
        }
    }

    func write(_ doc: inout JSONObjectWriter, _ context: LogRecordContext, _ tags: inout ResourceTags) {
        let record = context.record, resource = context.resource
        doc.begin()
        if doc.key("ddsource") {
            if let value = record.attributes["datadog.log.source"] ?? resource?["datadog.log.source"] { value.writeText(to: &doc.out) } else {
                doc.out.append(ascii: "\"opentelemetry\"")
            }
        }
        if let resource, doc.key("ddtags") { doc.out.appendRaw(tags.of(context, resource)) }
        if doc.key("hostname") {
            if let host = resource?["host.name"] { host.writeText(to: &doc.out) } else { doc.out.appendString(hostname) }
        }
        if let service = resource?["service.name"], doc.key("service") { service.writeText(to: &doc.out) }
        if doc.key("status") { doc.out.appendString(Self.status(record.severityNumber, text: record.severityText.string)) }
        if let body = record.body, doc.key("message") { body.writeText(to: &doc.out) }
        let time = record.effectiveTimeUnixNano
        if time != 0, doc.key("timestamp") { doc.out.appendUInt(time / 1_000_000) }
        if record.traceID.bytes.count == 16, doc.key("dd.trace_id") { doc.out.appendString(String(Self.lower64(record.traceID.bytes))) }
        if record.spanID.bytes.count == 8, doc.key("dd.span_id") { doc.out.appendString(String(Self.lower64(record.spanID.bytes))) }
        doc.members(record.attributes)
        doc.end()
    }

    /// Datadog's status names for the OpenTelemetry severity ranges
    /// (https://opentelemetry.io/docs/specs/otel/logs/data-model/#field-severitynumber).
    static func status(_ number: Int32, text: @autoclosure () -> String) -> String {
        switch number {
        case 1...4: return "trace"
        case 5...8: return "debug"
        case 9...12: return "info"
        case 13...16: return "warn"
        case 17...20: return "error"
        case 21...24: return "critical"
        default:
            let text = text()
            return text.isEmpty ? "info" : text.lowercased()
        }
    }

    /// The last 8 bytes, big-endian, as an unsigned integer.
    static func lower64(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        bytes.suffix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// `"env:prod,version:2.14.0,k8s.namespace.name:edge"` from scalar resource attributes.
    static func writeTags(_ resource: AttributesView, to out: inout JSONOutput) {
        var tags: [String] = []
        for attribute in resource {
            guard let value = attribute.value else { continue }
            switch value.value {
            case .array, .kvlist, .empty, .bytes: continue
            default: break
            }
            let key = attribute.key.string
            switch key {
            case "service.name", "host.name": continue
            case "deployment.environment", "deployment.environment.name": tags.append("env:\(value.stringValue)")
            case "service.version": tags.append("version:\(value.stringValue)")
            default: tags.append("\(key):\(value.stringValue)")
            }
        }
        out.appendString(tags.joined(separator: ","))
    }
}

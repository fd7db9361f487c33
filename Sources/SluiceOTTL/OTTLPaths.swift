/// The telemetry a condition is evaluated against, as the Collector's OTTL
/// contexts name them (pkg/ottl/contexts: ottllog, ottlspan, ottlresource).
public enum OTTLContext: String, Sendable, CaseIterable {
    case log, span, resource
}

/// A field of the record a path reads, resolved when the condition is parsed.
enum OTTLField: Equatable {
    // Log records.
    case logAttributes, body, severityNumber, severityText, eventName, timeUnixNano, observedTimeUnixNano, logFlags, logDroppedAttributes
    // Spans.
    case spanAttributes, spanName, spanKind, statusCode, statusMessage, traceState, startTimeUnixNano, endTimeUnixNano, spanDroppedAttributes
    // Every context.
    case resourceAttributes, resourceDroppedAttributes, scopeName, scopeVersion, scopeAttributes

    /// Whether `["key"]` / `[0]` may follow.
    var indexable: Bool {
        switch self {
        case .logAttributes, .body, .spanAttributes, .resourceAttributes, .scopeAttributes: true
        default: false
        }
    }
}

extension OTTLContext {
    /// The fields a path may name in this context, by their dotted name. A path
    /// may also start with the context's own name (`log.attributes`, `span.name`),
    /// as the Collector's context-inferred conditions write them.
    var fields: [(path: String, field: OTTLField)] {
        let scope: [(String, OTTLField)] = [
            ("instrumentation_scope.name", .scopeName), ("instrumentation_scope.version", .scopeVersion),
            ("instrumentation_scope.attributes", .scopeAttributes),
            ("scope.name", .scopeName), ("scope.version", .scopeVersion), ("scope.attributes", .scopeAttributes),
        ]
        let resource: [(String, OTTLField)] = [("resource.attributes", .resourceAttributes), ("resource.dropped_attributes_count", .resourceDroppedAttributes)]
        switch self {
        case .log:
            return [("attributes", .logAttributes), ("body", .body), ("severity_number", .severityNumber), ("severity_text", .severityText),
                    ("event_name", .eventName), ("time_unix_nano", .timeUnixNano), ("observed_time_unix_nano", .observedTimeUnixNano),
                    ("flags", .logFlags), ("dropped_attributes_count", .logDroppedAttributes)] + resource + scope
        case .span:
            return [("attributes", .spanAttributes), ("name", .spanName), ("kind", .spanKind), ("status.code", .statusCode),
                    ("status.message", .statusMessage), ("trace_state", .traceState), ("start_time_unix_nano", .startTimeUnixNano),
                    ("end_time_unix_nano", .endTimeUnixNano), ("dropped_attributes_count", .spanDroppedAttributes)] + resource + scope
        case .resource:
            return [("attributes", .resourceAttributes), ("dropped_attributes_count", .resourceDroppedAttributes)] + resource
        }
    }

    /// The field of a dotted path; `nil` when this context has none by that name.
    func field(_ names: [String]) -> OTTLField? {
        let dotted = names.joined(separator: ".")
        if let match = fields.first(where: { $0.path == dotted }) { return match.field }
        if names.count > 1, names[0] == rawValue {
            let rest = names.dropFirst().joined(separator: ".")
            return fields.first { $0.path == rest }?.field
        }
        return nil
    }

    /// The enums this context's paths compare with, as OTTL spells them.
    var enums: [String: Int64] {
        switch self {
        case .log: Self.severityNumbers
        case .span: Self.spanKinds.merging(Self.statusCodes) { a, _ in a }
        case .resource: [:]
        }
    }

    /// `SeverityNumber` of the logs data model:
    /// https://opentelemetry.io/docs/specs/otel/logs/data-model/#field-severitynumber
    static let severityNumbers: [String: Int64] = {
        var out: [String: Int64] = ["SEVERITY_NUMBER_UNSPECIFIED": 0]
        for (i, name) in ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"].enumerated() {
            let base = Int64(i * 4 + 1)
            out["SEVERITY_NUMBER_\(name)"] = base
            for step in 2...4 { out["SEVERITY_NUMBER_\(name)\(step)"] = base + Int64(step - 1) }
        }
        return out
    }()

    static let spanKinds: [String: Int64] = [
        "SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2,
        "SPAN_KIND_CLIENT": 3, "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5,
    ]

    static let statusCodes: [String: Int64] = ["STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2]
}

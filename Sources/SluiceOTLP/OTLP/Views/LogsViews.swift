import COTLP

/// `ExportLogsServiceRequest`: resource → scope → log records.
public struct LogsRequestView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CLogsRequest>
    public init(_ raw: UnsafeMutablePointer<CLogsRequest>) { self.raw = raw }

    public var resourceLogs: RepeatedMessageView<ResourceLogsView> {
        RepeatedMessageView(raw.pointee.resource_logs, raw.pointee.n_resource_logs)
    }

    /// Every log record with its resource and scope, in order.
    public var records: NestedRecords<ResourceLogsView, ScopeLogsView, LogRecordView> {
        NestedRecords(resourceLogs)
    }

    public var recordCount: Int {
        resourceLogs.reduce(0) { $0 + $1.scopeLogs.reduce(0) { $0 + $1.logRecords.count } }
    }
}

/// Resource → scope → item, walked with three indexes (no closures per record: this
/// is every exporter's inner loop).
public struct NestedRecords<Resource: NestedLevel, Scope: NestedLevel, Item: OTLPMessageView>: Sequence
where Resource.Child == Scope, Scope.Child == Item {
    let resources: RepeatedMessageView<Resource>

    init(_ resources: RepeatedMessageView<Resource>) { self.resources = resources }

    public struct Iterator: IteratorProtocol {
        let resources: RepeatedMessageView<Resource>
        var r = 0, s = 0, i = 0
        var scopes: RepeatedMessageView<Scope>?
        var items: RepeatedMessageView<Item>?

        public mutating func next() -> (resource: Resource, scope: Scope, record: Item)? {
            while true {
                if let items, i < items.count {
                    defer { i += 1 }
                    return (resources[r], scopes![s], items[i])
                }
                if let scopes, s + 1 < scopes.count {
                    s += 1
                    items = scopes[s].children
                    i = 0
                    continue
                }
                if scopes != nil { r += 1 }
                guard r < resources.count else { return nil }
                scopes = resources[r].children
                s = -1
                items = nil
                if scopes!.isEmpty { scopes = nil; r += 1; continue }
            }
        }
    }

    public func makeIterator() -> Iterator { Iterator(resources: resources) }
}

/// A level of the resource → scope → item nesting.
public protocol NestedLevel: OTLPMessageView {
    associatedtype Child: OTLPMessageView
    var children: RepeatedMessageView<Child> { get }
}

extension ResourceLogsView: NestedLevel { public var children: RepeatedMessageView<ScopeLogsView> { scopeLogs } }
extension ScopeLogsView: NestedLevel { public var children: RepeatedMessageView<LogRecordView> { logRecords } }

public struct ResourceLogsView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CResourceLogs>
    public init(_ raw: UnsafeMutablePointer<CResourceLogs>) { self.raw = raw }

    public var resource: ResourceView? { raw.pointee.resource.map(ResourceView.init) }
    public var scopeLogs: RepeatedMessageView<ScopeLogsView> { RepeatedMessageView(raw.pointee.scope_logs, raw.pointee.n_scope_logs) }
    public var schemaURL: StringView { StringView(raw.pointee.schema_url) }
}

public struct ScopeLogsView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CScopeLogs>
    public init(_ raw: UnsafeMutablePointer<CScopeLogs>) { self.raw = raw }

    public var scope: ScopeView? { raw.pointee.scope.map(ScopeView.init) }
    public var logRecords: RepeatedMessageView<LogRecordView> { RepeatedMessageView(raw.pointee.log_records, raw.pointee.n_log_records) }
    public var schemaURL: StringView { StringView(raw.pointee.schema_url) }
}

/// One log record: for an AI gateway, one governance event.
public struct LogRecordView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CLogRecord>
    public init(_ raw: UnsafeMutablePointer<CLogRecord>) { self.raw = raw }

    public var timeUnixNano: UInt64 { raw.pointee.time_unix_nano }
    public var observedTimeUnixNano: UInt64 { raw.pointee.observed_time_unix_nano }
    /// The time to file the record under: `time_unix_nano`, or the observed time
    /// when the source did not set one (as the log data model says).
    public var effectiveTimeUnixNano: UInt64 { timeUnixNano != 0 ? timeUnixNano : observedTimeUnixNano }
    public var severityNumber: Int32 { Int32(bitPattern: raw.pointee.severity_number.rawValue) }
    public var severityText: StringView { StringView(raw.pointee.severity_text) }
    public var body: AnyValueView? { raw.pointee.body.map(AnyValueView.init) }
    public var attributes: AttributesView { AttributesView(raw.pointee.attributes, raw.pointee.n_attributes) }
    public var droppedAttributesCount: UInt32 { raw.pointee.dropped_attributes_count }
    public var flags: UInt32 { raw.pointee.flags }
    public var traceID: BytesView { BytesView(raw: raw.pointee.trace_id) }
    public var spanID: BytesView { BytesView(raw: raw.pointee.span_id) }
    public var eventName: StringView { StringView(raw.pointee.event_name) }
}

extension OTLPBatch {
    /// Reads a logs batch through views that stay valid for the closure's duration.
    /// `nil` for a batch of another signal.
    public func withLogs<R>(_ body: (LogsRequestView) throws -> R) rethrows -> R? {
        guard signal == .logs else { return nil }
        return try withExtendedLifetime(self) {
            try body(LogsRequestView(UnsafeMutableRawPointer(message).assumingMemoryBound(to: CLogsRequest.self)))
        }
    }

    /// Number of log records, spans or metric data points in the batch.
    public var itemCount: Int {
        switch signal {
        case .logs: withLogs { $0.recordCount } ?? 0
        case .traces: withTraces { $0.spanCount } ?? 0
        case .metrics: withExtendedLifetime(self) { MetricsCounting.dataPoints(UnsafeMutableRawPointer(message).assumingMemoryBound(to: CMetricsRequest.self)) }
        }
    }
}

import COTLP

/// `ExportTraceServiceRequest`: resource → scope → spans.
public struct TracesRequestView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CTracesRequest>
    public init(_ raw: UnsafeMutablePointer<CTracesRequest>) { self.raw = raw }

    public var resourceSpans: RepeatedMessageView<ResourceSpansView> {
        RepeatedMessageView(raw.pointee.resource_spans, raw.pointee.n_resource_spans)
    }

    /// Every span with its resource and scope, in order (`record` is the span).
    public var spans: NestedRecords<ResourceSpansView, ScopeSpansView, SpanView> {
        NestedRecords(resourceSpans)
    }

    public var spanCount: Int {
        resourceSpans.reduce(0) { $0 + $1.scopeSpans.reduce(0) { $0 + $1.spans.count } }
    }
}

public struct ResourceSpansView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CResourceSpans>
    public init(_ raw: UnsafeMutablePointer<CResourceSpans>) { self.raw = raw }

    public var resource: ResourceView? { raw.pointee.resource.map(ResourceView.init) }
    public var scopeSpans: RepeatedMessageView<ScopeSpansView> { RepeatedMessageView(raw.pointee.scope_spans, raw.pointee.n_scope_spans) }
    public var schemaURL: StringView { StringView(raw.pointee.schema_url) }
}

public struct ScopeSpansView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CScopeSpans>
    public init(_ raw: UnsafeMutablePointer<CScopeSpans>) { self.raw = raw }

    public var scope: ScopeView? { raw.pointee.scope.map(ScopeView.init) }
    public var spans: RepeatedMessageView<SpanView> { RepeatedMessageView(raw.pointee.spans, raw.pointee.n_spans) }
    public var schemaURL: StringView { StringView(raw.pointee.schema_url) }
}

extension ResourceSpansView: NestedLevel { public var children: RepeatedMessageView<ScopeSpansView> { scopeSpans } }
extension ScopeSpansView: NestedLevel { public var children: RepeatedMessageView<SpanView> { spans } }

public struct SpanView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CSpan>
    public init(_ raw: UnsafeMutablePointer<CSpan>) { self.raw = raw }

    /// `Span.SpanKind`, with the names OTLP/JSON and SIEM mappings use.
    public enum Kind: Int32, Sendable {
        case unspecified = 0, `internal`, server, client, producer, consumer
    }

    public var traceID: BytesView { BytesView(raw: raw.pointee.trace_id) }
    public var spanID: BytesView { BytesView(raw: raw.pointee.span_id) }
    public var parentSpanID: BytesView { BytesView(raw: raw.pointee.parent_span_id) }
    public var traceState: StringView { StringView(raw.pointee.trace_state) }
    public var flags: UInt32 { raw.pointee.flags }
    public var name: StringView { StringView(raw.pointee.name) }
    public var kindNumber: Int32 { Int32(bitPattern: raw.pointee.kind.rawValue) }
    /// `nil` for a kind number this version of OTLP does not define.
    public var kind: Kind? { Kind(rawValue: kindNumber) }
    public var startTimeUnixNano: UInt64 { raw.pointee.start_time_unix_nano }
    public var endTimeUnixNano: UInt64 { raw.pointee.end_time_unix_nano }
    public var attributes: AttributesView { AttributesView(raw.pointee.attributes, raw.pointee.n_attributes) }
    public var droppedAttributesCount: UInt32 { raw.pointee.dropped_attributes_count }
    public var events: RepeatedMessageView<SpanEventView> { RepeatedMessageView(raw.pointee.events, raw.pointee.n_events) }
    public var droppedEventsCount: UInt32 { raw.pointee.dropped_events_count }
    public var links: RepeatedMessageView<SpanLinkView> { RepeatedMessageView(raw.pointee.links, raw.pointee.n_links) }
    public var droppedLinksCount: UInt32 { raw.pointee.dropped_links_count }
    public var status: StatusView? { raw.pointee.status.map(StatusView.init) }
}

public struct SpanEventView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CSpanEvent>
    public init(_ raw: UnsafeMutablePointer<CSpanEvent>) { self.raw = raw }

    public var timeUnixNano: UInt64 { raw.pointee.time_unix_nano }
    public var name: StringView { StringView(raw.pointee.name) }
    public var attributes: AttributesView { AttributesView(raw.pointee.attributes, raw.pointee.n_attributes) }
    public var droppedAttributesCount: UInt32 { raw.pointee.dropped_attributes_count }
}

public struct SpanLinkView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CSpanLink>
    public init(_ raw: UnsafeMutablePointer<CSpanLink>) { self.raw = raw }

    public var traceID: BytesView { BytesView(raw: raw.pointee.trace_id) }
    public var spanID: BytesView { BytesView(raw: raw.pointee.span_id) }
    public var traceState: StringView { StringView(raw.pointee.trace_state) }
    public var attributes: AttributesView { AttributesView(raw.pointee.attributes, raw.pointee.n_attributes) }
    public var droppedAttributesCount: UInt32 { raw.pointee.dropped_attributes_count }
    public var flags: UInt32 { raw.pointee.flags }
}

public struct StatusView: OTLPMessageView {
    let raw: UnsafeMutablePointer<CStatus>
    public init(_ raw: UnsafeMutablePointer<CStatus>) { self.raw = raw }

    /// 0 unset, 1 ok, 2 error.
    public var code: Int32 { Int32(bitPattern: raw.pointee.code.rawValue) }
    public var message: StringView { StringView(raw.pointee.message) }
}

extension OTLPBatch {
    /// Reads a traces batch through views that stay valid for the closure's duration.
    /// `nil` for a batch of another signal.
    public func withTraces<R>(_ body: (TracesRequestView) throws -> R) rethrows -> R? {
        guard signal == .traces else { return nil }
        return try withExtendedLifetime(self) {
            try body(TracesRequestView(UnsafeMutableRawPointer(message).assumingMemoryBound(to: CTracesRequest.self)))
        }
    }
}

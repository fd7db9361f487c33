import COTLP

// Processors change batches through `OTLPBatch.edit`, and only through it: the
// views are read-only and the message pointer is internal to this module. Every
// editor method that changes the message marks the batch edited, which drops the
// kept request protobuf (`protobufSource`); pipeline logs then store the packed
// edited message. A redacted value can therefore never reach a disk log's segment
// files in its original form, whatever a processor forgets to do.

extension OTLPBatch {
    /// Runs `body` with an editor for this batch. Call it before the batch is
    /// appended to a pipeline log (processors do), never after.
    public func edit<R>(_ body: (BatchEditor) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(BatchEditor(batch: self)) }
    }

    /// Whether a processor has changed the batch since it was decoded or built.
    public var isEdited: Bool { edited }

    func markEdited() {
        guard !edited else { return }
        edited = true
        protobufSource = nil
    }

    /// The batch as protobuf: the request's own bytes while nothing changed them,
    /// else the edited message packed.
    public func withProtobuf<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let kept = protobufSource { return try body(kept) }
        if let result = try withPackedLogs(body) { return result }
        return try Self.packWithProtobufC(message).withUnsafeBytes(body)
    }

    /// An independent copy (its own arena), for a second pipeline or a route.
    public func copy() throws(OTLPDecodeError) -> OTLPBatch {
        let copy = try OTLPBatch.decode(protobuf: encodeProtobuf(), signal: signal, limits: OTLPDecodeLimits(maxBodyBytes: .max))
        copy.edited = edited
        return copy
    }
}

/// What a processor sees of a batch it may change: every resource, log record and
/// span, editable in place, and removal of records and spans.
public struct BatchEditor {
    let batch: OTLPBatch

    public var signal: OTLPSignal { batch.signal }

    // MARK: Resources

    /// Each resource of the batch (any signal). A resource entry without a
    /// `Resource` message gets an empty one, so attributes can be added to it.
    public func forEachResource(_ body: (AttributesEditor) throws -> Void) throws {
        switch batch.signal {
        case .logs:
            let request = UnsafeMutableRawPointer(batch.message).assumingMemoryBound(to: CLogsRequest.self)
            for r in 0..<request.pointee.n_resource_logs {
                try body(resourceAttributes(request.pointee.resource_logs[r]!, \.resource))
            }
        case .traces:
            let request = UnsafeMutableRawPointer(batch.message).assumingMemoryBound(to: CTracesRequest.self)
            for r in 0..<request.pointee.n_resource_spans {
                try body(resourceAttributes(request.pointee.resource_spans[r]!, \.resource))
            }
        case .metrics:
            let request = UnsafeMutableRawPointer(batch.message).assumingMemoryBound(to: CMetricsRequest.self)
            for r in 0..<request.pointee.n_resource_metrics {
                try body(resourceAttributes(request.pointee.resource_metrics[r]!, \.resource))
            }
        }
    }

    private func resourceAttributes<M>(_ owner: UnsafeMutablePointer<M>, _ field: WritableKeyPath<M, UnsafeMutablePointer<CResource>?>) throws(OTLPEditError) -> AttributesEditor {
        if let resource = owner.pointee[keyPath: field] {
            return AttributesEditor(batch, resource, count: \.n_attributes, list: \.attributes)
        }
        let resource = try batch.arena.message(sluice_resource_descriptor(), as: CResource.self)
        // An empty Resource packs to nothing more than its tag: not an edit yet.
        owner.pointee[keyPath: field] = resource
        return AttributesEditor(batch, resource, count: \.n_attributes, list: \.attributes)
    }

    // MARK: Log records

    /// Each log record with its resource and scope, in order.
    public func forEachLogRecord(_ body: (LogRecordEditor) throws -> Void) rethrows {
        guard let request = logsRequest else { return }
        for r in 0..<request.pointee.n_resource_logs {
            let resourceLogs = request.pointee.resource_logs[r]!
            for s in 0..<resourceLogs.pointee.n_scope_logs {
                let scopeLogs = resourceLogs.pointee.scope_logs[s]!
                for i in 0..<scopeLogs.pointee.n_log_records {
                    try body(LogRecordEditor(batch: batch, raw: scopeLogs.pointee.log_records[i]!, resourceLogs: resourceLogs, scopeLogs: scopeLogs))
                }
            }
        }
    }

    /// Removes every log record `shouldRemove` picks, and scope and resource
    /// entries left empty by it; returns how many records went.
    @discardableResult
    public func removeLogRecords(where shouldRemove: (LogRecordEditor) throws -> Bool) rethrows -> Int {
        guard let request = logsRequest else { return 0 }
        var removed = 0
        try compact(&request.pointee.resource_logs, &request.pointee.n_resource_logs) { resourceLogs in
            try compact(&resourceLogs.pointee.scope_logs, &resourceLogs.pointee.n_scope_logs) { scopeLogs in
                try compact(&scopeLogs.pointee.log_records, &scopeLogs.pointee.n_log_records) { record in
                    let remove = try shouldRemove(LogRecordEditor(batch: batch, raw: record, resourceLogs: resourceLogs, scopeLogs: scopeLogs))
                    if remove { removed += 1 }
                    return !remove
                }
                return scopeLogs.pointee.n_log_records > 0
            }
            return resourceLogs.pointee.n_scope_logs > 0
        }
        return removed
    }

    // MARK: Spans

    /// Each span with its resource and scope, in order.
    public func forEachSpan(_ body: (SpanEditor) throws -> Void) rethrows {
        guard let request = tracesRequest else { return }
        for r in 0..<request.pointee.n_resource_spans {
            let resourceSpans = request.pointee.resource_spans[r]!
            for s in 0..<resourceSpans.pointee.n_scope_spans {
                let scopeSpans = resourceSpans.pointee.scope_spans[s]!
                for i in 0..<scopeSpans.pointee.n_spans {
                    try body(SpanEditor(batch: batch, raw: scopeSpans.pointee.spans[i]!, resourceSpans: resourceSpans, scopeSpans: scopeSpans))
                }
            }
        }
    }

    /// Removes every span `shouldRemove` picks, and emptied scope and resource
    /// entries; returns how many spans went.
    @discardableResult
    public func removeSpans(where shouldRemove: (SpanEditor) throws -> Bool) rethrows -> Int {
        guard let request = tracesRequest else { return 0 }
        var removed = 0
        try compact(&request.pointee.resource_spans, &request.pointee.n_resource_spans) { resourceSpans in
            try compact(&resourceSpans.pointee.scope_spans, &resourceSpans.pointee.n_scope_spans) { scopeSpans in
                try compact(&scopeSpans.pointee.spans, &scopeSpans.pointee.n_spans) { span in
                    let remove = try shouldRemove(SpanEditor(batch: batch, raw: span, resourceSpans: resourceSpans, scopeSpans: scopeSpans))
                    if remove { removed += 1 }
                    return !remove
                }
                return scopeSpans.pointee.n_spans > 0
            }
            return resourceSpans.pointee.n_scope_spans > 0
        }
        return removed
    }

    // MARK: Helpers

    private var logsRequest: UnsafeMutablePointer<CLogsRequest>? {
        batch.signal == .logs ? UnsafeMutableRawPointer(batch.message).assumingMemoryBound(to: CLogsRequest.self) : nil
    }

    private var tracesRequest: UnsafeMutablePointer<CTracesRequest>? {
        batch.signal == .traces ? UnsafeMutableRawPointer(batch.message).assumingMemoryBound(to: CTracesRequest.self) : nil
    }

    /// Keeps the elements of a repeated message field `keep` says yes to, in order.
    private func compact<M>(
        _ list: inout UnsafeMutablePointer<UnsafeMutablePointer<M>?>?,
        _ count: inout Int,
        keep: (UnsafeMutablePointer<M>) throws -> Bool
    ) rethrows {
        guard let base = list, count > 0 else { return }
        var kept = 0
        for i in 0..<count {
            guard let element = base[i], try keep(element) else { continue }
            base[kept] = element
            kept += 1
        }
        if kept != count {
            batch.markEdited()
            count = kept
        }
    }
}

/// One log record of a batch being edited, with the resource and scope it belongs to.
public struct LogRecordEditor {
    let batch: OTLPBatch
    let raw: UnsafeMutablePointer<CLogRecord>
    let resourceLogs: UnsafeMutablePointer<CResourceLogs>
    let scopeLogs: UnsafeMutablePointer<CScopeLogs>

    public var view: LogRecordView { LogRecordView(raw) }
    public var resource: ResourceView? { resourceLogs.pointee.resource.map(ResourceView.init) }
    public var scope: ScopeView? { scopeLogs.pointee.scope.map(ScopeView.init) }
    public var attributes: AttributesEditor { AttributesEditor(batch, raw, count: \.n_attributes, list: \.attributes) }

    /// The body for editing in place (nil when the record has none).
    public var body: AnyValueEditor? { raw.pointee.body.map { AnyValueEditor(batch: batch, raw: $0) } }

    /// Replaces (or sets) the body.
    public func setBody(_ value: OTLPValue) throws(OTLPEditError) {
        if let body { return try body.set(value) }
        let any = try batch.arena.message(sluice_any_value_descriptor(), as: CAnyValue.self)
        try batch.arena.write(value, into: any)
        batch.markEdited()
        raw.pointee.body = any
    }

    public func setSeverity(number: Int32, text: String?) throws(OTLPEditError) {
        let data = try text.map { t throws(OTLPEditError) in try batch.arena.binary(Array(t.utf8)) }
        batch.markEdited()
        raw.pointee.severity_number = Opentelemetry__Proto__Logs__V1__SeverityNumber(rawValue: UInt32(bitPattern: number))
        if let data { raw.pointee.severity_text = data }
    }
}

/// One span of a batch being edited, with the resource and scope it belongs to.
public struct SpanEditor {
    let batch: OTLPBatch
    let raw: UnsafeMutablePointer<CSpan>
    let resourceSpans: UnsafeMutablePointer<CResourceSpans>
    let scopeSpans: UnsafeMutablePointer<CScopeSpans>

    public var view: SpanView { SpanView(raw) }
    public var resource: ResourceView? { resourceSpans.pointee.resource.map(ResourceView.init) }
    public var scope: ScopeView? { scopeSpans.pointee.scope.map(ScopeView.init) }
    public var attributes: AttributesEditor { AttributesEditor(batch, raw, count: \.n_attributes, list: \.attributes) }
}

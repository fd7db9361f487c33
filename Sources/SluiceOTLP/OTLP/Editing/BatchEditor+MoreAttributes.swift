import COTLP

// The attribute lists beyond resources, records and spans: instrumentation scopes,
// span events and links, and metric data points. The redaction processor must see
// every place a value can hide (the Collector's redaction processor covers scope,
// span event and data point attributes too), and `attributes` edits data points.

extension BatchEditor {
    /// The attributes of each instrumentation scope of the batch (any signal); scope
    /// entries without a scope message are skipped (they have no attributes).
    public func forEachScope(_ body: (AttributesEditor) throws -> Void) throws {
        func visit<S>(_ list: UnsafeMutablePointer<UnsafeMutablePointer<S>?>?, _ n: Int, _ scope: KeyPath<S, UnsafeMutablePointer<CScope>?>) throws {
            for s in 0..<n {
                guard let entry = list?[s], let message = entry.pointee[keyPath: scope] else { continue }
                try body(AttributesEditor(batch, message, count: \.n_attributes, list: \.attributes))
            }
        }
        switch batch.signal {
        case .logs:
            let request = UnsafeMutableRawPointer(batch.message).assumingMemoryBound(to: CLogsRequest.self)
            for r in 0..<request.pointee.n_resource_logs {
                let resource = request.pointee.resource_logs[r]!
                try visit(resource.pointee.scope_logs, resource.pointee.n_scope_logs, \.scope)
            }
        case .traces:
            let request = UnsafeMutableRawPointer(batch.message).assumingMemoryBound(to: CTracesRequest.self)
            for r in 0..<request.pointee.n_resource_spans {
                let resource = request.pointee.resource_spans[r]!
                try visit(resource.pointee.scope_spans, resource.pointee.n_scope_spans, \.scope)
            }
        case .metrics:
            let request = UnsafeMutableRawPointer(batch.message).assumingMemoryBound(to: CMetricsRequest.self)
            for r in 0..<request.pointee.n_resource_metrics {
                let resource = request.pointee.resource_metrics[r]!
                try visit(resource.pointee.scope_metrics, resource.pointee.n_scope_metrics, \.scope)
            }
        }
    }

    /// Each data point of a metrics batch, in order (nothing for other signals).
    public func forEachDataPoint(_ body: (DataPointEditor) throws -> Void) throws {
        guard batch.signal == .metrics else { return }
        let request = UnsafeMutableRawPointer(batch.message).assumingMemoryBound(to: CMetricsRequest.self)
        for r in 0..<request.pointee.n_resource_metrics {
            let resourceMetrics = request.pointee.resource_metrics[r]!
            let resource = resourceMetrics.pointee.resource.map(ResourceView.init)
            for s in 0..<resourceMetrics.pointee.n_scope_metrics {
                let scopeMetrics = resourceMetrics.pointee.scope_metrics[s]!
                for m in 0..<scopeMetrics.pointee.n_metrics {
                    guard let metric = scopeMetrics.pointee.metrics[m] else { continue }
                    let name = StringView(metric.pointee.name)
                    func points<P>(_ list: UnsafeMutablePointer<UnsafeMutablePointer<P>?>?, _ n: Int,
                                   _ count: WritableKeyPath<P, Int>, _ attributes: WritableKeyPath<P, UnsafeMutablePointer<UnsafeMutablePointer<CKeyValue>?>?>) throws {
                        for p in 0..<n {
                            guard let point = list?[p] else { continue }
                            try body(DataPointEditor(attributes: AttributesEditor(batch, point, count: count, list: attributes), metricName: name, resource: resource))
                        }
                    }
                    let metricValue = metric.pointee
                    switch metricValue.data_case {
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE:
                        if let g = metricValue.gauge { try points(g.pointee.data_points, g.pointee.n_data_points, \.n_attributes, \.attributes) }
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM:
                        if let g = metricValue.sum { try points(g.pointee.data_points, g.pointee.n_data_points, \.n_attributes, \.attributes) }
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM:
                        if let h = metricValue.histogram { try points(h.pointee.data_points, h.pointee.n_data_points, \.n_attributes, \.attributes) }
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM:
                        if let h = metricValue.exponential_histogram { try points(h.pointee.data_points, h.pointee.n_data_points, \.n_attributes, \.attributes) }
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY:
                        if let h = metricValue.summary { try points(h.pointee.data_points, h.pointee.n_data_points, \.n_attributes, \.attributes) }
                    default:
                        break
                    }
                }
            }
        }
    }
}

/// One metric data point of a batch being edited: its attributes, and the metric
/// and resource it belongs to (read-only).
public struct DataPointEditor {
    public let attributes: AttributesEditor
    public let metricName: StringView
    public let resource: ResourceView?
}

extension SpanEditor {
    /// The attributes of each of the span's events.
    public func forEachEvent(_ body: (AttributesEditor) throws -> Void) rethrows {
        for e in 0..<raw.pointee.n_events {
            guard let event = raw.pointee.events[e] else { continue }
            try body(AttributesEditor(batch, event, count: \.n_attributes, list: \.attributes))
        }
    }

    /// The attributes of each of the span's links.
    public func forEachLink(_ body: (AttributesEditor) throws -> Void) rethrows {
        for l in 0..<raw.pointee.n_links {
            guard let link = raw.pointee.links[l] else { continue }
            try body(AttributesEditor(batch, link, count: \.n_attributes, list: \.attributes))
        }
    }
}

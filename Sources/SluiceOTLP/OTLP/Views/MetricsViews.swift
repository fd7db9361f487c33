import COTLP

/// One metric data point with the metric and resource it belongs to, for exporters
/// that write metrics point by point (splunk_hec's metric events). Valid only inside
/// `OTLPBatch.forEachMetricPoint`'s closure.
public struct MetricPointView {
    public enum Kind: String, Sendable { case gauge = "Gauge", sum = "Sum", histogram = "Histogram", exponentialHistogram = "ExponentialHistogram", summary = "Summary" }

    /// What the point holds.
    public enum Value {
        case number(Double)
        /// Explicit-bucket histogram: per-bucket (not cumulative) counts, one more than the bounds.
        case histogram(count: UInt64, sum: Double?, bounds: UnsafeBufferPointer<Double>, counts: UnsafeBufferPointer<UInt64>)
        case summary(count: UInt64, sum: Double, quantiles: [(quantile: Double, value: Double)])
        /// Exponential histograms: only their count and sum are read.
        case exponential(count: UInt64, sum: Double?)
    }

    public let resource: AttributesView?
    public let name: StringView
    public let kind: Kind
    public let attributes: AttributesView
    public let timeUnixNano: UInt64
    public let value: Value
    /// Which resource, scope and metric of the request.
    public let resourceIndex: Int, scopeIndex: Int, metricIndex: Int
}

extension OTLPBatch {
    /// Calls `body` for every data point of a metrics batch, in order.
    public func forEachMetricPoint(_ body: (MetricPointView) -> Void) {
        guard signal == .metrics else { return }
        withExtendedLifetime(self) {
            let request = UnsafeMutableRawPointer(message).assumingMemoryBound(to: CMetricsRequest.self).pointee
            for r in 0..<request.n_resource_metrics {
                guard let rm = request.resource_metrics[r]?.pointee else { continue }
                let resource = rm.resource.map { AttributesView($0.pointee.attributes, $0.pointee.n_attributes) }
                for s in 0..<rm.n_scope_metrics {
                    guard let sm = rm.scope_metrics[s]?.pointee else { continue }
                    for m in 0..<sm.n_metrics {
                        guard let metric = sm.metrics[m]?.pointee else { continue }
                        let name = StringView(metric.name)
                        func emit(_ kind: MetricPointView.Kind, _ attributes: AttributesView, _ time: UInt64, _ value: MetricPointView.Value) {
                            body(MetricPointView(resource: resource, name: name, kind: kind, attributes: attributes, timeUnixNano: time, value: value,
                                                 resourceIndex: r, scopeIndex: s, metricIndex: m))
                        }
                        func numbers(_ kind: MetricPointView.Kind, _ points: UnsafeMutablePointer<UnsafeMutablePointer<Opentelemetry__Proto__Metrics__V1__NumberDataPoint>?>?, _ n: Int) {
                            for p in 0..<n {
                                guard let point = points?[p]?.pointee else { continue }
                                let value: Double
                                switch point.value_case {
                                case OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT: value = Double(point.as_int)
                                case OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_DOUBLE: value = point.as_double
                                default: continue
                                }
                                emit(kind, AttributesView(point.attributes, point.n_attributes), point.time_unix_nano, .number(value))
                            }
                        }
                        switch metric.data_case {
                        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE:
                            if let g = metric.gauge?.pointee { numbers(.gauge, g.data_points, g.n_data_points) }
                        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM:
                            if let g = metric.sum?.pointee { numbers(.sum, g.data_points, g.n_data_points) }
                        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM:
                            guard let h = metric.histogram?.pointee else { break }
                            for p in 0..<h.n_data_points {
                                guard let point = h.data_points[p]?.pointee else { continue }
                                let sum = point._sum_case == OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___SUM_SUM ? point.sum : nil
                                emit(.histogram, AttributesView(point.attributes, point.n_attributes), point.time_unix_nano,
                                     .histogram(count: point.count, sum: sum, bounds: UnsafeBufferPointer(start: point.explicit_bounds, count: point.n_explicit_bounds),
                                                counts: UnsafeBufferPointer(start: point.bucket_counts, count: point.n_bucket_counts)))
                            }
                        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM:
                            guard let h = metric.exponential_histogram?.pointee else { break }
                            for p in 0..<h.n_data_points {
                                guard let point = h.data_points[p]?.pointee else { continue }
                                let sum = point._sum_case == OPENTELEMETRY__PROTO__METRICS__V1__EXPONENTIAL_HISTOGRAM_DATA_POINT___SUM_SUM ? point.sum : nil
                                emit(.exponentialHistogram, AttributesView(point.attributes, point.n_attributes), point.time_unix_nano, .exponential(count: point.count, sum: sum))
                            }
                        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY:
                            guard let h = metric.summary?.pointee else { break }
                            for p in 0..<h.n_data_points {
                                guard let point = h.data_points[p]?.pointee else { continue }
                                var quantiles: [(Double, Double)] = []
                                for q in 0..<point.n_quantile_values {
                                    if let v = point.quantile_values[q]?.pointee { quantiles.append((v.quantile, v.value)) }
                                }
                                emit(.summary, AttributesView(point.attributes, point.n_attributes), point.time_unix_nano,
                                     .summary(count: point.count, sum: point.sum, quantiles: quantiles))
                            }
                        default:
                            break
                        }
                    }
                }
            }
        }
    }
}

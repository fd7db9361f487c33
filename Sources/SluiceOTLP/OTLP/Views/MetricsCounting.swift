import COTLP

/// Sluice forwards metrics untouched to OTLP exporters; it only needs to count
/// their data points (for partial-success answers and metrics).
enum MetricsCounting {
    static func dataPoints(_ request: UnsafeMutablePointer<CMetricsRequest>) -> Int {
        var total = 0
        let r = request.pointee
        for i in 0..<r.n_resource_metrics {
            guard let rm = r.resource_metrics[i] else { continue }
            for j in 0..<rm.pointee.n_scope_metrics {
                guard let sm = rm.pointee.scope_metrics[j] else { continue }
                for k in 0..<sm.pointee.n_metrics {
                    guard let m = sm.pointee.metrics[k]?.pointee else { continue }
                    switch m.data_case {
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE: total += m.gauge?.pointee.n_data_points ?? 0
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM: total += m.sum?.pointee.n_data_points ?? 0
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM: total += m.histogram?.pointee.n_data_points ?? 0
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM: total += m.exponential_histogram?.pointee.n_data_points ?? 0
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY: total += m.summary?.pointee.n_data_points ?? 0
                    default: break
                    }
                }
            }
        }
        return total
    }
}

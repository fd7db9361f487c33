import COTLP

/// The three OTLP signals, each with its request and response messages.
public enum OTLPSignal: String, Sendable, CaseIterable, CustomStringConvertible {
    case logs
    case traces
    case metrics

    public var description: String { rawValue }

    /// The OTLP/HTTP path that carries this signal (`/v1/logs`, …).
    public var httpPath: String {
        switch self {
        case .logs: "/v1/logs"
        case .traces: "/v1/traces"
        case .metrics: "/v1/metrics"
        }
    }

    var requestDescriptor: UnsafePointer<ProtobufCMessageDescriptor> {
        switch self {
        case .logs: sluice_logs_request_descriptor()
        case .traces: sluice_traces_request_descriptor()
        case .metrics: sluice_metrics_request_descriptor()
        }
    }

    var responseDescriptor: UnsafePointer<ProtobufCMessageDescriptor> {
        switch self {
        case .logs: sluice_logs_response_descriptor()
        case .traces: sluice_traces_response_descriptor()
        case .metrics: sluice_metrics_response_descriptor()
        }
    }

    /// What one item of this signal is called in messages and metrics.
    public var itemName: String {
        switch self {
        case .logs: "log records"
        case .traces: "spans"
        case .metrics: "data points"
        }
    }
}

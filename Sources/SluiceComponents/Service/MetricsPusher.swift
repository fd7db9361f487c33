import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

/// `service.telemetry.metrics.readers[].periodic` with an OTLP exporter: every
/// `interval`, Sluice's own metrics as one `ExportMetricsServiceRequest` (protobuf)
/// POSTed to the endpoint — counters as cumulative monotonic sums, gauges as gauges,
/// labels as attributes, `service.telemetry.resource` as the resource.
/// (https://opentelemetry.io/docs/specs/otlp/#otlphttp-request)
final class MetricsPusher: Sendable {
    let push: TelemetryConfig.MetricsPush
    let endpoint: HTTPEndpoint
    let client: HTTPClient
    let metrics: MetricsRegistry
    let telemetry: TelemetryConfig
    let logger: Logger
    let started: UInt64

    init?(_ telemetry: TelemetryConfig, metrics: MetricsRegistry, logger: Logger) {
        guard let push = telemetry.push, let endpoint = HTTPEndpoint(push.endpoint) else { return nil }
        self.push = push
        self.endpoint = endpoint
        self.telemetry = telemetry
        self.metrics = metrics
        self.logger = logger
        var settings = HTTPClient.Settings()
        settings.requestTimeout = push.timeout
        settings.maxConnections = 1
        if push.grpc { settings.http2 = .required }
        client = HTTPClient(endpoint: endpoint, settings: settings)
        started = Self.nowNanos()
    }

    /// Pushes every `interval` until cancelled. A failed push is logged (once until
    /// one succeeds again) and the next one carries the totals anyway: counters are
    /// cumulative, so nothing is lost by a missed push.
    func run() async {
        var failing = false
        while !Task.isCancelled {
            do { try await Task.sleep(for: push.interval) } catch { break }
            let ok = await pushOnce()
            if !ok, !failing { failing = true }
            if ok, failing {
                failing = false
                logger.info("pushing Sluice's metrics works again", metadata: ["endpoint": "\(push.endpoint)"])
            }
        }
        await client.close()
    }

    @discardableResult
    func pushOnce() async -> Bool {
        let message = Self.request(metrics.snapshot(dropping: telemetry.drops), resource: telemetry.resource, start: started, now: Self.nowNanos())
        var headers = push.grpc ? HTTPHeaders([("content-type", "application/grpc"), ("te", "trailers")]) : HTTPHeaders([("Content-Type", "application/x-protobuf")])
        for (name, value) in push.headers { headers.replaceOrAdd(name: push.grpc ? name.lowercased() : name, value: value) }
        let path = push.grpc ? "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" : endpoint.path.isEmpty ? "/v1/metrics" : endpoint.path
        let body = push.grpc ? GRPCMessage.framed(message) : ByteBuffer(bytes: message)
        do {
            let response = try await client.send(HTTPClientRequest(target: path, headers: headers, body: body))
            let grpcCode = push.grpc ? GRPCStatus(headers: response.headers, trailers: response.trailers)?.code : nil
            guard (200..<300).contains(response.status.code), !push.grpc || grpcCode == .ok else {
                logger.warning("pushing Sluice's metrics was refused", metadata: [
                    "endpoint": "\(push.endpoint)", "status": "\(response.status.code)", "grpc_status": "\(grpcCode.map { "\($0)" } ?? "")"])
                return false
            }
            return true
        } catch {
            logger.warning("cannot push Sluice's metrics", metadata: ["endpoint": "\(push.endpoint)", "error": "\(error)"])
            return false
        }
    }

    static func nowNanos() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970 * 1e9)) }

    /// ExportMetricsServiceRequest: resource_metrics(1) { resource(1) { attributes(1) },
    /// scope_metrics(2) { scope(1) { name(1), version(2) }, metrics(2) } }. Metric:
    /// name(1), description(2), gauge(5) | sum(7) { data_points(1),
    /// aggregation_temporality(2) = CUMULATIVE (2), is_monotonic(3) }. NumberDataPoint:
    /// start_time_unix_nano(2), time_unix_nano(3), as_double(4), attributes(7).
    static func request(_ families: [MetricsRegistry.FamilySnapshot], resource: [(String, String)], start: UInt64, now: UInt64) -> [UInt8] {
        var scope = ProtobufWriter()
        var scopeID = ProtobufWriter()
        scopeID.stringField(1, "sluice")
        scopeID.stringField(2, SluiceVersion.current)
        scope.bytesField(1, scopeID.bytes)
        for family in families {
            var points = ProtobufWriter()
            for series in family.series {
                var point = ProtobufWriter()
                if family.type == "counter" { point.fixed64Field(2, start) }
                point.fixed64Field(3, now)
                point.fixed64Field(4, series.value.bitPattern)
                for (key, value) in series.labels { point.bytesField(7, keyValue(key, value)) }
                points.bytesField(1, point.bytes)
            }
            var metric = ProtobufWriter()
            metric.stringField(1, family.name)
            metric.stringField(2, family.help)
            if family.type == "counter" {
                points.varintField(2, 2)
                points.varintField(3, 1)
                metric.bytesField(7, points.bytes)
            } else {
                metric.bytesField(5, points.bytes)
            }
            scope.bytesField(2, metric.bytes)
        }
        var resourceMessage = ProtobufWriter()
        let attributes = resource.contains { $0.0 == "service.name" } ? resource : [("service.name", "sluice")] + resource
        for (key, value) in attributes { resourceMessage.bytesField(1, keyValue(key, value)) }
        var resourceMetrics = ProtobufWriter()
        resourceMetrics.bytesField(1, resourceMessage.bytes)
        resourceMetrics.bytesField(2, scope.bytes)
        var request = ProtobufWriter()
        request.bytesField(1, resourceMetrics.bytes)
        return request.bytes
    }

    /// KeyValue { key(1), value(2): AnyValue { string_value(1) } }.
    static func keyValue(_ key: String, _ value: String) -> [UInt8] {
        var any = ProtobufWriter()
        any.bytesField(1, Array(value.utf8))
        var pair = ProtobufWriter()
        pair.stringField(1, key)
        pair.bytesField(2, any.bytes)
        return pair.bytes
    }
}

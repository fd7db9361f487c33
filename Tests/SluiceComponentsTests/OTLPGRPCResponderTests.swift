// OTLP/gRPC answers without sockets: framing, compression, every status the
// receiver gives, authentication and the counters.
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import SluiceCore
import SluiceNet
@testable import SluiceComponents

@Suite struct OTLPGRPCResponderTests {
    let grpcHeaders = [("content-type", "application/grpc"), ("te", "trailers")]

    func responder(_ sink: RecordingSink = RecordingSink(), metrics: MetricsRegistry = MetricsRegistry(),
                   _ adjust: (inout OTLPReceiverConfig.GRPC) -> Void = { _ in }) -> OTLPGRPCResponder {
        var config = OTLPReceiverConfig.GRPC()
        adjust(&config)
        let id = ComponentID(type: "otlp")
        return OTLPGRPCResponder(id: id, config: config, sink: sink, counters: ReceiverCounters(id: id, transport: "grpc", metrics: metrics))
    }

    func call(_ responder: OTLPGRPCResponder, headers: [(String, String)]? = nil, body: [UInt8],
              path: String = OTLPTestData.logsPath) throws -> HTTPServerResponse {
        let request = OTLPTestData.request(path: path, headers: headers ?? grpcHeaders, body: body)
        return try reply { responder.handle(request, reply: $0) }
    }

    /// The status of a trailers-only answer (no message, status in trailers).
    func status(_ response: HTTPServerResponse) -> (code: Int?, message: String?) {
        #expect(response.status == .ok)
        #expect(response.headers.first(name: "content-type") == "application/grpc")
        return (response.trailers?.first(name: "grpc-status").flatMap(Int.init), response.trailers?.first(name: "grpc-message"))
    }

    // MARK: Success

    @Test func exportIsAcknowledgedWithAnEmptyResponseAndStatusZero() throws {
        let sink = RecordingSink()
        let response = try call(responder(sink), body: OTLPTestData.framed(try OTLPTestData.logsProtobuf()))
        #expect(response.status == .ok)
        #expect(response.headers.first(name: "content-type") == "application/grpc")
        #expect(bytes(response.body) == [0, 0, 0, 0, 0])  // one empty ExportLogsServiceResponse
        #expect(response.trailers?.first(name: "grpc-status") == "0")
        #expect(sink.received.count == 1)
        #expect(sink.received.first?.itemCount == 1)
    }

    @Test(arguments: ["application/grpc+proto", "application/grpc; charset=utf-8"])
    func grpcContentTypesAreAccepted(_ contentType: String) throws {
        let response = try call(responder(), headers: [("content-type", contentType)], body: OTLPTestData.framed(try OTLPTestData.logsProtobuf()))
        #expect(status(response).code == 0)
    }

    @Test func partialSuccessIsInTheResponseMessage() throws {
        let sink = RecordingSink(result: .accepted(rejected: 1, message: "filtered"))
        let response = try call(responder(sink), body: OTLPTestData.framed(try OTLPTestData.logsProtobuf()))
        #expect(response.trailers?.first(name: "grpc-status") == "0")
        // partial_success { rejected_log_records: 1, error_message: "filtered" }
        let message: [UInt8] = [0x0A, 12, 0x08, 1, 0x12, 8] + Array("filtered".utf8)
        #expect(bytes(response.body) == [0, 0, 0, 0, UInt8(message.count)] + message)
    }

    @Test func tracesAndMetricsHaveTheirOwnPaths() throws {
        let sink = RecordingSink()
        let spans = #"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"chat"}]}]}]}"#
        let protobuf = try OTLPBatch.decode(json: Array(spans.utf8), signal: .traces).encodeProtobuf()
        let response = try call(responder(sink), body: OTLPTestData.framed(protobuf), path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        #expect(status(response).code == 0)
        #expect(sink.received.first?.signal == .traces)
        let metrics = try call(responder(sink), body: OTLPTestData.framed([]), path: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
        #expect(status(metrics).code == 0)
    }

    // MARK: Compression

    @Test func gzipMessagesAreInflated() throws {
        let sink = RecordingSink()
        let gzipped = try #require(Compression.gzip(try OTLPTestData.logsProtobuf()))
        let headers = grpcHeaders + [("grpc-encoding", "gzip")]
        let response = try call(responder(sink), headers: headers, body: OTLPTestData.framed(gzipped, compressed: true))
        #expect(status(response).code == 0)
        #expect(sink.received.first?.itemCount == 1)
    }

    @Test func anUncompressedMessageMayComeWithAnEncodingHeader() throws {
        let headers = grpcHeaders + [("grpc-encoding", "gzip")]
        let response = try call(responder(), headers: headers, body: OTLPTestData.framed(try OTLPTestData.logsProtobuf()))
        #expect(status(response).code == 0)
    }

    @Test func aCompressedFlagWithoutAnEncodingIsInternal() throws {
        let gzipped = try #require(Compression.gzip(try OTLPTestData.logsProtobuf()))
        for headers in [grpcHeaders, grpcHeaders + [("grpc-encoding", "identity")]] {
            let response = try call(responder(), headers: headers, body: OTLPTestData.framed(gzipped, compressed: true))
            #expect(status(response).code == 13)
        }
    }

    @Test func anUnknownEncodingIsUnimplementedWithTheAcceptedOnes() throws {
        let headers = grpcHeaders + [("grpc-encoding", "snappy")]
        let response = try call(responder(), headers: headers, body: OTLPTestData.framed([1, 2, 3], compressed: true))
        #expect(status(response).code == 12)
        let accepted = try #require(response.headers.first(name: "grpc-accept-encoding"))
        #expect(accepted.contains("gzip") && !accepted.contains("snappy"))
    }

    @Test func aCompressedMessageOverTheLimitAfterInflatingIsResourceExhausted() throws {
        let zeros = [UInt8](repeating: 0, count: 2 << 20)
        let gzipped = try #require(Compression.gzip(zeros))
        let headers = grpcHeaders + [("grpc-encoding", "gzip")]
        let response = try call(responder { $0.maxRecvMsgSize = 1 << 20 }, headers: headers, body: OTLPTestData.framed(gzipped, compressed: true))
        #expect(status(response).code == 8)
    }

    @Test func aBrokenGzipStreamIsInvalidArgument() throws {
        let headers = grpcHeaders + [("grpc-encoding", "gzip")]
        let response = try call(responder(), headers: headers, body: OTLPTestData.framed([0x1F, 0x8B, 8, 0, 1, 2, 3], compressed: true))
        #expect(status(response).code == 3)
    }

    // MARK: Framing

    @Test func framingErrors() throws {
        let message = try OTLPTestData.logsProtobuf()
        let cases: [(String, [UInt8], Int)] = [
            ("no message", [], 3),
            ("truncated prefix", [0, 0, 0], 3),
            ("length beyond the body", OTLPTestData.framed(message, length: message.count + 10), 3),
            ("two messages", OTLPTestData.framed(message) + OTLPTestData.framed(message), 3),
            ("flag 2", [2] + OTLPTestData.framed(message).dropFirst(), 3),
            ("over max_recv_msg_size_mib", OTLPTestData.framed([], length: (4 << 20) + 1), 8),
            ("not protobuf", OTLPTestData.framed([0xFF, 0xFF, 0xFF]), 3),
        ]
        let metrics = MetricsRegistry()
        let grpc = responder(metrics: metrics)
        for (name, body, code) in cases {
            let response = try call(grpc, body: body)
            #expect(status(response).code == code, "\(name)")
            #expect(response.body == nil || response.body?.readableBytes == 0, "\(name): trailers-only")
        }
        #expect(metrics.counter("sluice_receiver_bad_requests_total", "", labels: [("receiver", "otlp"), ("transport", "grpc")]).count == Int64(cases.count))
    }

    // MARK: Statuses

    @Test func aFullLogIsResourceExhaustedWithRetryInfo() throws {
        let sink = RecordingSink(result: .refused(.logFull(pipeline: "logs"), retryAfter: .seconds(5)))
        let response = try call(responder(sink), body: OTLPTestData.framed(try OTLPTestData.logsProtobuf()))
        #expect(status(response).code == 8)
        let details = try #require(response.trailers?.first(name: "grpc-status-details-bin"))
        #expect(!details.hasSuffix("="))
        let padded = details + String(repeating: "=", count: (4 - details.count % 4) % 4)
        let decoded = try #require(Data(base64Encoded: padded))
        // google.rpc.Status { code: 8, message, details: [Any { RetryInfo { retry_delay { seconds: 5 } } }] }
        let reason = Array(RefusalReason.logFull(pipeline: "logs").description.utf8)
        let typeURL = Array("type.googleapis.com/google.rpc.RetryInfo".utf8)
        let retryInfo: [UInt8] = [0x0A, 2, 0x08, 5]
        let any: [UInt8] = [0x0A, UInt8(typeURL.count)] + typeURL + [0x12, UInt8(retryInfo.count)] + retryInfo
        let expected: [UInt8] = [0x08, 8, 0x12, UInt8(reason.count)] + reason + [0x1A, UInt8(any.count)] + any
        #expect(Array(decoded) == expected)
    }

    @Test func aRefusalBeforeDecodingIsAnsweredTheSameWay() throws {
        let sink = RecordingSink(early: .refused(.logFull(pipeline: "logs"), retryAfter: .seconds(1)))
        let response = try call(responder(sink), body: OTLPTestData.framed(try OTLPTestData.logsProtobuf()))
        #expect(status(response).code == 8)
        #expect(sink.received.isEmpty)
    }

    @Test(arguments: [RefusalReason.shuttingDown, .memoryLimit, .storageUnavailable(pipeline: "logs")])
    func unavailableReasons(_ reason: RefusalReason) throws {
        let sink = RecordingSink(result: .refused(reason, retryAfter: .seconds(2)))
        let response = try call(responder(sink), body: OTLPTestData.framed(try OTLPTestData.logsProtobuf()))
        #expect(status(response).code == 14)
        #expect(response.trailers?.first(name: "grpc-status-details-bin") != nil)
    }

    @Test func anUnknownMethodIsUnimplemented() throws {
        let response = try call(responder(), body: OTLPTestData.framed([]), path: "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export")
        #expect(status(response).code == 12)
    }

    @Test func aSignalInNoPipelineIsUnimplemented() throws {
        let sink = RecordingSink(signals: [.traces])
        let response = try call(responder(sink), body: OTLPTestData.framed(try OTLPTestData.logsProtobuf()))
        #expect(status(response).code == 12)
        #expect(sink.received.isEmpty)
    }

    @Test func http11IsRefusedSayingGRPCNeedsHTTP2() throws {
        let request = OTLPTestData.request(headers: grpcHeaders, body: OTLPTestData.framed([]), version: .http1_1)
        let response = try reply { responder().handle(request, reply: $0) }
        #expect(response.status == .httpVersionNotSupported)
        #expect(String(decoding: bytes(response.body), as: UTF8.self).contains("HTTP/2"))
    }

    @Test func otherContentTypesAre415AndOtherMethods405() throws {
        let json = try call(responder(), headers: [("content-type", "application/json")], body: [])
        #expect(json.status == .unsupportedMediaType)
        #expect(json.trailers == nil)
        let request = OTLPTestData.request(method: .GET, headers: grpcHeaders, body: [])
        #expect(try reply { responder().handle(request, reply: $0) }.status == .methodNotAllowed)
    }

    @Test func serverErrorsBecomeStatusesForGRPCClients() {
        let grpc = responder()
        let tooLarge = grpc.errorResponse(.payloadTooLarge, message: "too big", requestHeaders: HTTPHeaders(grpcHeaders))
        #expect(status(tooLarge).code == 8)
        #expect(tooLarge.body == nil)
        let stalled = grpc.errorResponse(.requestTimeout, message: "stalled", requestHeaders: HTTPHeaders(grpcHeaders))
        #expect(status(stalled).code == 4)
        // A client that is not gRPC would not read trailers: it gets the HTTP error.
        let plain = grpc.errorResponse(.payloadTooLarge, message: "too big", requestHeaders: HTTPHeaders([("content-type", "text/plain")]))
        #expect(plain.status == .payloadTooLarge)
    }

    @Test func grpcMessageIsPercentEncoded() {
        #expect(GRPCStatus.percentEncoded("a%b\nc é ~") == "a%25b%0Ac %C3%A9 ~")
        let response = GRPCStatus(.invalidArgument, "bad\tvalue").trailersOnlyResponse()
        #expect(response.trailers?.first(name: "grpc-message") == "bad%09value")
    }

    // MARK: Authentication

    @Test func bearerTokenAuthentication() throws {
        let metrics = MetricsRegistry()
        let sink = RecordingSink()
        let grpc = responder(sink, metrics: metrics) { $0.auth = bearerAuth(BearerTokenAuthSettings(tokens: ["s3cret"])) }
        let body = OTLPTestData.framed(try OTLPTestData.logsProtobuf())
        let cases: [([(String, String)], Int)] = [
            ([], 16),
            ([("authorization", "Bearer wrong")], 16),
            ([("authorization", "Basic czNjcmV0")], 16),
            ([("authorization", "Bearer s3cret")], 0),
            ([("authorization", "bearer s3cret")], 0),
        ]
        for (extra, code) in cases {
            let response = try call(grpc, headers: grpcHeaders + extra, body: body)
            let (got, message) = status(response)
            #expect(got == code, "\(extra)")
            #expect(!(message ?? "").contains("s3cret") && !(message ?? "").contains("wrong"))
        }
        #expect(sink.received.count == 2)
        #expect(metrics.counter("sluice_receiver_auth_failures_total", "", labels: [("receiver", "otlp"), ("transport", "grpc")]).count == 3)
    }
}

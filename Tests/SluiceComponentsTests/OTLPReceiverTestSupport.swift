// What the OTLP receiver tests share: a sink that records what it is handed and
// answers as told, requests built without sockets, and a wait for the reply.
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import Testing
import SluiceCore
import SluiceNet
@testable import SluiceComponents

/// Takes every signal; answers each batch with `result`, or refuses before decoding
/// with `early`.
final class RecordingSink: ReceiverSink {
    let result: AcceptResult
    let early: AcceptResult?
    let signals: Set<OTLPSignal>
    private let batches = Mutex<[OTLPBatch]>([])

    init(result: AcceptResult = .accepted(rejected: 0, message: nil), early: AcceptResult? = nil, signals: Set<OTLPSignal> = Set(OTLPSignal.allCases)) {
        self.result = result
        self.early = early
        self.signals = signals
    }

    var received: [OTLPBatch] { batches.withLock { $0 } }

    func accept(_ batch: OTLPBatch, completion: @escaping @Sendable (AcceptResult) -> Void) {
        batches.withLock { $0.append(batch) }
        completion(result)
    }

    func takes(_ signal: OTLPSignal) -> Bool { signals.contains(signal) }
    func refusalBeforeDecoding(_ signal: OTLPSignal, bodyBytes: Int) -> AcceptResult? { early }
}

enum OTLPTestData {
    /// One log record with a body, as OTLP protobuf.
    static func logsProtobuf(body: String = "user signed in") throws -> [UInt8] {
        let json = #"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"ai-gateway"}}]},"scopeLogs":[{"logRecords":[{"timeUnixNano":"1763712000000000000","body":{"stringValue":"\#(body)"}}]}]}]}"#
        return try OTLPBatch.decode(json: Array(json.utf8), signal: .logs).encodeProtobuf()
    }

    static let logsPath = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

    /// `flag` + big-endian `length` + `message`, as a gRPC client frames it.
    static func framed(_ message: [UInt8], compressed: Bool = false, length: Int? = nil) -> [UInt8] {
        let n = UInt32(length ?? message.count)
        return [compressed ? 1 : 0, UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + message
    }

    static func request(path: String = logsPath, method: HTTPMethod = .POST, headers: [(String, String)], body: [UInt8],
                        version: HTTPVersion = HTTPVersion(major: 2, minor: 0)) -> HTTPServerRequest {
        HTTPServerRequest(method: method, uri: path, headers: HTTPHeaders(headers), body: ByteBuffer(bytes: body),
                          remoteAddress: nil, version: version)
    }
}

/// The reply `handle` gives; every path of the responders replies before returning
/// when the sink answers at once, as `RecordingSink` does.
func reply(_ handle: (@escaping @Sendable (HTTPServerResponse) -> Void) -> Void) throws -> HTTPServerResponse {
    let box = Mutex<HTTPServerResponse?>(nil)
    handle { response in box.withLock { $0 = response } }
    return try #require(box.withLock { $0 })
}

func bytes(_ buffer: ByteBuffer?) -> [UInt8] {
    guard var buffer else { return [] }
    return buffer.readBytes(length: buffer.readableBytes) ?? []
}

/// A bearertokenauth extension with the given settings, as a protocol's `auth`.
func bearerAuth(_ settings: BearerTokenAuthSettings) -> ReceiverAuth {
    let id = ComponentID(type: "bearertokenauth")
    return ReceiverAuth(id: id, authenticator: BearerTokenAuthExtension(id: id, settings: settings, logger: Logger(label: "test")))
}

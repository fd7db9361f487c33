import NIOCore
import NIOHTTP1
import SluiceNet
import Synchronization
@testable import SluiceComponents

/// An HTTP destination without a socket: answers each request with what the test's
/// closure returns, and keeps every request for the test to read.
final class ScriptedHTTPTransport: HTTPTransport {
    private let answer: @Sendable (HTTPClientRequest) throws -> HTTPClientResponse
    private let recorded = Mutex<[HTTPClientRequest]>([])

    init(_ answer: @escaping @Sendable (HTTPClientRequest) throws -> HTTPClientResponse) { self.answer = answer }

    var requests: [HTTPClientRequest] { recorded.withLock { $0 } }

    func send(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        recorded.withLock { $0.append(request) }
        return try answer(request)
    }

    func close() async {}

    static func response(_ status: Int, _ body: String, headers: [(String, String)] = []) -> HTTPClientResponse {
        HTTPClientResponse(status: HTTPResponseStatus(statusCode: status), headers: HTTPHeaders(headers), body: ByteBuffer(string: body))
    }
}

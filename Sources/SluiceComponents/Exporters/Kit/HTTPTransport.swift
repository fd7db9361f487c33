import NIOCore
import SluiceNet

/// What an exporter sends requests through: the HTTP client, or a scripted fake in
/// tests (Tests/SluiceComponentsTests/Fakes/).
protocol HTTPTransport: Sendable {
    func send(_ request: HTTPClientRequest) async throws -> HTTPClientResponse
    func close() async
}

extension HTTPClient: HTTPTransport {}

import NIOCore
import SluiceNet

/// What an exporter sends requests through: the HTTP client, or a fake in unit
/// tests (FakeHEC in Tests/SluiceComponentsTests/SplunkHECExporterTests.swift).
protocol HTTPTransport: Sendable {
    func send(_ request: HTTPClientRequest) async throws -> HTTPClientResponse
    func close() async
}

extension HTTPClient: HTTPTransport {}

import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import SluiceCore
import SluiceNet
@testable import SluiceComponents

/// An HTTP destination for exporter tests without sockets: every request is kept,
/// and `answer` decides each response (the default: 200 with an empty body).
final class ScriptedDestination: HTTPTransport, Sendable {
    struct Sent: Sendable {
        var target: String
        var headers: HTTPHeaders
        var body: [UInt8]

        /// The body after its Content-Encoding.
        var json: Any? {
            let raw = headers.first(name: "Content-Encoding") == "gzip" ? (try? Decompression.decompress(body, encoding: .gzip, limit: 1 << 30)) ?? [] : body
            return try? JSONSerialization.jsonObject(with: Data(raw))
        }
    }

    private let log = Mutex<[Sent]>([])
    let answer: @Sendable (Sent) -> (status: Int, body: String, headers: [(String, String)])

    init(answer: @escaping @Sendable (Sent) -> (status: Int, body: String, headers: [(String, String)]) = { _ in (200, "", []) }) {
        self.answer = answer
    }

    var sent: [Sent] { log.withLock { $0 } }

    func send(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        let sent = Sent(target: request.target, headers: request.headers, body: request.body.map { Array($0.readableBytesView) } ?? [])
        log.withLock { $0.append(sent) }
        let (status, body, headers) = answer(sent)
        return HTTPClientResponse(status: HTTPResponseStatus(statusCode: status), headers: HTTPHeaders(headers), body: ByteBuffer(string: body))
    }

    func close() async {}
}

/// An exporter's section read from YAML as `sluice validate` reads it, for
/// config tests: the section's map (nil when the file had errors elsewhere) and
/// every diagnostic.
func exporterSection(_ type: String, _ section: String) -> (ConfigMap?, () -> [ConfigDiagnostic]) {
    let indented = section.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n    ")
    let yaml = """
    receivers:
      otlp:
    exporters:
      \(type):
        \(indented)
    service:
      pipelines:
        logs:
          receivers: [otlp]
          exporters: [\(type)]
    """
    let loaded = CollectorConfig.load(text: yaml, file: "test.yaml")
    return (loaded.exporters.first?.config, { loaded.diagnostics.all })
}

/// A logs batch from OTLP/JSON log records (`{"timeUnixNano":…}` objects), under
/// one resource with the given attributes.
func logsBatch(resource: String = #"{"key":"service.name","value":{"stringValue":"ai-gateway"}}"#, _ records: [String]) throws -> OTLPBatch {
    let json = #"{"resourceLogs":[{"resource":{"attributes":[\#(resource)]},"scopeLogs":[{"logRecords":[\#(records.joined(separator: ","))]}]}]}"#
    return try OTLPBatch.decode(json: Array(json.utf8), signal: .logs)
}

/// One gateway record as OTLP/JSON: an event_id, an action, an event type, a body.
func gatewayRecord(_ id: String, action: String = "block", type: String = "blocked", body: String = "request blocked",
                   extra: String = "") -> String {
    #"{"timeUnixNano":"1700000000123000000","severityNumber":13,"severityText":"WARN","traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","body":{"stringValue":"\#(body)"},"attributes":[{"key":"event_id","value":{"stringValue":"\#(id)"}},{"key":"action","value":{"stringValue":"\#(action)"}},{"key":"event_type","value":{"stringValue":"\#(type)"}},{"key":"tokens.prompt","value":{"intValue":"42"}}\#(extra)]}"#
}

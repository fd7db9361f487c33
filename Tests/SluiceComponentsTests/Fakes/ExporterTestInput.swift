import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import SluiceCore
import SluiceNet
@testable import SluiceComponents

extension ScriptedHTTPTransport {
    /// A destination answering each request with a status, a body and headers.
    static func answering(_ answer: @escaping @Sendable (HTTPClientRequest) -> (status: Int, body: String, headers: [(String, String)]))
        -> ScriptedHTTPTransport {
        ScriptedHTTPTransport { request in
            let (status, body, headers) = answer(request)
            return response(status, body, headers: headers)
        }
    }
}

extension HTTPClientRequest {
    /// The body as sent.
    var bytes: [UInt8] { body.map { Array($0.readableBytesView) } ?? [] }

    /// The body after its Content-Encoding, parsed as JSON.
    var json: Any? {
        let raw = headers.first(name: "Content-Encoding") == "gzip" ? (try? Decompression.decompress(bytes, encoding: .gzip, limit: 1 << 30)) ?? [] : bytes
        return try? JSONSerialization.jsonObject(with: Data(raw))
    }
}

/// An exporter's section read from YAML as `sluice validate` reads it, for
/// config tests: the section's map (nil when the file had errors elsewhere) and
/// the file's diagnostics (read them after the exporter's config is made).
func exporterSection(_ type: String, _ section: String) -> (ConfigMap?, ConfigDiagnostics) {
    let loaded = configAround(.exporter, type, section)
    return (loaded.exporters.first?.config, loaded.diagnostics)
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

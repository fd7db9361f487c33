import Foundation
import SluiceCore
import SluiceNet

/// `exporters.sentinel`: log records to a Log Analytics workspace (the tables
/// Microsoft Sentinel queries), through one of Azure Monitor's two APIs
/// (docs/sentinel.md):
///
/// - the Logs Ingestion API (the default): `endpoint` (the data collection
///   endpoint, or the DCR's own logs ingestion endpoint), `dcr_immutable_id`,
///   `stream_name`, with an Entra ID token from client credentials (`tenant_id`,
///   `client_id`, `client_secret`) or workload identity (`federated_token_file`,
///   as AKS mounts it; `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
///   `AZURE_FEDERATED_TOKEN_FILE` and `AZURE_AUTHORITY_HOST` fill what is not set);
/// - the HTTP Data Collector API (legacy, retired by Microsoft on 14 September
///   2026): `workspace_id`, `shared_key`, `log_type`, signed with SharedKey.
///
/// The Collector's `azuremonitor` exporter writes to Application Insights, a
/// different destination; its `connection_string` and `instrumentation_key` are
/// refused here with that explanation.
struct SentinelConfig: Sendable {
    enum API: Sendable, Equatable {
        case logsIngestion(LogsIngestion)
        case dataCollector(DataCollector)
    }

    struct LogsIngestion: Sendable, Equatable {
        var dcrImmutableID: String
        var streamName: String
        var apiVersion = "2023-01-01"
        var tenantID: String
        var clientID: String
        var credential: EntraCredential
        var authority: HTTPEndpoint
        /// The token's audience (the Logs Ingestion API's, in public Azure).
        var scope = "https://monitor.azure.com//.default"
    }

    enum EntraCredential: Sendable, Equatable {
        case clientSecret(String)
        /// A Kubernetes service account token, exchanged as a client assertion.
        case federatedTokenFile(String)
    }

    struct DataCollector: Sendable, Equatable {
        var workspaceID: String
        /// The workspace key, base64-decoded: the HMAC key.
        var key: [UInt8]
        var logType: String
    }

    var endpoint: HTTPEndpoint
    var api: API
    var http: HTTPExporterSettings
    var secrets: [String] = []

    /// The Logs Ingestion API takes at most 1 MB per call
    /// (https://learn.microsoft.com/azure/azure-monitor/fundamentals/service-limits#logs-ingestion-api),
    /// counted here before compression, which is never more than after.
    static let logsIngestionMaxBytes = 1_000_000
    /// The Data Collector API takes at most 30 MB per post.
    static let dataCollectorMaxBytes = 30_000_000

    init?(_ config: ConfigMap, environment: [String: String] = ProcessInfo.processInfo.environment) {
        let before = config.diagnostics.all.count
        var http = HTTPExporterSettings(config, auth: .refused(instead: "the sentinel exporter authenticates with Entra ID (tenant_id, client_id, client_secret or federated_token_file) or a workspace shared_key"))
        for key in ["connection_string", "instrumentation_key"] where config.has(key) {
            config.accept(key)
            config.report(key, "is an Application Insights setting (the Collector's azuremonitor exporter); Sentinel's tables take logs through the Logs Ingestion API: set endpoint, dcr_immutable_id and stream_name (docs/sentinel.md)")
        }
        let legacy = config.has("workspace_id") || config.has("shared_key") || config.has("log_type")
        if !legacy, !config.has("endpoint"), config.has("connection_string") || config.has("instrumentation_key") {
            // An Application Insights section: the error above says what to write
            // instead; a "missing" for every Logs Ingestion key would bury it.
            endpoint = HTTPEndpoint("https://invalid.azure.com")!
            api = .dataCollector(DataCollector(workspaceID: "", key: [], logType: ""))
            self.http = http
            config.finish()
            return nil
        }
        let endpointText = config.string("endpoint")
        var endpoint = HTTPEndpoint("https://invalid.azure.com")!
        if let endpointText {
            if let parsed = HTTPEndpoint(endpointText) { endpoint = parsed } else {
                config.report("endpoint", "'\(endpointText)' is not an https:// URL, like https://my-dce-a1b2.westeurope-1.ingest.monitor.azure.com")
            }
        }
        if legacy {
            for key in ["dcr_immutable_id", "stream_name", "tenant_id", "client_id", "client_secret", "federated_token_file", "authority_host"] where config.has(key) {
                config.accept(key)
                config.report(key, "belongs to the Logs Ingestion API, and workspace_id/shared_key/log_type to the Data Collector API: set one or the other")
            }
            let workspace = config.string("workspace_id") ?? ""
            let sharedKey = config.string("shared_key") ?? ""
            let logType = config.string("log_type") ?? ""
            if workspace.isEmpty { config.report("workspace_id", "missing: the Log Analytics workspace ID (Workspace → Agents)") }
            var key: [UInt8] = []
            if sharedKey.isEmpty {
                config.report("shared_key", "missing: the workspace's primary or secondary key (Workspace → Agents)")
            } else if let data = Data(base64Encoded: sharedKey), !data.isEmpty {
                key = Array(data)
            } else {
                config.report("shared_key", "is not base64: copy the workspace's primary key as Azure shows it")
            }
            if logType.isEmpty || logType.count > 100 || !logType.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) {
                config.report("log_type", "must be up to 100 letters, digits and underscores (the table is <log_type>_CL), like AIGatewayEvents")
            }
            if endpointText == nil, let url = HTTPEndpoint("https://\(workspace).ods.opinsights.azure.com") { endpoint = url }
            api = .dataCollector(DataCollector(workspaceID: workspace, key: key, logType: logType))
            secrets.append(sharedKey)
            // The Data Collector API takes no compressed bodies.
            if config.has("compression"), http.gzip {
                config.report("compression", "the Data Collector API takes no compressed bodies; remove compression or set it to none")
            }
            http.shared.compression = "none"
        } else {
            if endpointText == nil {
                config.report("endpoint", "missing: the data collection endpoint's logs ingestion URL, like https://my-dce-a1b2.westeurope-1.ingest.monitor.azure.com")
            }
            let dcr = config.string("dcr_immutable_id") ?? ""
            if !dcr.hasPrefix("dcr-") { config.report("dcr_immutable_id", "missing or not a DCR immutable id: it looks like dcr-0123456789abcdef0123456789abcdef (the rule's JSON view, immutableId)") }
            let stream = config.string("stream_name") ?? ""
            if stream.isEmpty { config.report("stream_name", "missing: the DCR's input stream, like Custom-AIGatewayEvents_CL") }
            let tenant = config.string("tenant_id") ?? environment["AZURE_TENANT_ID"] ?? ""
            let client = config.string("client_id") ?? environment["AZURE_CLIENT_ID"] ?? ""
            if tenant.isEmpty { config.report("tenant_id", "missing: the Entra ID tenant (directory) id, or AZURE_TENANT_ID") }
            if client.isEmpty { config.report("client_id", "missing: the app registration's or managed identity's client id, or AZURE_CLIENT_ID") }
            let secret = config.string("client_secret") ?? ""
            let tokenFile = config.string("federated_token_file") ?? (secret.isEmpty ? environment["AZURE_FEDERATED_TOKEN_FILE"] : nil) ?? ""
            var credential = EntraCredential.clientSecret(secret)
            if !secret.isEmpty, !tokenFile.isEmpty {
                config.report("client_secret", "set either client_secret or federated_token_file, not both")
            } else if !tokenFile.isEmpty {
                credential = .federatedTokenFile(tokenFile)
                if !FileManager.default.isReadableFile(atPath: tokenFile) {
                    config.report("federated_token_file", "cannot read \(tokenFile); on AKS it is the projected service account token (azure.workload.identity/use: \"true\" on the pod)")
                }
            } else if secret.isEmpty {
                config.report("client_secret", "missing: set client_secret, or federated_token_file for workload identity")
            }
            let authorityText = config.string("authority_host") ?? environment["AZURE_AUTHORITY_HOST"] ?? "https://login.microsoftonline.com"
            let authority = HTTPEndpoint(authorityText) ?? HTTPEndpoint("https://login.microsoftonline.com")!
            if HTTPEndpoint(authorityText) == nil { config.report("authority_host", "'\(authorityText)' is not an https:// URL, like https://login.microsoftonline.com") }
            var ingestion = LogsIngestion(dcrImmutableID: dcr, streamName: stream, tenantID: tenant, clientID: client, credential: credential, authority: authority)
            if let v = config.string("api_version"), !v.isEmpty { ingestion.apiVersion = v }
            api = .logsIngestion(ingestion)
            if !secret.isEmpty { secrets.append(secret) }
        }
        self.endpoint = endpoint
        secrets += http.secrets
        self.http = http
        config.finish()
        if config.diagnostics.all.count > before { return nil }
    }

    /// Where rows are posted.
    var target: String {
        switch api {
        case .logsIngestion(let ingestion):
            let stream = ingestion.streamName.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? ingestion.streamName
            return "\(endpoint.path)/dataCollectionRules/\(ingestion.dcrImmutableID)/streams/\(stream)?api-version=\(ingestion.apiVersion)"
        case .dataCollector:
            return "\(endpoint.path)/api/logs?api-version=2016-04-01"
        }
    }
}

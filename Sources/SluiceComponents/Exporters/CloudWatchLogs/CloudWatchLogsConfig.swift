import Foundation
import SluiceCore
import SluiceNet

/// `exporters.awscloudwatchlogs`, with the OpenTelemetry Collector's option names
/// (exporter/awscloudwatchlogsexporter) so a Collector section works unchanged
/// (docs/cloudwatch.md).
///
/// Where Sluice differs, on purpose:
/// - Credentials may also be set on the exporter (`access_key_id`,
///   `secret_access_key`, `session_token`; best through `${file:…}`); otherwise the
///   environment, a web identity (IRSA) or container credentials (Pod Identity),
///   as AWS's SDKs look for them, then `role_arn` assumed with them.
/// - Names take any resource attribute as a placeholder (`{k8s.pod.name}`), beside
///   the Collector's `{ClusterName}`, `{TaskId}`, `{NodeName}`,
///   `{ContainerInstanceId}` and `{TaskDefinitionFamily}`.
/// - `max_retries` has no effect: calls are retried until
///   `retry_on_failure.max_elapsed_time`, then the events are dead-lettered.
struct CloudWatchLogsConfig: Sendable {
    var logGroup: NameTemplate
    var logStream: NameTemplate
    var region: String
    /// Neither `region` nor AWS_REGION / AWS_DEFAULT_REGION was set.
    var regionMissing = false
    var endpoint: HTTPEndpoint
    /// `endpoint` or an AWS_ENDPOINT_URL variable named it (else it is the region's).
    var endpointGiven = false
    /// Days; 0 keeps events forever (no retention policy is set).
    var retentionDays = 0
    var tags: [(String, String)] = []
    var rawLog = false
    var roleARN: String?
    var credentials: AWSCredentialSource?
    var stsEndpoint: HTTPEndpoint
    var http: HTTPExporterSettings
    var secrets: [String] = []

    /// CloudWatch Logs' retention choices (PutRetentionPolicy's `retentionInDays`).
    static let retentionChoices: Set<Int> = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]

    init?(_ config: ConfigMap, environment env: [String: String] = ProcessInfo.processInfo.environment) {
        let before = config.diagnostics.all.count
        var http = HTTPExporterSettings(config, defaultCompression: "none",
                                        auth: .refused(instead: "CloudWatch Logs requests are signed with AWS credentials (docs/cloudwatch.md lists where they are looked for)"))
        if http.gzip { config.report("compression", "CloudWatch Logs takes uncompressed JSON; remove compression or set it to none") }

        func template(_ key: String, kind: NameTemplate.Kind) -> NameTemplate {
            guard let text = config.string(key), !text.isEmpty else {
                config.report(key, "missing: set the \(kind == .group ? "log group" : "log stream") to write to, like \(kind == .group ? "/sluice/governance" : "\"{k8s.pod.name}\"")")
                return NameTemplate(parts: [.literal("undefined")], kind: kind)
            }
            switch NameTemplate.parse(text, kind: kind) {
            case .success(let template): return template
            case .failure(let problem):
                config.report(key, problem.message)
                return NameTemplate(parts: [.literal("undefined")], kind: kind)
            }
        }
        logGroup = template("log_group_name", kind: .group)
        logStream = template("log_stream_name", kind: .stream)

        let regionText = config.string("region").flatMap { $0.isEmpty ? nil : $0 }
            ?? env["AWS_REGION"].flatMap { $0.isEmpty ? nil : $0 } ?? env["AWS_DEFAULT_REGION"].flatMap { $0.isEmpty ? nil : $0 }
        // Like credentials, the region may come from the pod's environment, which
        // `sluice validate` does not have: without one the exporter says so at start
        // and sends nothing.
        regionMissing = regionText == nil
        region = regionText ?? "us-east-1"
        if region.contains(where: { !($0.isLetter || $0.isNumber || $0 == "-") }) {
            config.report("region", "'\(region)' is not an AWS region name, like us-east-1")
        }

        // The Collector takes a host name or a URL; AWS's SDKs also read the endpoint from the environment.
        let endpointText = config.string("endpoint").flatMap { $0.isEmpty ? nil : $0 }
            ?? env["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"].flatMap { $0.isEmpty ? nil : $0 } ?? env["AWS_ENDPOINT_URL"].flatMap { $0.isEmpty ? nil : $0 }
        endpointGiven = endpointText != nil
        let url = endpointText.map { $0.contains("://") ? $0 : "https://\($0)" } ?? "https://logs.\(region).amazonaws.com"
        if let parsed = HTTPEndpoint(url) {
            endpoint = parsed
        } else {
            config.report("endpoint", "'\(endpointText ?? url)' is not a host name or an http(s) URL, like logs.us-east-1.amazonaws.com")
            endpoint = HTTPEndpoint("https://logs.us-east-1.amazonaws.com")!
        }
        stsEndpoint = AWSSecurityTokenService.endpoint(region: region, environment: env) ?? HTTPEndpoint("https://sts.\(region).amazonaws.com")!

        if let days = config.int("log_retention", min: 0, max: 3653) {
            if days != 0, !Self.retentionChoices.contains(days) {
                config.report("log_retention", "\(days) is not a retention CloudWatch Logs offers; use 0 (never expire) or one of \(Self.retentionChoices.sorted().map(String.init).joined(separator: ", "))")
            }
            retentionDays = days
        }
        if let map = config.stringMap("tags") {
            if map.count > 50 { config.report("tags", "\(map.count) tags; a log group takes at most 50") }
            for (key, value) in map.sorted(by: { $0.key < $1.key }) {
                if key.isEmpty || key.utf8.count > 128 { config.report("tags", "tag key '\(key)' must be 1 to 128 characters") }
                if value.utf8.count > 256 { config.report("tags", "the value of tag '\(key)' is over 256 characters") }
                if key.hasPrefix("aws:") { config.report("tags", "tag key '\(key)': keys starting with aws: are reserved by AWS") }
                tags.append((key, value))
            }
        }
        rawLog = config.bool("raw_log") ?? false
        if let arn = config.string("role_arn"), !arn.isEmpty {
            if !arn.hasPrefix("arn:") || !arn.contains(":role/") { config.report("role_arn", "'\(arn)' is not a role ARN, like arn:aws:iam::123456789012:role/sluice") }
            roleARN = arn
        }

        // Sluice's own: keys on the exporter, first in the chain.
        let key = config.string("access_key_id") ?? "", secret = config.string("secret_access_key") ?? "", token = config.string("session_token") ?? ""
        var own: AWSCredentials?
        if !key.isEmpty || !secret.isEmpty {
            if key.isEmpty { config.report("access_key_id", "missing: secret_access_key is set without access_key_id") }
            if secret.isEmpty { config.report("secret_access_key", "missing: access_key_id is set without secret_access_key") }
            own = AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token.isEmpty ? nil : token)
        } else if !token.isEmpty {
            config.report("session_token", "set with neither access_key_id nor secret_access_key")
        }
        credentials = AWSCredentialSource.resolve(config: own, environment: env)
        // None found is not a mistake in the file: `sluice validate` runs where the
        // pod's identity (IRSA, Pod Identity) is not. The exporter says so at start and
        // refuses what it is given until there are credentials.
        switch credentials {
        case .config(let c)?, .environment(let c)?: secrets += c.secrets
        default: break
        }

        // The Collector's AWS session keys.
        if let seconds = config.int("request_timeout_seconds", min: 1, max: 3600) {
            http.shared.timeout = .seconds(seconds)
            http.client.requestTimeout = .seconds(seconds)
        }
        let skipVerify = config.bool("no_verify_ssl") ?? false
        let caFile = config.string("certificate_file_path").flatMap { $0.isEmpty ? nil : $0 }
        if skipVerify || caFile != nil {
            if config.has("tls") { config.report("tls", "set either tls or no_verify_ssl/certificate_file_path, not both") }
            var tls = TLSSettings()
            tls.insecureSkipVerify = skipVerify
            tls.caFile = caFile
            if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
                config.report("certificate_file_path", "cannot read '\(caFile)'; give a PEM file of CA certificates")
            }
            http.client.tls = TLSClientConfiguration(tls)
            if skipVerify { http.warnings.append("\(config.path).no_verify_ssl is true: CloudWatch Logs' certificate is not checked") }
        }
        if let proxy = config.string("proxy_address"), !proxy.isEmpty {
            do {
                http.client.proxy = try ProxySettings(url: proxy)
            } catch {
                config.report("proxy_address", error.description)
            }
        }
        if config.bool("emf_only") == true {
            config.report("emf_only", "Sluice's awscloudwatchlogs sends every log record; it has no EMF-only mode. Remove emf_only, or filter records with a filter processor")
        }
        config.keysWithoutEffect([("max_retries", "calls are retried until retry_on_failure.max_elapsed_time, then the events go to the dead-letter file"),
                           ("num_workers", "one PutLogEvents call is in flight per stream, in order"),
                           ("local_mode", "Sluice reads no EC2 instance metadata"),
                           ("imds_retries", "Sluice reads no EC2 instance metadata"),
                           ("resource_arn", "it only names the resource in X-Ray segments")])
        self.http = http
        config.finish()
        if config.diagnostics.all.count > before { return nil }
    }
}

/// A log group or stream name with placeholders filled from each record's
/// resource attributes.
struct NameTemplate: Sendable, Equatable {
    enum Part: Sendable, Equatable {
        case literal(String)
        /// The resource attributes tried in turn.
        case attribute([String])
    }
    enum Kind: Sendable { case group, stream }
    var parts: [Part]
    var kind: Kind
    /// As configured, for the log.
    var source = ""

    struct Problem: Error { var message: String }

    /// The Collector's named placeholders and the resource attributes they read.
    static let named: [String: [String]] = [
        "ClusterName": ["ClusterName", "aws.ecs.cluster.name", "k8s.cluster.name"],
        "TaskId": ["TaskId", "aws.ecs.task.id"],
        "NodeName": ["NodeName", "k8s.node.name"],
        "ContainerInstanceId": ["ContainerInstanceId", "aws.ecs.container.instance.id"],
        "TaskDefinitionFamily": ["TaskDefinitionFamily", "aws.ecs.task.family"],
    ]

    static func parse(_ text: String, kind: Kind) -> Result<NameTemplate, Problem> {
        var parts: [Part] = []
        var rest = text[...]
        while let open = rest.firstIndex(of: "{") {
            if open > rest.startIndex { parts.append(.literal(String(rest[..<open]))) }
            guard let close = rest[open...].firstIndex(of: "}") else {
                return .failure(Problem(message: "'\(text)': a '{' without its '}'; placeholders look like {k8s.pod.name}"))
            }
            let name = String(rest[rest.index(after: open)..<close])
            if name.isEmpty { return .failure(Problem(message: "'\(text)': an empty placeholder {}")) }
            parts.append(.attribute(named[name] ?? [name]))
            rest = rest[rest.index(after: close)...]
        }
        if !rest.isEmpty { parts.append(.literal(String(rest))) }
        let template = NameTemplate(parts: parts, kind: kind, source: text)
        for case .literal(let literal) in parts {
            if let bad = literal.first(where: { !template.allowed($0) }) {
                return .failure(Problem(message: "'\(text)': '\(bad)' is not allowed in a log \(kind == .group ? "group" : "stream") name (\(kind == .group ? "letters, digits and . - _ / #" : "anything but : and *"))"))
            }
        }
        let literalLength = parts.reduce(0) { if case .literal(let s) = $1 { return $0 + s.utf8.count } else { return $0 } }
        if literalLength > 512 { return .failure(Problem(message: "'\(text)' is over 512 characters")) }
        return .success(template)
    }

    var isConstant: Bool { !parts.contains { if case .attribute = $0 { true } else { false } } }

    func allowed(_ c: Character) -> Bool {
        switch kind {
        case .group: c.isASCII && (c.isLetter || c.isNumber || ".-_/#".contains(c))
        case .stream: c != ":" && c != "*"
        }
    }

    /// The name for records of this resource: a missing attribute is `undefined` (as
    /// in the Collector); characters the name may not hold become `_`; at most 512.
    func render(_ resource: AttributesView?) -> String {
        var name = ""
        for part in parts {
            switch part {
            case .literal(let text): name += text
            case .attribute(let keys):
                var value = "undefined"
                for key in keys {
                    if let found = resource?[key] {
                        let text = found.stringValue
                        if !text.isEmpty { value = text; break }
                    }
                }
                name += String(value.map { allowed($0) ? $0 : "_" })
            }
        }
        while name.utf8.count > 512 { name.removeLast() }
        return name
    }
}

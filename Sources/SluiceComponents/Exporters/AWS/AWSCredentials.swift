import Foundation
import NIOCore
import NIOHTTP1
import SluiceNet

/// An access key, its secret, and for temporary credentials the session token and
/// when they expire. Never logged: `description` shows the key id's last four
/// characters only.
struct AWSCredentials: Sendable, Equatable, CustomStringConvertible {
    var accessKeyID: String
    var secretAccessKey: String
    var sessionToken: String?
    /// Unix seconds; nil for long-term keys.
    var expiration: UInt64?

    var description: String { "access key …\(accessKeyID.suffix(4))" }
    /// The values that must never reach a log line, /status or a dead letter.
    var secrets: [String] { [secretAccessKey] + (sessionToken.map { [$0] } ?? []) }
}

/// Why credentials could not be had, and whether trying again can help.
struct AWSCredentialError: Error, Sendable, CustomStringConvertible {
    var message: String
    /// A refusal (a bad token, a role the identity may not assume), not an outage.
    var permanent: Bool
    var description: String { message }
}

/// Where the credentials come from, chosen once at start in the order AWS's SDKs
/// use (docs/cloudwatch.md): the exporter's own keys, the environment's keys, a web
/// identity (EKS IRSA), container credentials (EKS Pod Identity, ECS).
enum AWSCredentialSource: Sendable, Equatable {
    case config(AWSCredentials)
    case environment(AWSCredentials)
    /// `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE` → STS AssumeRoleWithWebIdentity.
    case webIdentity(roleARN: String, tokenFile: String, sessionName: String)
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` (or the ECS relative URI) with the
    /// token from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or `…_TOKEN`.
    case container(uri: String, tokenFile: String?, token: String?)

    /// What the log and /status say; never a secret.
    var name: String {
        switch self {
        case .config(let c): "the exporter's access_key_id (\(c))"
        case .environment(let c): "AWS_ACCESS_KEY_ID from the environment (\(c))"
        case .webIdentity(let role, let file, _): "web identity (AWS_ROLE_ARN \(role), token file \(file))"
        case .container(let uri, _, _): "container credentials (\(uri))"
        }
    }

    static let noneFound = "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE) or EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI), or set access_key_id/secret_access_key on the exporter (docs/cloudwatch.md)"

    /// The first source the configuration and environment provide; nil when none.
    static func resolve(config: AWSCredentials?, environment env: [String: String]) -> AWSCredentialSource? {
        if let config { return .config(config) }
        if let key = env["AWS_ACCESS_KEY_ID"], !key.isEmpty, let secret = env["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty {
            let token = env["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            return .environment(AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token))
        }
        if let role = env["AWS_ROLE_ARN"], !role.isEmpty, let file = env["AWS_WEB_IDENTITY_TOKEN_FILE"], !file.isEmpty {
            let session = env["AWS_ROLE_SESSION_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? "sluice-\(getpid())"
            return .webIdentity(roleARN: role, tokenFile: file, sessionName: session)
        }
        let tokenFile = env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        let token = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if let uri = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], !uri.isEmpty {
            return .container(uri: uri, tokenFile: tokenFile, token: token)
        }
        if let relative = env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"], !relative.isEmpty {
            return .container(uri: "http://169.254.170.2" + relative, tokenFile: tokenFile, token: token)
        }
        return nil
    }
}

/// Gives the credentials to sign with: the source's, or with `role_arn` those of
/// the role assumed with them. Temporary credentials are kept until five minutes
/// before they expire, then fetched again (a web identity's token file is read
/// again each time: the kubelet rotates it). One fetch at a time: callers that
/// arrive during a fetch wait for it.
actor AWSCredentialsProvider {
    /// nil when none was found: every call is refused with `AWSCredentialSource.noneFound`.
    let source: AWSCredentialSource?
    let roleARN: String?
    let sts: AWSSecurityTokenService
    private let transport: @Sendable (HTTPEndpoint) -> any HTTPTransport
    private let now: @Sendable () -> UInt64
    private var cached: AWSCredentials?
    private var fetching: Task<AWSCredentials, any Error>?
    private var clients: [HTTPEndpoint: any HTTPTransport] = [:]
    /// Fetch again this long before the credentials expire.
    static let refreshMargin: UInt64 = 300

    init(source: AWSCredentialSource?, roleARN: String?, sts: AWSSecurityTokenService,
         transport: @escaping @Sendable (HTTPEndpoint) -> any HTTPTransport,
         now: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) }) {
        self.source = source
        self.roleARN = roleARN
        self.sts = sts
        self.transport = transport
        self.now = now
    }

    /// What the log says about where credentials come from.
    nonisolated var sourceDescription: String {
        guard let source else { return "nowhere (none found)" }
        return roleARN.map { "\(source.name), then role_arn \($0)" } ?? source.name
    }

    func credentials() async throws(AWSCredentialError) -> AWSCredentials {
        if let cached, cached.expiration.map({ $0 > now() + Self.refreshMargin }) ?? true { return cached }
        if let fetching { return try await Self.wait(fetching) }
        let task = Task { try await self.fetch() }
        fetching = task
        defer { fetching = nil }
        let fresh = try await Self.wait(task)
        cached = fresh
        return fresh
    }

    /// Forgets the credentials (the destination said they expired), so the next
    /// call fetches new ones.
    func invalidate() { cached = nil }

    /// What is fetched (all of it, never a secret in a message).
    private func fetch() async throws(AWSCredentialError) -> AWSCredentials {
        var base: AWSCredentials
        guard let source else { throw AWSCredentialError(message: AWSCredentialSource.noneFound, permanent: true) }
        switch source {
        case .config(let c), .environment(let c):
            base = c
        case .webIdentity(let role, let file, let session):
            let token: String
            do {
                token = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw AWSCredentialError(message: "cannot read the web identity token file \(file) (AWS_WEB_IDENTITY_TOKEN_FILE): \(error.localizedDescription)", permanent: false)
            }
            base = try await sts.assumeRoleWithWebIdentity(roleARN: role, sessionName: session, token: token, via: client(sts.endpoint), now: now())
        case .container(let uri, let file, let fixed):
            var token = fixed
            if let file {
                do {
                    token = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                } catch {
                    throw AWSCredentialError(message: "cannot read the container authorization token file \(file) (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE): \(error.localizedDescription)", permanent: false)
                }
            }
            base = try await containerCredentials(uri, token: token)
        }
        guard let roleARN else { return base }
        return try await sts.assumeRole(roleARN: roleARN, sessionName: "sluice-\(getpid())", with: base, via: client(sts.endpoint), now: now())
    }

    private func client(_ endpoint: HTTPEndpoint) -> any HTTPTransport {
        if let client = clients[endpoint] { return client }
        let client = transport(endpoint)
        clients[endpoint] = client
        return client
    }

    /// GET the container credentials endpoint with its authorization token
    /// (https://docs.aws.amazon.com/sdkref/latest/guide/feature-container-credentials.html).
    private func containerCredentials(_ uri: String, token: String?) async throws(AWSCredentialError) -> AWSCredentials {
        guard let endpoint = HTTPEndpoint(uri) else {
            throw AWSCredentialError(message: "AWS_CONTAINER_CREDENTIALS_FULL_URI '\(uri)' is not an http(s) URL", permanent: true)
        }
        var headers = HTTPHeaders([("Accept", "application/json")])
        if let token { headers.add(name: "Authorization", value: token) }
        let response: HTTPClientResponse
        do {
            response = try await client(endpoint).send(HTTPClientRequest(method: .GET, target: endpoint.path.isEmpty ? "/" : endpoint.path, headers: headers))
        } catch {
            throw AWSCredentialError(message: "cannot reach the container credentials endpoint \(uri): \(error)", permanent: false)
        }
        let code = Int(response.status.code)
        guard code == 200 else {
            let refused = code == 400 || code == 401 || code == 403
            throw AWSCredentialError(message: "the container credentials endpoint \(uri) answered HTTP \(code)\(refused ? " (check AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)" : "")", permanent: refused)
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))) as? [String: Any],
              let key = object["AccessKeyId"] as? String, let secret = object["SecretAccessKey"] as? String else {
            throw AWSCredentialError(message: "the container credentials endpoint \(uri) answered without AccessKeyId and SecretAccessKey", permanent: false)
        }
        return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: object["Token"] as? String,
                              expiration: (object["Expiration"] as? String).flatMap(AWSSecurityTokenService.parseTime))
    }

    private static func wait(_ task: Task<AWSCredentials, any Error>) async throws(AWSCredentialError) -> AWSCredentials {
        do {
            return try await task.value
        } catch let error as AWSCredentialError {
            throw error
        } catch {
            throw AWSCredentialError(message: "\(error)", permanent: false)
        }
    }

    func close() async {
        for client in clients.values { await client.close() }
        clients = [:]
    }
}

/// The two STS calls Sluice makes, over the Query API
/// (https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html,
/// https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html).
struct AWSSecurityTokenService: Sendable {
    var endpoint: HTTPEndpoint
    var region: String

    /// The regional endpoint, or `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL` when set.
    static func endpoint(region: String, environment env: [String: String]) -> HTTPEndpoint? {
        for key in ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"] {
            if let text = env[key], !text.isEmpty { return HTTPEndpoint(text) }
        }
        return HTTPEndpoint("https://sts.\(region).amazonaws.com")
    }

    /// Unsigned: the web identity token is the proof.
    func assumeRoleWithWebIdentity(roleARN: String, sessionName: String, token: String, via client: any HTTPTransport, now: UInt64) async throws(AWSCredentialError) -> AWSCredentials {
        let body = AWSSigner.formBody([("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"), ("RoleArn", roleARN),
                                       ("RoleSessionName", sessionName), ("WebIdentityToken", token)])
        return try await call(body, headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
                              what: "AssumeRoleWithWebIdentity for \(roleARN)", client: client)
    }

    /// Signed with the credentials it starts from.
    func assumeRole(roleARN: String, sessionName: String, with base: AWSCredentials, via client: any HTTPTransport, now: UInt64) async throws(AWSCredentialError) -> AWSCredentials {
        let body = AWSSigner.formBody([("Action", "AssumeRole"), ("Version", "2011-06-15"), ("RoleArn", roleARN), ("RoleSessionName", sessionName)])
        var headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"), ("Host", endpoint.authority)]
        headers += AWSSigner(region: region, service: "sts").sign(method: "POST", path: "/", headers: headers, body: body, credentials: base, epochSeconds: now)
        return try await call(body, headers: headers, what: "AssumeRole for role_arn \(roleARN)", client: client)
    }

    private func call(_ body: [UInt8], headers: [(String, String)], what: String, client: any HTTPTransport) async throws(AWSCredentialError) -> AWSCredentials {
        let response: HTTPClientResponse
        do {
            response = try await client.send(HTTPClientRequest(target: endpoint.path.isEmpty ? "/" : endpoint.path, headers: HTTPHeaders(headers), body: ByteBuffer(bytes: body)))
        } catch {
            throw AWSCredentialError(message: "STS \(what): cannot reach \(endpoint): \(error)", permanent: false)
        }
        let text = String(buffer: response.body)
        let code = Int(response.status.code)
        guard code == 200 else {
            let error = Self.element("Code", in: text) ?? "HTTP \(code)"
            let message = Self.element("Message", in: text).map { ": \($0)" } ?? ""
            // Throttling and server errors pass; a refusal (a bad token, a role that
            // does not trust this identity) needs someone to act.
            let passing = code >= 500 || code == 429 || error == "Throttling" || error == "IDPCommunicationError"
            throw AWSCredentialError(message: "STS \(what) refused: \(error)\(message)", permanent: !passing)
        }
        guard let key = Self.element("AccessKeyId", in: text), let secret = Self.element("SecretAccessKey", in: text) else {
            throw AWSCredentialError(message: "STS \(what): the answer holds no credentials", permanent: false)
        }
        return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: Self.element("SessionToken", in: text),
                              expiration: Self.element("Expiration", in: text).flatMap(Self.parseTime))
    }

    /// The text of the first `<name>…</name>` in an XML answer, entities decoded.
    static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex) else { return nil }
        return String(xml[open.upperBound..<close.lowerBound])
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }

    /// `2026-12-05T19:00:00Z`, with or without fractional seconds → Unix seconds.
    @Sendable static func parseTime(_ text: String) -> UInt64? {
        let plain = ISO8601DateFormatter()
        if let date = plain.date(from: text) ?? ISO8601DateFormatter.withFractionalSeconds.date(from: text) {
            return UInt64(max(0, date.timeIntervalSince1970))
        }
        return nil
    }
}

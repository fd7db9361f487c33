import Foundation
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceNet

/// Access tokens for the Logs Ingestion API from Entra ID's token endpoint
/// (OAuth 2.0 client credentials,
/// https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow):
/// `POST <authority>/<tenant>/oauth2/v2.0/token` with `grant_type=client_credentials`,
/// the `client_id`, the `scope`, and either the `client_secret` or, for workload
/// identity, the federated token file's content as a `client_assertion` of type
/// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` (the file is read on
/// every fetch: Kubernetes replaces it before it expires).
///
/// A token is cached and fetched again five minutes before it expires (at half its
/// life when it lives less than ten minutes), so a request never goes out with a
/// token about to lapse; one fetch at a time however many pipelines ask.
actor EntraToken {
    struct Token: Sendable {
        var value: String
        var expires: Date
        var refresh: Date
    }

    /// Why there is no token, and whether waiting can help.
    enum Failure: Error, Equatable {
        /// The credential was refused: someone must fix it (`failed`).
        case refused(String)
        /// The endpoint is unreachable or busy, or the federated token expired
        /// and Kubernetes has yet to replace it: try again later (`degraded`).
        case retry(String)
    }

    let settings: SentinelConfig.LogsIngestion
    let transport: any HTTPTransport
    let now: @Sendable () -> Date
    private var cached: Token?
    private var fetching: Task<Result<Token, Failure>, Never>?
    /// The client secret, masked in whatever the token endpoint answers.
    private var clientSecretMask: SecretMask {
        if case .clientSecret(let secret) = settings.credential { return SecretMask([secret]) }
        return SecretMask([])
    }

    init(settings: SentinelConfig.LogsIngestion, transport: any HTTPTransport, now: @escaping @Sendable () -> Date = { Date() }) {
        self.settings = settings
        self.transport = transport
        self.now = now
    }

    /// A token that is good for a while yet.
    func token() async -> Result<String, Failure> {
        if let cached, now() < cached.refresh { return .success(cached.value) }
        let task = fetching ?? Task { await self.fetch() }
        fetching = task
        let result = await task.value
        // Callers that waited on the same fetch share its result; a fetch started
        // since then is left alone.
        if fetching == task { fetching = nil }
        switch result {
        case .success(let token):
            cached = token
            return .success(token.value)
        case .failure(let failure):
            // A cached token that has not expired yet still serves while the new one
            // cannot be had.
            if let cached, now() < cached.expires { return .success(cached.value) }
            return .failure(failure)
        }
    }

    /// The API refused `value` (expired or revoked early): the next call fetches anew.
    func invalidate(_ value: String) {
        if cached?.value == value { cached = nil }
    }

    var place: String { "Entra ID \(settings.authority)/\(settings.tenantID)/oauth2/v2.0/token" }

    private func fetch() async -> Result<Token, Failure> {
        var form: [(String, String)] = [("grant_type", "client_credentials"), ("client_id", settings.clientID), ("scope", settings.scope)]
        switch settings.credential {
        case .clientSecret(let secret):
            form.append(("client_secret", secret))
        case .federatedTokenFile(let path):
            let assertion: String
            do {
                assertion = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                return .failure(.retry("cannot read federated_token_file \(path): \(error.localizedDescription); on AKS the pod needs the label azure.workload.identity/use: \"true\""))
            }
            if let expiry = Self.jwtExpiry(assertion), expiry <= now() {
                return .failure(.retry("the federated token in \(path) expired at \(ISO8601DateFormatter().string(from: expiry)) (\(Int(now().timeIntervalSince(expiry))) s ago), so Entra ID would refuse it; Kubernetes replaces a projected service account token before it expires: check the pod's token volume (expirationSeconds) and the kubelet"))
            }
            form += [("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), ("client_assertion", assertion)]
        }
        let body = form.map { "\(Self.formEncode($0.0))=\(Self.formEncode($0.1))" }.joined(separator: "&")
        let headers = HTTPHeaders([("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")])
        let target = "\(settings.authority.path)/\(settings.tenantID)/oauth2/v2.0/token"
        let started = now()
        let response: HTTPClientResponse
        do {
            response = try await transport.send(HTTPClientRequest(target: target, headers: headers, body: ByteBuffer(string: body)))
        } catch {
            return .failure(.retry("cannot reach \(place): \(error)"))
        }
        let object = (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))) as? [String: Any] ?? [:]
        let code = Int(response.status.code)
        guard code == 200 else {
            let error = object["error"] as? String ?? ""
            let description = (object["error_description"] as? String ?? ResponseClass.excerpt(response, masking: clientSecretMask)).split(separator: "\r\n").first.map(String.init) ?? ""
            let reason = "HTTP \(code) from \(place): \(error.isEmpty ? "" : "\(error): ")\(description)"
            if code == 429 || code >= 500 { return .failure(.retry(reason)) }
            // AADSTS700024: the client assertion is not within its valid time range
            // (an expired federated token Kubernetes has yet to replace).
            if description.contains("AADSTS700024") { return .failure(.retry(reason)) }
            let check = switch settings.credential {
            case .clientSecret: "check tenant_id, client_id and client_secret (not shown here); an expired secret needs a new one in the app registration"
            case .federatedTokenFile: "check tenant_id, client_id and the federated credential on the identity (issuer and subject must match the service account)"
            }
            return .failure(.refused("Entra ID refused the credentials: \(reason); \(check)"))
        }
        guard let value = object["access_token"] as? String, !value.isEmpty else {
            return .failure(.retry("\(place) answered 200 without an access_token"))
        }
        let lifetime = (object["expires_in"] as? Double) ?? (object["expires_in"] as? Int).map(Double.init)
            ?? (object["expires_in"] as? String).flatMap(Double.init) ?? 3600
        let expires = started.addingTimeInterval(lifetime)
        let refresh = started.addingTimeInterval(max(lifetime / 2, lifetime - 300))
        return .success(Token(value: value, expires: expires, refresh: min(refresh, expires)))
    }

    /// `exp` of a JWT (its payload's expiry, Unix seconds), when it has one.
    static func jwtExpiry(_ jwt: String) -> Date? {
        let parts = jwt.split(separator: ".")
        guard parts.count == 3 else { return nil }
        var payload = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while payload.count % 4 != 0 { payload += "=" }
        guard let data = Data(base64Encoded: payload),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let exp = (object["exp"] as? Double) ?? (object["exp"] as? Int).map(Double.init) else { return nil }
        return Date(timeIntervalSince1970: exp)
    }

    /// application/x-www-form-urlencoded: unreserved characters as they are, the rest %XX.
    static func formEncode(_ text: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

// `basicauth`: the Collector's HTTP Basic authenticator (extension/basicauthextension),
// client side: an exporter whose `auth.authenticator` names it sends
// `Authorization: Basic base64(username:password)` (RFC 7617 §2). The server side
// (`htpasswd`) is refused by name: Sluice's receivers authenticate with bearertokenauth.
import Foundation
import SluiceCore
import Synchronization

public struct BasicAuthExtensionFactory: ExtensionFactory {
    public let type = "basicauth"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Extension)? {
        let before = config.diagnostics.all.count
        if config.has("htpasswd") {
            config.accept("htpasswd")
            config.report("htpasswd", "checking clients with basic auth is not supported by Sluice's receivers; use bearertokenauth on the receiver, and basicauth with client_auth on exporters")
        }
        var username: Credential = .value(""), password: Credential = .value("")
        if let client = config.map("client_auth") {
            username = Self.credential(client, "username")
            password = Self.credential(client, "password")
            if client.has("aws_secrets_manager") {
                client.accept("aws_secrets_manager")
                client.report("aws_secrets_manager", "not supported by Sluice; mount the secret as files (a Kubernetes secret, the Secrets Store CSI driver) and set username_file and password_file")
            }
            if case .value(let name) = username {
                if name.isEmpty, !client.has("aws_secrets_manager") { client.report("username", "missing: set the user name the destination expects (username, or username_file)") }
                // RFC 7617 §2: the user-id cannot contain a colon.
                if name.contains(":") { client.report("username", "a user name cannot contain ':' in HTTP Basic authentication") }
            }
            for (key, credential) in [("username", username), ("password", password)] {
                if case .value(let text) = credential, text.contains(where: \.isNewline) {
                    client.report(key, "the credential contains a line break; check how the secret is mounted")
                }
            }
            client.finish()
        } else if !config.has("htpasswd") {
            config.report("client_auth", "missing: set client_auth.username and client_auth.password (from a secret: ${env:ES_PASSWORD}, or username_file/password_file)")
        }
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        return BasicAuthExtension(id: id, username: username, password: password)
    }

    /// `key` or `key_file` (the contrib extension's file variant: a mounted secret).
    private static func credential(_ client: ConfigMap, _ key: String) -> Credential {
        let file = client.string("\(key)_file").flatMap { $0.isEmpty ? nil : $0 }
        if let file {
            if client.has(key) { client.report("\(key)_file", "set either \(key) or \(key)_file, not both") }
            if !FileManager.default.isReadableFile(atPath: file) {
                if client.diagnostics.filesMayBeAbsent {
                    client.warn("\(key)_file", "'\(file)' cannot be read here; it must be readable where Sluice runs")
                } else {
                    client.report("\(key)_file", "cannot read '\(file)'; check the path and that the secret is mounted")
                }
            }
            return .file(file)
        }
        return .value(client.string(key) ?? "")
    }
}

/// A user name or password as configured, or the file that holds it (read again
/// when it changes, so a rotated secret is used without a restart).
enum Credential: Sendable {
    case value(String)
    case file(String)
}

final class BasicAuthExtension: ClientAuthenticator {
    let id: ComponentID
    private let username: Credential
    private let password: Credential
    /// The header as last built, and the files' modification times it was built from.
    private let built = Mutex<(header: String, password: String, stamps: [Date?])>(("", "", []))

    init(id: ComponentID, username: Credential, password: Credential) {
        self.id = id
        self.username = username
        self.password = password
        _ = current()
    }

    func start(health: HealthState) async throws {}
    func shutdown() async {}

    func credentialHeader() -> (name: String, value: String)? { ("Authorization", current().header) }

    /// The header's value and the password: either may come back in an error page.
    func secretValues() -> [String] {
        let now = current()
        return [now.header, String(now.header.dropFirst("Basic ".count)), now.password]
    }

    private func current() -> (header: String, password: String) {
        let stamps = [username, password].map { credential -> Date? in
            guard case .file(let path) = credential else { return nil }
            return (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
        }
        return built.withLock { cache in
            if !cache.header.isEmpty, cache.stamps == stamps { return (cache.header, cache.password) }
            let user = Self.read(username), secret = Self.read(password)
            cache = ("Basic " + Data("\(user):\(secret)".utf8).base64EncodedString(), secret, stamps)
            return (cache.header, cache.password)
        }
    }

    /// A file's content without its trailing newline (how secrets are mounted).
    private static func read(_ credential: Credential) -> String {
        switch credential {
        case .value(let text): return text
        case .file(let path):
            var text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            return text
        }
    }
}

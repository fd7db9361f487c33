// `basicauth`: the Collector's HTTP Basic authenticator (extension/basicauthextension),
// client side: an exporter whose `auth.authenticator` names it sends
// `Authorization: Basic base64(username:password)` (RFC 7617 §2). The server side
// (`htpasswd`) is refused by name: Sluice's receivers authenticate with bearertokenauth.
import Foundation
import SluiceCore

public struct BasicAuthExtensionFactory: ExtensionFactory {
    public let type = "basicauth"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Extension)? {
        let before = config.diagnostics.all.count
        if config.has("htpasswd") {
            config.accept("htpasswd")
            config.report("htpasswd", "checking clients with basic auth is not supported by Sluice's receivers; use bearertokenauth on the receiver, and basicauth with client_auth on exporters")
        }
        var username = "", password = ""
        if let client = config.map("client_auth") {
            username = client.string("username") ?? ""
            password = client.string("password") ?? ""
            if username.isEmpty { client.report("username", "missing: set the user name the destination expects") }
            // RFC 7617 §2: the user-id cannot contain a colon.
            if username.contains(":") { client.report("username", "a user name cannot contain ':' in HTTP Basic authentication") }
            if username.contains(where: \.isNewline) || password.contains(where: \.isNewline) {
                client.report("password", "the credential contains a line break; check how the secret is mounted")
            }
            client.finish()
        } else if !config.has("htpasswd") {
            config.report("client_auth", "missing: set client_auth.username and client_auth.password (from a secret: ${env:ES_PASSWORD})")
        }
        config.finish()
        guard config.diagnostics.all.count == before else { return nil }
        return BasicAuthExtension(id: id, username: username, password: password)
    }
}

final class BasicAuthExtension: ClientAuthenticator {
    let id: ComponentID
    private let header: String
    private let password: String

    init(id: ComponentID, username: String, password: String) {
        self.id = id
        self.password = password
        header = "Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
    }

    func start(health: HealthState) async throws {}
    func shutdown() async {}

    func credentialHeader() -> (name: String, value: String)? { ("Authorization", header) }

    /// The header's value and the password: either may come back in an error page.
    func secretValues() -> [String] { [header, String(header.dropFirst("Basic ".count)), password] }
}

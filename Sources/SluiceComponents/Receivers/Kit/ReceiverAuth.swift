import SluiceCore

/// A protocol's `auth: {authenticator: <extension id>}` (config/configauth), resolved
/// to the started extension it names.
struct ReceiverAuth: Sendable {
    let id: ComponentID
    let authenticator: any ServerAuthenticator

    init(id: ComponentID, authenticator: any ServerAuthenticator) {
        self.id = id
        self.authenticator = authenticator
    }

    /// `nil` when the section has no `auth`, or when it names something unusable
    /// (reported at `….auth.authenticator`).
    init?(_ section: ConfigMap, extensions: [ComponentID: any Extension]) {
        guard let auth = section.map("auth") else { return nil }
        defer { auth.finish() }
        guard let name = auth.string("authenticator") else {
            auth.report("authenticator", "missing: name the authenticator extension, like bearertokenauth")
            return nil
        }
        guard let id = ComponentID(name) else {
            auth.report("authenticator", "'\(name)' is not a component id; write type or type/name, like bearertokenauth")
            return nil
        }
        guard let found = extensions[id] else {
            if auth.diagnostics.reported(under: "extensions.\(id)") { return nil }
            auth.report("authenticator", "\(id) is not a started extension; define it under extensions and list it in service.extensions")
            return nil
        }
        guard let authenticator = found as? any ServerAuthenticator else {
            auth.report("authenticator", "\(id) does not authenticate requests; name an authenticator such as bearertokenauth")
            return nil
        }
        self.init(id: id, authenticator: authenticator)
    }
}

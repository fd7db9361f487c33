import Logging
import SluiceNet

/// The start-up warning for a listener open to every interface with neither TLS
/// nor authentication. The Collector made `localhost` its default in v0.104 for
/// this reason (component.UseLocalHostAsDefaultHost); a configuration may still
/// bind `0.0.0.0` on purpose (a probe or a scrape from outside the pod), so this
/// warns instead of refusing.
enum ListenerExposure {
    static func warnIfOpen(_ endpoint: HostPort, listener: String, tls: Bool, auth: Bool, logger: Logger) {
        guard endpoint.isWildcard, !(tls && auth) else { return }
        let missing = [tls ? nil : "TLS", auth ? nil : "authentication"].compactMap { $0 }.joined(separator: " or ")
        logger.warning("\(listener) listens on every interface (\(endpoint)) without \(missing): anyone who can reach the pod can connect; bind localhost:\(endpoint.port) (or the one address that needs it), or add \(missing)",
                       metadata: ["listener": "\(listener)", "endpoint": "\(endpoint)"])
    }
}

import SluiceCore
import SluiceNet
import NIOCore

/// A protocol's `tls` (configtls.ServerConfig), loaded when the configuration is
/// read so a certificate that does not load, or a key that does not match it, is
/// reported at `….tls` by `sluice validate` too.
struct ReceiverTLS: Sendable {
    let context: TLSServerContext

    /// `nil` without a `tls` section, or when it cannot be used (reported).
    init?(_ section: ConfigMap, alpn: [String], transport: String, context: ComponentContext) {
        guard let tls = section.map("tls") else { return nil }
        let before = tls.diagnostics.all.count
        var settings = TLSServerSettings(tls)
        guard tls.diagnostics.all.count == before else { return nil }
        // `sluice validate` away from the pod's secrets: the files are checked at start.
        if tls.diagnostics.filesMayBeAbsent, tls.diagnostics.warned(under: tls.path) { return nil }
        settings.alpnProtocols = alpn
        do {
            self.context = try TLSServerContext(settings: settings, logger: context.logger, metrics: context.metrics,
                                                metricLabels: [("receiver", Self.receiverName(section.path)), ("transport", transport)])
        } catch {
            section.report("tls", "\(error)")
            return nil
        }
    }

    var warnings: [String] { context.settings.warnings }

    /// `otlp/edge` from `receivers.otlp/edge.protocols.grpc`, as the other receiver
    /// metrics label it.
    private static func receiverName(_ path: String) -> String {
        let receiver = path.hasPrefix("receivers.") ? path.dropFirst("receivers.".count) : Substring(path)
        return String(receiver.prefix { $0 != "." })
    }
}

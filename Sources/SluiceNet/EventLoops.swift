// SluiceNet: the network layer. An HTTP/1.1 server for receivers and the telemetry
// endpoints, and the HTTP client exporters send with, both on SwiftNIO.
import CBlockCache
import NIOCore
import NIOPosix

/// The event loops every server and client of the process shares. A sidecar gets a
/// core or two: one loop per core, never more than two.
public enum SluiceEventLoops {
    public static let group: MultiThreadedEventLoopGroup = {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, min(2, System.coreCount)))
        // Gives the block cache's unused blocks back once load has gone: under load a
        // block is taken again within milliseconds.
        group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            sluice_block_trim(UInt32(blockCacheIdle.nanoseconds / 1_000_000))
        }
        return group
    }()

    /// How long a freed block waits in the block cache for reuse.
    static let blockCacheIdle = TimeAmount.seconds(2)
}

/// `host:port` as the Collector writes endpoints (`0.0.0.0:4318`, `localhost:4318`,
/// `[::1]:4318`, `:4318`).
public struct HostPort: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        var hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard let port = Int(portPart), (0...65535).contains(port) else { return nil }
        if hostPart.isEmpty { hostPart = "0.0.0.0" }
        self.init(host: String(hostPart), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Whether a listener here takes connections on every interface (`0.0.0.0`,
    /// `::`, or an empty host as in `:4318`), not only the pod's own.
    public var isWildcard: Bool { host == "0.0.0.0" || host == "::" || host == "0:0:0:0:0:0:0:0" }
}

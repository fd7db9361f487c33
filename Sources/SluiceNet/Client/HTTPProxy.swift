import Foundation
import NIOCore

public struct ProxyError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An HTTP proxy: where it listens and what to show it. `description` never
/// includes the credentials.
public struct ProxyServer: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// The `Proxy-Authorization` value (`Basic …`) when the URL carried user:password.
    public var authorization: String?

    public init(host: String, port: Int, authorization: String? = nil) {
        self.host = host
        self.port = port
        self.authorization = authorization
    }

    /// `http://[user:password@]host[:port]`, as in `proxy_url` or HTTPS_PROXY. A
    /// value without a scheme is read as http, as Go (and so the Collector) reads it.
    public init(url text: String) throws(ProxyError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let withScheme = trimmed.contains("://") ? trimmed : "http://\(trimmed)"
        guard let url = URLComponents(string: withScheme), let scheme = url.scheme?.lowercased() else {
            throw ProxyError("'\(Self.redacted(trimmed))' is not a URL; write http://host:port")
        }
        guard scheme == "http" else {
            throw ProxyError("'\(Self.redacted(trimmed))': only http:// proxies are supported (HTTPS traffic is still tunnelled end to end with CONNECT)")
        }
        guard var host = url.host, !host.isEmpty else { throw ProxyError("'\(Self.redacted(trimmed))' has no host") }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard url.path.isEmpty || url.path == "/", url.query == nil else {
            throw ProxyError("'\(Self.redacted(trimmed))': a proxy URL has no path or query")
        }
        self.host = host
        port = url.port ?? 80
        guard (1...65535).contains(port) else { throw ProxyError("'\(Self.redacted(trimmed))': port out of range") }
        authorization = URLCredentials(url)?.basic
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The URL with any password replaced, for messages.
    static func redacted(_ text: String) -> String { URLCredentials.redacted(text) }
}

/// Which proxy, if any, a client goes through: `proxy_url`, or the environment
/// (HTTPS_PROXY for https endpoints, HTTP_PROXY for http, NO_PROXY for exceptions),
/// read the way Go's net/http reads them so a Collector deployment behaves the same.
public struct ProxySettings: Sendable, Equatable {
    /// Used for https endpoints, through a CONNECT tunnel; TLS runs end to end inside it.
    public var httpsProxy: ProxyServer?
    /// Used for http endpoints, with absolute-form request targets.
    public var httpProxy: ProxyServer?
    public var noProxy: NoProxyList
    /// Never proxy `localhost` or a loopback address (Go's rule for the environment).
    public var bypassLoopback: Bool
    /// Set-but-unusable values per scheme: a send that would use one fails with
    /// this message instead of quietly going around the proxy.
    public var httpsProblem: String?
    public var httpProblem: String?

    public init(httpsProxy: ProxyServer? = nil, httpProxy: ProxyServer? = nil, noProxy: NoProxyList = NoProxyList(""), bypassLoopback: Bool = false) {
        self.httpsProxy = httpsProxy
        self.httpProxy = httpProxy
        self.noProxy = noProxy
        self.bypassLoopback = bypassLoopback
    }

    /// `proxy_url`: every request goes through it, whatever NO_PROXY says (as in the Collector).
    public init(url: String) throws(ProxyError) {
        let server = try ProxyServer(url: url)
        self.init(httpsProxy: server, httpProxy: server)
    }

    /// The proxy variables of `environment` (upper case first, then lower case);
    /// `nil` when none is set.
    public static func environment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> ProxySettings? {
        func value(_ name: String) -> (name: String, value: String)? {
            for key in [name, name.lowercased()] {
                if let v = environment[key]?.trimmingCharacters(in: .whitespaces), !v.isEmpty { return (key, v) }
            }
            return nil
        }
        let https = value("HTTPS_PROXY")
        let http = value("HTTP_PROXY")
        guard https != nil || http != nil else { return nil }
        var settings = ProxySettings(noProxy: NoProxyList(value("NO_PROXY")?.value ?? ""), bypassLoopback: true)
        if let https {
            do { settings.httpsProxy = try ProxyServer(url: https.value) } catch { settings.httpsProblem = "\(https.name): \(error)" }
        }
        if let http {
            do { settings.httpProxy = try ProxyServer(url: http.value) } catch { settings.httpProblem = "\(http.name): \(error)" }
        }
        return settings
    }

    /// The proxy to use for `endpoint`, `nil` to connect directly.
    public func server(for endpoint: HTTPEndpoint) throws(ProxyError) -> ProxyServer? {
        let https = endpoint.scheme == "https"
        let server = https ? httpsProxy : httpProxy
        let problem = https ? httpsProblem : httpProblem
        guard server != nil || problem != nil else { return nil }
        if bypassLoopback, NoProxyList.isLoopback(endpoint.host) { return nil }
        if noProxy.matches(host: endpoint.host, port: endpoint.port) { return nil }
        if let problem { throw ProxyError(problem) }
        return server
    }
}

/// NO_PROXY: a comma-separated list of hosts that are reached directly. As in Go:
/// `*` matches everything; `example.com` matches it and its subdomains;
/// `.example.com` (or `*.example.com`) only its subdomains; an IP address or a
/// CIDR block (`10.0.0.0/8`) matches addresses written in the endpoint; any entry
/// may end in `:port` to match that port only.
public struct NoProxyList: Sendable, Equatable {
    private enum Entry: Sendable, Equatable {
        case domain(suffix: String, matchesBare: Bool, port: Int?)
        case address(bytes: [UInt8], port: Int?)
        case network(bytes: [UInt8], prefixLength: Int)
    }

    private var entries: [Entry] = []
    public private(set) var matchesEverything = false

    public init(_ text: String) {
        for raw in text.split(separator: ",") {
            var item = raw.trimmingCharacters(in: .whitespaces).lowercased()
            if item.isEmpty { continue }
            if item == "*" {
                matchesEverything = true
                continue
            }
            if let slash = item.firstIndex(of: "/") {
                if let bytes = Self.addressBytes(String(item[..<slash])), let length = Int(item[item.index(after: slash)...]),
                   (0...(bytes.count * 8)).contains(length) {
                    entries.append(.network(bytes: bytes, prefixLength: length))
                }
                continue
            }
            if let bytes = Self.addressBytes(item) {
                entries.append(.address(bytes: bytes, port: nil))
                continue
            }
            var port: Int?
            if item.hasPrefix("[") {
                // [v6]:port
                guard let close = item.firstIndex(of: "]") else { continue }
                let rest = item[item.index(after: close)...]
                port = rest.hasPrefix(":") ? Int(rest.dropFirst()) : nil
                item = String(item[item.index(after: item.startIndex)..<close])
            } else if let colon = item.lastIndex(of: ":"), let p = Int(item[item.index(after: colon)...]) {
                port = p
                item = String(item[..<colon])
            }
            if let bytes = Self.addressBytes(item) {
                entries.append(.address(bytes: bytes, port: port))
                continue
            }
            if item.hasPrefix("*.") { item.removeFirst() }
            while item.hasSuffix(".") { item.removeLast() }
            guard !item.isEmpty, item != "." else { continue }
            if item.hasPrefix(".") {
                entries.append(.domain(suffix: item, matchesBare: false, port: port))
            } else {
                entries.append(.domain(suffix: "." + item, matchesBare: true, port: port))
            }
        }
    }

    public var isEmpty: Bool { entries.isEmpty && !matchesEverything }

    /// Whether a request to `host:port` goes direct.
    public func matches(host rawHost: String, port: Int) -> Bool {
        if matchesEverything { return true }
        var host = rawHost.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        while host.hasSuffix(".") { host.removeLast() }
        let address = Self.addressBytes(host)
        for entry in entries {
            switch entry {
            case .domain(let suffix, let matchesBare, let entryPort):
                guard address == nil, entryPort == nil || entryPort == port else { continue }
                if host.hasSuffix(suffix) || (matchesBare && host == suffix.dropFirst()) { return true }
            case .address(let bytes, let entryPort):
                if address == bytes, entryPort == nil || entryPort == port { return true }
            case .network(let bytes, let prefixLength):
                if let address, address.count == bytes.count, Self.samePrefix(address, bytes, bits: prefixLength) { return true }
            }
        }
        return false
    }

    static func isLoopback(_ rawHost: String) -> Bool {
        var host = rawHost.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" { return true }
        guard let bytes = addressBytes(host) else { return false }
        if bytes.count == 4 { return bytes[0] == 127 }
        return bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// The bytes of an IPv4 or IPv6 address literal, `nil` for anything else.
    static func addressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    private static func samePrefix(_ a: [UInt8], _ b: [UInt8], bits: Int) -> Bool {
        var remaining = bits
        for index in a.indices where remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
            if a[index] & mask != b[index] & mask { return false }
            remaining -= 8
        }
        return true
    }
}

/// Opens a tunnel through an HTTP proxy: sends `CONNECT host:port`, waits for a 2xx,
/// then takes itself out of the pipeline so TLS can start on the raw tunnel.
final class HTTPProxyConnectHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let target: String
    private let proxy: ProxyServer
    private var promise: EventLoopPromise<Void>?
    private var response: ByteBuffer?
    private var sent = false
    private static let maxResponseHead = 16 * 1024

    init(target: String, proxy: ProxyServer, promise: EventLoopPromise<Void>) {
        self.target = target
        self.proxy = proxy
        self.promise = promise
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { sendConnect(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendConnect(context: context)
        context.fireChannelActive()
    }

    private func sendConnect(context: ChannelHandlerContext) {
        guard !sent else { return }
        sent = true
        var head = "CONNECT \(target) HTTP/1.1\r\nHost: \(target)\r\nUser-Agent: sluice\r\n"
        if let authorization = proxy.authorization { head += "Proxy-Authorization: \(authorization)\r\n" }
        head += "\r\n"
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: head)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        guard promise != nil else { return }
        if response == nil { response = chunk } else { response!.writeBuffer(&chunk) }
        guard let text = response?.getString(at: response!.readerIndex, length: response!.readableBytes) else { return }
        guard let end = text.range(of: "\r\n\r\n") else {
            if text.utf8.count > Self.maxResponseHead { fail(context: context, "proxy \(proxy) sent an oversized answer to CONNECT") }
            return
        }
        let statusLine = String(text[..<(text.range(of: "\r\n")?.lowerBound ?? end.lowerBound)])
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            fail(context: context, "proxy \(proxy) did not answer CONNECT with HTTP: '\(statusLine.prefix(80))'")
            return
        }
        guard (200..<300).contains(status) else {
            let hint = status == 407 ? " (check the user and password in the proxy URL)" : ""
            fail(context: context, "proxy \(proxy) refused CONNECT \(target): \(statusLine.dropFirst(parts[0].count + 1))\(hint)")
            return
        }
        // A proxy sends nothing of the tunnel before the client speaks; whatever
        // followed the head would be a broken proxy's, so it is not passed on.
        let promise = self.promise
        self.promise = nil
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        promise?.succeed()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let promise {
            self.promise = nil
            promise.fail(HTTPClientError.connect("proxy \(proxy) closed the connection before answering CONNECT \(target)"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(context: context, "proxy \(proxy): \(error)")
    }

    private func fail(context: ChannelHandlerContext, _ message: String) {
        guard let promise else { return }
        self.promise = nil
        promise.fail(HTTPClientError.connect(message))
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension HTTPProxyConnectHandler: Sendable {}

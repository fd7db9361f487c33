// HTTP/1.1 and HTTP/2 on one port. Every HTTP/2 connection opens with the same 24
// bytes (RFC 9113 §3.4, https://www.rfc-editor.org/rfc/rfc9113#section-3.4):
//   "The client connection preface starts with a sequence of 24 octets ...
//    PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
// which no HTTP/1.1 request can begin with. The selector looks at the first bytes
// of a connection (after TLS, when there is TLS: ALPN "h2" makes a client send the
// same preface) and installs the HTTP/1.1 or the HTTP/2 handlers behind itself.
import Logging
import NIOCore
import NIOHTTP1

final class HTTPProtocolSelector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private let limits: HTTPServerLimits
    private let responder: any HTTPRequestResponder
    private let guardian: ConnectionGuard
    private let logger: Logger
    private var buffered: ByteBuffer?

    init(limits: HTTPServerLimits, responder: any HTTPRequestResponder, guardian: ConnectionGuard, logger: Logger) {
        self.limits = limits
        self.responder = responder
        self.guardian = guardian
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if buffered == nil { buffered = bytes } else { buffered!.writeBuffer(&bytes) }
        let seen = buffered!.readableBytesView
        let compared = min(seen.count, Self.preface.count)
        let isHTTP2 = seen.prefix(compared).elementsEqual(Self.preface.prefix(compared))
        // Until 24 bytes have come, a prefix of the preface could still be either.
        if isHTTP2 && compared < Self.preface.count { return }
        let pending = buffered!
        buffered = nil
        do {
            let pipeline = context.pipeline.syncOperations
            if isHTTP2 {
                try pipeline.addHandler(HTTP2ServerConnectionHandler(limits: limits, responder: responder, guardian: guardian, logger: logger), position: .after(self))
            } else {
                let handlers: [any ChannelHandler] = [
                    HTTPResponseEncoder(),
                    ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)),
                    HTTPServerPipelineHandler(),
                    HTTPConnectionHandler(limits: limits, responder: responder, guardian: guardian),
                ]
                try pipeline.addHandlers(handlers, position: .after(self))
            }
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(wrapInboundOut(pending))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// A connection that sends no request in time, or only part of the HTTP/2
    /// preface (an HTTP/1.1 byte would have removed the selector), or stalls inside
    /// the TLS handshake, which reads nothing up to here, is closed: no protocol
    /// has started whose answer could tell it why.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ConnectionDeadlineEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        buffered = nil
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension HTTPProtocolSelector: Sendable {}

// What the kernel knows of a connection before Sluice has read from it: whether its
// client has sent anything. A client that sent its request before it was accepted
// (it waited in the backlog behind a flood) looks as quiet as an idle connection
// until the first read, which a busy event loop may reach only after hundreds of
// accepts; the kernel's byte count tells them apart at once.
import CSluiceShims
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// getsockopt(TCP_INFO)'s answer: room for Linux's struct tcp_info (232 bytes in
/// 6.x; a newer kernel's longer struct is cut, an older one's leaves zeroes).
private typealias TCPInfoBytes = InlineArray<32, UInt64>

extension Channel {
    /// The bytes the peer has sent on this TCP connection, read or not
    /// (`tcpi_bytes_received`, RFC 4898's tcpEStatsAppHCThruOctetsReceived), or
    /// `nil` when the kernel does not say. Completes at once on the channel's loop.
    func tcpBytesReceived() -> EventLoopFuture<UInt64?> {
        guard let provider = self as? any SocketOptionProvider else { return eventLoop.makeSucceededFuture(nil) }
        let info: EventLoopFuture<TCPInfoBytes> = provider.unsafeGetSocketOption(level: SocketOptionLevel(IPPROTO_TCP),
                                                                                 name: SocketOptionName(TCP_INFO))
        return info.map { bytes -> UInt64? in
            let received = withUnsafeBytes(of: bytes) { raw in
                sluice_tcp_info_bytes_received(raw.baseAddress, UInt32(raw.count))
            }
            return received < 0 ? nil : UInt64(received)
        }.recover { _ in nil }
    }
}

// One OpenSSL session (`SSL`) over two memory BIOs, for either end of a connection:
// the handler writes the bytes that arrive into `input` and sends what OpenSSL
// leaves in `output`, so OpenSSL never touches a socket and everything stays on the
// channel's event loop.
import COpenSSL
import CSluiceShims
import NIOCore

final class TLSSession {
    let ssl: OpaquePointer
    private let input: OpaquePointer
    private let output: OpaquePointer

    /// A session on `context` (an `SSL_CTX`), not yet told which end it is.
    private init(context: OpaquePointer) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context) else { throw .configuration("cannot create a TLS session: \(OpenSSLErrors.drain())") }
        guard let input = BIO_new(BIO_s_mem()), let output = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw .configuration("cannot create memory BIOs: \(OpenSSLErrors.drain())")
        }
        // The session owns both BIOs from here on: SSL_free frees them.
        SSL_set_bio(ssl, input, output)
        self.ssl = ssl
        self.input = input
        self.output = output
    }

    deinit { SSL_free(ssl) }

    /// The client end. `host` is what the certificate must name (and the SNI when it
    /// is a DNS name).
    static func client(context: TLSContext, host: String) throws(TLSError) -> TLSSession {
        let session = try TLSSession(context: context.pointer)
        let ssl = session.ssl
        SSL_set_connect_state(ssl)
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        let isAddress = isIPAddress(bare)
        // RFC 6066: SNI carries DNS names only, never addresses.
        if !isAddress, sluice_ssl_set_tlsext_host_name(ssl, bare) != 1 {
            throw .configuration("cannot set the TLS server name '\(bare)': \(OpenSSLErrors.drain())")
        }
        if !context.configuration.insecureSkipVerify {
            if isAddress {
                guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), bare) == 1 else {
                    throw .configuration("cannot check the certificate against address '\(bare)': \(OpenSSLErrors.drain())")
                }
            } else {
                SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                guard SSL_set1_host(ssl, bare) == 1 else {
                    throw .configuration("cannot check the certificate against host '\(bare)': \(OpenSSLErrors.drain())")
                }
            }
        }
        return session
    }

    /// The server end: waits for the client's hello.
    static func server(context: ServerSSLContext) throws(TLSError) -> TLSSession {
        let session = try TLSSession(context: context.pointer)
        SSL_set_accept_state(session.ssl)
        return session
    }

    /// Hands bytes received from the network to OpenSSL.
    func receive(_ buffer: inout ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
            // A memory BIO grows to take everything it is given.
            _ = BIO_write(input, base, Int32(bytes.count))
        }
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
    }

    /// The bytes OpenSSL wants sent, or `nil` when there are none.
    func takeOutput(allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = Int(sluice_bio_pending(output))
        guard pending > 0 else { return nil }
        var buffer = allocator.buffer(capacity: pending)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { bytes in
            Int(max(0, BIO_read(output, bytes.baseAddress, Int32(pending))))
        }
        return buffer
    }

    /// Why the last call, which returned `code` from SSL_get_error, failed.
    func failure(_ code: Int32) -> OpenSSLFailure { OpenSSLFailure(ssl: ssl, code: code) }

    /// The ALPN protocol agreed on, if any.
    var negotiatedProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    static func isIPAddress(_ text: String) -> Bool {
        (try? SocketAddress(ipAddress: text, port: 0)) != nil
    }
}

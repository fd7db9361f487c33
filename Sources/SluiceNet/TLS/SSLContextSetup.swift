// The steps of building an `SSL_CTX` that the client (`TLSContext`) and the server
// (`ServerSSLContext`) share, with errors that name the configuration key to fix.
import COpenSSL
import CSluiceShims
import SluiceCore

enum SSLContextSetup {
    /// Loads the certificate chain and its private key, and checks they belong together.
    static func useCertificate(_ ctx: OpaquePointer, certFile cert: String, keyFile key: String) throws(TLSError) {
        guard SSL_CTX_use_certificate_chain_file(ctx, cert) == 1 else {
            throw .configuration("tls.cert_file '\(cert)' holds no usable certificate: \(OpenSSLErrors.drain())")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 else {
            let reason = OpenSSLErrors.drain()
            if reason.contains("key values mismatch") {
                throw .configuration("tls.key_file '\(key)' does not belong to the certificate in tls.cert_file '\(cert)': \(reason)")
            }
            throw .configuration("tls.key_file '\(key)' holds no usable private key: \(reason)")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw .configuration("tls.key_file '\(key)' does not belong to the certificate in tls.cert_file '\(cert)': \(OpenSSLErrors.drain())")
        }
    }

    /// The protocol versions, and the buffer modes every Sluice context uses.
    static func limitVersions(_ ctx: OpaquePointer, min: TLSVersion, max: TLSVersion?) throws(TLSError) {
        guard sluice_ssl_ctx_set_min_proto_version(ctx, min.openSSLVersion) == 1 else {
            throw .configuration("cannot set tls.min_version \(min.rawValue): \(OpenSSLErrors.drain())")
        }
        if let max {
            guard sluice_ssl_ctx_set_max_proto_version(ctx, max.openSSLVersion) == 1 else {
                throw .configuration("cannot set tls.max_version \(max.rawValue): \(OpenSSLErrors.drain())")
            }
        }
        // Idle connections give their buffers back; a write retried after
        // SSL_ERROR_WANT_READ may come from a ByteBuffer whose storage moved.
        _ = sluice_ssl_ctx_set_mode(ctx, Int(SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER))
    }

    /// ALPN protocol names in the wire format (RFC 7301 section 3.1): each name
    /// preceded by its length in one byte.
    static func alpnWire(_ protocols: [String]) throws(TLSError) -> [UInt8] {
        var wire: [UInt8] = []
        for proto in protocols {
            let bytes = Array(proto.utf8)
            guard !bytes.isEmpty, bytes.count < 256 else { throw .configuration("ALPN protocol '\(proto)' must be 1 to 255 bytes") }
            wire.append(UInt8(bytes.count))
            wire += bytes
        }
        return wire
    }
}

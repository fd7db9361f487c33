import COpenSSL
import SluiceOTLP

/// SHA-256 and HMAC-SHA-256 through OpenSSL, for exporters: deterministic document
/// ids, request signatures (AWS Signature V4, signed webhooks).
public enum Digest {
    /// SHA-256 fetched from OpenSSL's provider once. `EVP_sha256()` is looked up
    /// again in the provider's store on every use, under a read lock: a cost per
    /// record where records are hashed one by one (the `integrity` processor).
    /// Falls back to `EVP_sha256()` if the fetch fails.
    nonisolated(unsafe) static let sha256Method: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)
    static var method: OpaquePointer? { sha256Method ?? EVP_sha256() }

    // EVP_Digest cannot fail for SHA-256 on memory short of an allocation failure; a
    // zero digest then still names the document deterministically enough to be
    // refused later rather than crash here.
    public static func sha256(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { sha256(data, key: nil, into: $0.baseAddress!) }
        return out
    }

    public static func sha256(_ bytes: [UInt8]) -> [UInt8] { bytes.withUnsafeBytes { sha256($0) } }

    public static func hmacSHA256(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in out.withUnsafeMutableBufferPointer { sha256(d, key: k, into: $0.baseAddress!) } }
        }
        return out
    }

    /// SHA-256 (or HMAC-SHA-256 under `key`) of `data` into `out` (32 bytes): the
    /// allocation-free form for per-record hashing.
    public static func sha256(_ data: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer?, into out: UnsafeMutablePointer<UInt8>) {
        var length: UInt32 = 0
        if let key {
            _ = HMAC(method, key.baseAddress, Int32(key.count), data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count, out, &length)
        } else {
            _ = EVP_Digest(data.baseAddress, data.count, out, &length, method, nil)
        }
    }

    /// Lowercase hexadecimal, as signatures and ids are written.
    public static func hex(_ bytes: [UInt8]) -> String {
        String(decoding: hexBytes(bytes), as: UTF8.self)
    }

    /// Lowercase hexadecimal as ASCII bytes (for writing straight into a value).
    public static func hexBytes(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        bytes.withUnsafeBufferPointer { JSONOutput.appendHex($0, to: &out) }
        return out
    }
}

/// SHA-256 with one OpenSSL context reused digest after digest: `EVP_Digest`
/// makes, sets up and frees a context on every call, a third of the time of
/// hashing a few hundred bytes (the `integrity` processor hashes two such inputs
/// per record). One owner at a time: not for sharing between threads.
public final class SHA256Hasher {
    private let context: OpaquePointer?

    public init() { context = EVP_MD_CTX_new() }

    deinit { EVP_MD_CTX_free(context) }

    /// The 32-byte digest of `data` into `out`.
    public func digest(_ data: UnsafeRawBufferPointer, into out: UnsafeMutablePointer<UInt8>) {
        guard let context, EVP_DigestInit_ex2(context, Digest.method, nil) == 1 else {
            return Digest.sha256(data, key: nil, into: out)
        }
        var length: UInt32 = 0
        _ = EVP_DigestUpdate(context, data.baseAddress, data.count)
        _ = EVP_DigestFinal_ex(context, out, &length)
    }
}

/// A hash function chosen in configuration, with its key when it is an HMAC: what
/// the `attributes` processor's `hash` action and the `redaction` processor's
/// `hash_function` replace values with.
public struct ValueDigest: Sendable, Equatable {
    public enum Algorithm: String, Sendable, CaseIterable {
        case md5, sha1, sha256, sha3_256, sha512
    }

    public let algorithm: Algorithm
    /// HMAC key; nil for a plain digest.
    public let key: [UInt8]?

    public init(_ algorithm: Algorithm, key: [UInt8]? = nil) {
        self.algorithm = algorithm
        self.key = key
    }

    private var md: OpaquePointer? {
        switch algorithm {
        case .md5: EVP_md5()
        case .sha1: EVP_sha1()
        case .sha256: Digest.method
        case .sha3_256: EVP_sha3_256()
        case .sha512: EVP_sha512()
        }
    }

    /// The raw digest of `data`.
    public func digest(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        if let key {
            key.withUnsafeBytes { k in
                _ = HMAC(md, k.baseAddress, Int32(k.count), data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count, &out, &length)
            }
        } else {
            _ = EVP_Digest(data.baseAddress, data.count, &out, &length, md, nil)
        }
        return Array(out.prefix(Int(length)))
    }

    /// The digest of `data` in lowercase hexadecimal, as ASCII bytes.
    public func hex(_ data: UnsafeRawBufferPointer) -> [UInt8] { Digest.hexBytes(digest(data)) }

    public func hex(_ bytes: [UInt8]) -> [UInt8] { bytes.withUnsafeBytes { hex($0) } }
}

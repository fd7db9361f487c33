import COpenSSL

/// SHA-256 and HMAC-SHA-256 through OpenSSL, for exporters: deterministic document
/// ids, request signatures (AWS Signature V4, signed webhooks).
public enum Digest {
    public static func sha256(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        // EVP_Digest cannot fail for SHA-256 on memory short of an allocation
        // failure; a zero digest then still names the document deterministically enough
        // to be refused later rather than crash here.
        _ = EVP_Digest(data.baseAddress, data.count, &out, &length, EVP_sha256(), nil)
        return out
    }

    public static func sha256(_ bytes: [UInt8]) -> [UInt8] { bytes.withUnsafeBytes { sha256($0) } }

    public static func hmacSHA256(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                _ = HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), d.bindMemory(to: UInt8.self).baseAddress, d.count, &out, &length)
            }
        }
        return out
    }

    /// Lowercase hexadecimal, as signatures and ids are written.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

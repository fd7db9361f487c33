// Addresses: email addresses, the credentials in a URL's userinfo, IPv4 and IPv6
// addresses.

/// Email addresses: a local part of letters, digits and `. _ % + -` (not starting or
/// ending with a dot), `@`, and a domain of at least two labels whose last is two or
/// more letters. Found from the `@`, so the scan costs nothing for text without one.
/// An address inside a URL's path or query (`/users/ann@example.com`) is matched;
/// a percent-encoded one (`ann%40example.com`) is not, nor an image name with a
/// scale suffix (`icon@2x.png`).
enum Email {
    static func match(_ text: UnsafeBufferPointer<UInt8>, _ at: Int, floor: Int) -> (Int, Int)? {
        // A local part is at most 64 bytes (RFC 5321 §4.5.3.1.1): looking further
        // back would only cost time on hostile text.
        let limit = max(floor, at - 65)
        var start = at
        while start > limit, isLocal(text[start - 1]) { start -= 1 }
        if start == limit, start > floor, isLocal(text[start - 1]) { return nil }
        while start < at, text[start] == UInt8(ascii: ".") { start += 1 }
        guard start < at, text[at - 1] != UInt8(ascii: "."), at - start <= 64 else { return nil }
        guard let end = domainEnd(text, at + 1), !isScaleSuffix(text, at + 1) else { return nil }
        return (start, end)
    }

    /// `icon@2x.png`: an image scale suffix, not a domain.
    private static func isScaleSuffix(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Bool {
        var i = start
        while i < text.count, Bytes.isDigit(text[i]) { i += 1 }
        return i > start && i + 1 < text.count && text[i] == UInt8(ascii: "x") && text[i + 1] == UInt8(ascii: ".")
    }

    /// Where a domain starting at `start` ends: labels of letters, digits and inner
    /// dashes, at least two, the last all letters and at least two long.
    static func domainEnd(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        var i = start
        var labels = 0
        var end: Int?
        while i < text.count {
            let labelStart = i
            var lettersOnly = true
            while i < text.count, Bytes.isAlphanumeric(text[i]) || text[i] == UInt8(ascii: "-") {
                if !Bytes.isLetter(text[i]) { lettersOnly = false }
                i += 1
            }
            let length = i - labelStart
            guard length > 0, length <= 63, text[labelStart] != UInt8(ascii: "-"), text[i - 1] != UInt8(ascii: "-") else { break }
            labels += 1
            if labels >= 2, lettersOnly, length >= 2 { end = i }
            guard i + 1 < text.count, text[i] == UInt8(ascii: "."), Bytes.isAlphanumeric(text[i + 1]) else { break }
            i += 1
        }
        return end
    }

    private static func isLocal(_ b: UInt8) -> Bool {
        Bytes.isAlphanumeric(b) || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "%") || b == UInt8(ascii: "+") || b == UInt8(ascii: "-")
    }
}

/// The userinfo of a URL (`https://user:secret@host/`, RFC 3986 §3.2.1): a
/// credential, masked whole (user and password) and kept apart from emails, so the
/// host stays readable. `https://ann@example.com` is userinfo too, not an email.
enum URLUserinfo {
    /// Where the userinfo before the `@` at `at` starts, when it follows `://`.
    static func start(_ text: UnsafeBufferPointer<UInt8>, _ at: Int, floor: Int) -> Int? {
        // Userinfo longer than 256 bytes is not looked for: bounded work per `@`.
        let limit = max(floor, at - 256)
        var start = at
        while start > limit, isUserinfo(text[start - 1]) { start -= 1 }
        guard start < at, start >= 3, text[start - 1] == UInt8(ascii: "/"), text[start - 2] == UInt8(ascii: "/"), text[start - 3] == UInt8(ascii: ":") else { return nil }
        // A scheme must precede `://`.
        guard start >= 4, Bytes.isLetter(text[start - 4]) else { return nil }
        return Email.domainEnd(text, at + 1) != nil || (at + 1 < text.count && (Bytes.isAlphanumeric(text[at + 1]) || text[at + 1] == UInt8(ascii: "["))) ? start : nil
    }

    /// RFC 3986's unreserved, pct-encoded and sub-delims characters, and `:`.
    private static func isUserinfo(_ b: UInt8) -> Bool {
        if Bytes.isAlphanumeric(b) { return true }
        switch b {
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "%"), UInt8(ascii: "!"), UInt8(ascii: "$"),
             UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","),
             UInt8(ascii: ";"), UInt8(ascii: "="), UInt8(ascii: ":"):
            return true
        default:
            return false
        }
    }
}

/// IPv4 and IPv6 addresses.
///
/// IPv4: four decimal octets 0–255 without leading zeros, not part of a longer
/// dotted number (`1.2.3.4.5`) or a word (`v1.2.3.4`): a bare `1.2.3.4` is an
/// address as far as text can tell. IPv6 (RFC 4291 §2.2): eight groups of one to
/// four hex digits, or fewer with one `::`, optionally ending in an IPv4 address;
/// clock times (`10:00:00`) and MAC addresses (six groups) are not.
enum IPAddress {
    static func v4(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        guard let end = dottedQuad(text, start) else { return nil }
        return Bytes.endsNumber(text, end) ? end : nil
    }

    /// Four octets from `start`; where they end.
    private static func dottedQuad(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        var i = start
        for octet in 0..<4 {
            if octet > 0 {
                guard i < text.count, text[i] == UInt8(ascii: ".") else { return nil }
                i += 1
            }
            let octetStart = i
            var value = 0
            while i < text.count, Bytes.isDigit(text[i]), i - octetStart < 3 {
                value = value * 10 + Int(text[i] - UInt8(ascii: "0"))
                i += 1
            }
            let length = i - octetStart
            guard length > 0, value <= 255, !(length > 1 && text[octetStart] == UInt8(ascii: "0")) else { return nil }
            if i < text.count, Bytes.isDigit(text[i]) { return nil }
        }
        return i
    }

    static func v6(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        var i = start
        var groups = 0
        var compressed = false
        var end: Int?
        var colons = 0
        if Bytes.has(text, "::", at: i) {
            compressed = true
            colons = 2
            i += 2
            end = i
        }
        while i < text.count {
            // An embedded IPv4 address ends the address (::ffff:192.0.2.1).
            if compressed ? groups <= 5 : groups == 6, Bytes.isDigit(text[i]), let quadEnd = dottedQuad(text, i) {
                groups += 2
                end = quadEnd
                break
            }
            let groupStart = i
            while i < text.count, Bytes.isHexDigit(text[i]), i - groupStart < 5 { i += 1 }
            let length = i - groupStart
            guard length > 0 else { break }
            guard length <= 4 else { return nil }
            groups += 1
            end = i
            guard groups < 8, i < text.count, text[i] == UInt8(ascii: ":") else { break }
            if Bytes.has(text, "::", at: i) {
                guard !compressed else { return nil }
                compressed = true
                colons += 2
                i += 2
                end = i
            } else {
                colons += 1
                i += 1
                // A trailing single colon belongs to the text, not the address.
                guard i < text.count, Bytes.isHexDigit(text[i]) else { end = i - 1; break }
            }
        }
        guard let last = end, colons >= 2 else { return nil }
        guard compressed ? groups <= 7 && (groups >= 1 || last - start == 2) : groups == 8 else { return nil }
        if last - start == 2 { return nil }  // "::" alone is punctuation far more often than an address
        if last < text.count {
            let b = text[last]
            if Bytes.isAlphanumeric(b) || b == UInt8(ascii: "_") || b == UInt8(ascii: ":") && last + 1 < text.count && Bytes.isHexDigit(text[last + 1]) { return nil }
        }
        return last
    }
}

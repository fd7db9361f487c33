// Numbers that identify a person or an account: payment cards, US Social Security
// numbers, phone numbers, IBANs. Each detector gets the text and the position of
// its first byte (already at a word boundary) and returns where the match ends.

/// Payment card numbers (ISO/IEC 7812): 13 to 19 digits starting with 2–6 (the
/// networks that issue cards: Mastercard's 2-series, Amex and Diners 3, Visa 4,
/// Mastercard 5, Discover and UnionPay 6), passing the Luhn check, written together
/// or in the groups cards are printed in: fours (the last of three for 15 and 19
/// digits), or 4-6-5
/// and 4-6-4 (Amex, Diners), separated by single spaces or dashes. The whole run of
/// groups must be the card: the digits of an IBAN or a longer number are not one.
enum CardNumber {
    static func match(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        let first = text[start]
        guard first >= UInt8(ascii: "2"), first <= UInt8(ascii: "6") else { return nil }
        var i = start
        var digits = 0, groups = 0
        var firstGroup = 0, secondGroup = 0, lastGroup = 0
        var fours = true  // every group before the last has four digits
        var separator: UInt8 = 0
        while true {
            let groupStart = i
            while i < text.count, Bytes.isDigit(text[i]) { i += 1 }
            let size = i - groupStart
            digits += size
            if digits > 19 { return nil }
            groups += 1
            if groups == 1 { firstGroup = size } else if groups == 2 { secondGroup = size }
            if groups > 1, lastGroup != 4 { fours = false }
            lastGroup = size
            guard i + 1 < text.count, Bytes.isDigit(text[i + 1]) else { break }
            let b = text[i]
            guard b == UInt8(ascii: " ") || b == UInt8(ascii: "-") else { break }
            if separator == 0 { separator = b } else if b != separator { return nil }
            i += 1
        }
        guard digits >= 13, Bytes.endsNumber(text, i) else { return nil }
        let printed = groups == 1 || (fours && (lastGroup == 4 || lastGroup == 3)) || (groups == 3 && firstGroup == 4 && secondGroup == 6 && (lastGroup == 5 || lastGroup == 4))
        guard printed, luhn(text, start, i) else { return nil }
        return i
    }

    /// The Luhn check over the digits of `text[start..<end]` (separators skipped).
    static func luhn(_ text: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        var sum = 0
        var double = false
        var i = end - 1
        while i >= start {
            let b = text[i]
            if Bytes.isDigit(b) {
                var d = Int(b - UInt8(ascii: "0"))
                if double { d *= 2; if d > 9 { d -= 9 } }
                sum += d
                double.toggle()
            }
            i -= 1
        }
        return sum % 10 == 0
    }
}

/// US Social Security numbers written `AAA-GG-SSSS` (or with spaces), with the
/// Social Security Administration's rules for numbers never issued: area 000, 666
/// and 900–999, group 00 and serial 0000 are not SSNs. Nine digits written together
/// are not matched: too many ids and amounts look the same.
enum SocialSecurityNumber {
    static func match(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        guard start + 11 <= text.count else { return nil }
        let separator = text[start + 3]
        guard separator == UInt8(ascii: "-") || separator == UInt8(ascii: " "), text[start + 6] == separator else { return nil }
        func number(_ from: Int, _ count: Int) -> Int? {
            var value = 0
            for k in from..<(from + count) {
                guard Bytes.isDigit(text[k]) else { return nil }
                value = value * 10 + Int(text[k] - UInt8(ascii: "0"))
            }
            return value
        }
        guard let area = number(start, 3), let group = number(start + 4, 2), let serial = number(start + 7, 4) else { return nil }
        guard area != 0, area != 666, area < 900, group != 0, serial != 0 else { return nil }
        let end = start + 11
        return Bytes.endsNumber(text, end) ? end : nil
    }
}

/// Phone numbers: international ones written with `+` (E.164: a country code and at
/// most 15 digits, at least 8, in groups separated by spaces, dashes, dots or a
/// parenthesized group), and North American national ones (`555-123-4567`,
/// `555.123.4567`, `555 123 4567`, `(555) 123-4567`, with an optional leading
/// `1-`), whose area code and exchange start with 2–9. Other national formats
/// without `+` are not matched: they cannot be told from ids and dates.
enum Phone {
    static func international(_ text: UnsafeBufferPointer<UInt8>, _ plus: Int) -> Int? {
        var i = plus + 1
        guard i < text.count, text[i] >= UInt8(ascii: "1"), text[i] <= UInt8(ascii: "9") else { return nil }
        var digits = 0
        var lastDigitEnd = i
        var open = false
        while i < text.count {
            let b = text[i]
            if Bytes.isDigit(b) {
                digits += 1
                if digits > 15 { return nil }
                i += 1
                lastDigitEnd = i
                continue
            }
            let next: UInt8 = i + 1 < text.count ? text[i + 1] : 0
            switch b {
            case UInt8(ascii: " "), UInt8(ascii: "-"), UInt8(ascii: "."):
                guard Bytes.isDigit(next) || (next == UInt8(ascii: "(") && !open) else { break }
                i += 1
                continue
            case UInt8(ascii: "(") where !open && Bytes.isDigit(next):
                open = true
                i += 1
                continue
            case UInt8(ascii: ")") where open:
                open = false
                i += 1
                lastDigitEnd = i
                continue
            default:
                break
            }
            break
        }
        guard !open, digits >= 8, Bytes.endsNumber(text, lastDigitEnd) else { return nil }
        return lastDigitEnd
    }

    static func national(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        var i = start
        // An optional country code 1 with the same separator: 1-800-555-0199.
        if text[i] == UInt8(ascii: "1"), i + 1 < text.count, isSeparator(text[i + 1]), i + 2 < text.count, Bytes.isDigit(text[i + 2]) {
            if let end = threeThreeFour(text, i + 2, separator: text[i + 1]) { return end }
        }
        guard i + 3 < text.count, isSeparator(text[i + 3]) else { return nil }
        i = start
        return threeThreeFour(text, i, separator: text[i + 3])
    }

    /// `(555) 123-4567`, `(555)123-4567`, `(555) 123 4567`.
    static func parenthesized(_ text: UnsafeBufferPointer<UInt8>, _ open: Int) -> Int? {
        guard open + 5 < text.count, digits(text, open + 1, 3), text[open + 4] == UInt8(ascii: ")"), isAreaStart(text[open + 1]) else { return nil }
        var i = open + 5
        if text[i] == UInt8(ascii: " ") { i += 1 }
        guard i + 8 <= text.count, digits(text, i, 3), isAreaStart(text[i]), isSeparator(text[i + 3]), digits(text, i + 4, 4) else { return nil }
        let end = i + 8
        return Bytes.endsNumber(text, end) ? end : nil
    }

    private static func threeThreeFour(_ text: UnsafeBufferPointer<UInt8>, _ start: Int, separator: UInt8) -> Int? {
        guard start + 12 <= text.count, digits(text, start, 3), text[start + 3] == separator, digits(text, start + 4, 3),
              text[start + 7] == separator, digits(text, start + 8, 4),
              isAreaStart(text[start]), isAreaStart(text[start + 4]) else { return nil }
        let end = start + 12
        return Bytes.endsNumber(text, end) ? end : nil
    }

    private static func isSeparator(_ b: UInt8) -> Bool { b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: " ") }
    private static func isAreaStart(_ b: UInt8) -> Bool { b >= UInt8(ascii: "2") && b <= UInt8(ascii: "9") }

    private static func digits(_ text: UnsafeBufferPointer<UInt8>, _ start: Int, _ count: Int) -> Bool {
        guard start + count <= text.count else { return false }
        for k in start..<(start + count) where !Bytes.isDigit(text[k]) { return false }
        return true
    }
}

/// International Bank Account Numbers (ISO 13616): a country code, two check digits
/// and the country's fixed number of letters and digits, written together or in
/// groups of four separated by single spaces, whose mod-97 checksum is 1.
enum IBAN {
    static func match(_ text: UnsafeBufferPointer<UInt8>, _ start: Int) -> Int? {
        guard start + 4 < text.count, Bytes.isLetter(text[start + 1]), Bytes.isDigit(text[start + 2]), Bytes.isDigit(text[start + 3]) else { return nil }
        let country = UInt16(text[start] & 0xDF) << 8 | UInt16(text[start + 1] & 0xDF)
        guard let length = lengths[country] else { return nil }
        // The characters after the country code and check digits, spaces allowed
        // between groups of four.
        var count = 4
        var i = start + 4
        while count < length, i < text.count {
            let b = text[i]
            if Bytes.isAlphanumeric(b) {
                count += 1
                i += 1
            } else if b == UInt8(ascii: " "), count % 4 == 0, i + 1 < text.count, Bytes.isAlphanumeric(text[i + 1]) {
                i += 1
            } else {
                return nil
            }
        }
        guard count == length, i == text.count || !Bytes.isAlphanumeric(text[i]) else { return nil }
        return checksum(text, start, i) == 1 ? i : nil
    }

    /// The IBAN read as a number (BBAN first, then country and check digits; letters
    /// A–Z as 10–35) modulo 97.
    static func checksum(_ text: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Int {
        var remainder = 0
        func add(_ b: UInt8) {
            if Bytes.isDigit(b) {
                remainder = (remainder * 10 + Int(b - UInt8(ascii: "0"))) % 97
            } else if Bytes.isLetter(b) {
                remainder = (remainder * 100 + Int((b & 0xDF) - UInt8(ascii: "A")) + 10) % 97
            }
        }
        for k in (start + 4)..<end { add(text[k]) }
        for k in start..<(start + 4) { add(text[k]) }
        return remainder
    }

    /// IBAN lengths by country, from the SWIFT IBAN registry.
    static let lengths: [UInt16: Int] = {
        let table = "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HN28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20 YE30"
        var lengths: [UInt16: Int] = [:]
        for entry in table.split(separator: " ") {
            let bytes = Array(entry.utf8)
            lengths[UInt16(bytes[0]) << 8 | UInt16(bytes[1])] = Int(String(decoding: bytes[2...], as: UTF8.self))!
        }
        return lengths
    }()
}

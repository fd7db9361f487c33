import SluiceCore

/// An event's `timestamp` as nanoseconds since the Unix epoch (a log record's
/// `time_unix_nano`), from the forms gateways write:
///
/// - RFC 3339 text (https://www.rfc-editor.org/rfc/rfc3339#section-5.6):
///   `2026-11-21T10:00:00Z`, with a fraction of up to nine digits (more are cut),
///   and `Z` or an offset (`+02:00`); `t`, `z` and a space for `T` are accepted as
///   §5.6's note allows. A leap second (`:60`) counts as the next minute's first.
/// - A number, or a string of one, of epoch seconds, milliseconds, microseconds or
///   nanoseconds, told apart by size: below 10^11 seconds (until the year 5138),
///   below 10^14 milliseconds, below 10^17 microseconds, else nanoseconds.
///   Seconds and milliseconds may have a fraction (`1763712000.25`).
///
/// A time before 1970 or after 2554 (where 64-bit nanoseconds end) has no
/// `time_unix_nano` and is refused, as is anything else.
enum EventTimestamp {
    static func nanoseconds(_ value: OTLPValue) -> UInt64? {
        switch value {
        case .int(let v): return v < 0 ? nil : fromEpoch(integer: UInt64(v))
        case .double(let d): return fromEpoch(double: d)
        case .string(let text):
            if let time = rfc3339(text) { return time }
            guard !text.isEmpty, text.allSatisfy({ isDigit($0) || $0 == UInt8(ascii: ".") }) else { return nil }
            if !text.contains(UInt8(ascii: ".")), text.count <= 19, let v = UInt64(String(decoding: text, as: UTF8.self)) {
                return fromEpoch(integer: v)
            }
            return Double(String(decoding: text, as: UTF8.self)).flatMap(fromEpoch(double:))
        default: return nil
        }
    }

    /// What `nanoseconds` accepts, for error messages.
    static let expected = "RFC 3339 text (2026-11-21T10:00:00.123Z, or with an offset like +02:00) or epoch seconds, milliseconds, microseconds or nanoseconds, from 1970 to 2554"

    /// The scale of an epoch number: nanoseconds per unit.
    private static func unit(_ magnitude: Double) -> UInt64 {
        if magnitude < 1e11 { return 1_000_000_000 }
        if magnitude < 1e14 { return 1_000_000 }
        if magnitude < 1e17 { return 1_000 }
        return 1
    }

    private static func fromEpoch(integer v: UInt64) -> UInt64? {
        let (product, overflow) = v.multipliedReportingOverflow(by: unit(Double(v)))
        return overflow ? nil : product
    }

    private static func fromEpoch(double d: Double) -> UInt64? {
        guard d.isFinite, d >= 0 else { return nil }
        let scale = unit(d)
        let whole = d.rounded(.down)
        // Whole units and the fraction apart, so seconds keep their sub-microsecond digits.
        guard whole < 0x1p64 else { return nil }
        let (product, overflow) = UInt64(whole).multipliedReportingOverflow(by: scale)
        guard !overflow else { return nil }
        let (sum, over) = product.addingReportingOverflow(UInt64(((d - whole) * Double(scale)).rounded()))
        return over ? nil : sum
    }

    /// RFC 3339 §5.6 `date-time`.
    static func rfc3339(_ t: [UInt8]) -> UInt64? {
        var k = 0
        func number(_ digits: Int) -> Int? {
            guard k + digits <= t.count else { return nil }
            var v = 0
            for _ in 0..<digits {
                guard isDigit(t[k]) else { return nil }
                v = v * 10 + Int(t[k] - UInt8(ascii: "0"))
                k += 1
            }
            return v
        }
        func expect(_ c: UInt8...) -> Bool {
            guard k < t.count, c.contains(t[k]) else { return false }
            k += 1
            return true
        }
        guard let year = number(4), expect(UInt8(ascii: "-")), let month = number(2), expect(UInt8(ascii: "-")), let day = number(2),
              expect(UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")),
              let hour = number(2), expect(UInt8(ascii: ":")), let minute = number(2), expect(UInt8(ascii: ":")), let second = number(2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year), hour < 24, minute < 60, second <= 60 else { return nil }
        var fraction: UInt64 = 0
        if expect(UInt8(ascii: ".")) {
            var digits = 0
            while k < t.count, isDigit(t[k]) {
                if digits < 9 { fraction = fraction * 10 + UInt64(t[k] - UInt8(ascii: "0")) }
                digits += 1
                k += 1
            }
            guard digits > 0 else { return nil }
            for _ in min(digits, 9)..<9 { fraction *= 10 }
        }
        var offset = 0
        if expect(UInt8(ascii: "Z"), UInt8(ascii: "z")) {
            offset = 0
        } else if k < t.count, t[k] == UInt8(ascii: "+") || t[k] == UInt8(ascii: "-") {
            let sign = t[k] == UInt8(ascii: "-") ? -1 : 1
            k += 1
            guard let hours = number(2), expect(UInt8(ascii: ":")), let minutes = number(2), hours < 24, minutes < 60 else { return nil }
            offset = sign * (hours * 3600 + minutes * 60)
        } else {
            return nil
        }
        guard k == t.count else { return nil }
        let seconds = daysSinceEpoch(year: year, month: month, day: day) * 86400 + hour * 3600 + minute * 60 + second - offset
        guard seconds >= 0 else { return nil }
        let (product, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return nil }
        let (sum, over) = product.addingReportingOverflow(fraction)
        return over ? nil : sum
    }

    /// Days from 1970-01-01 to a date of the proleptic Gregorian calendar, for
    /// years 0 to 9999 (the civil-from-days inverse: March-based years, so the leap
    /// day is the last day of its year).
    static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
}

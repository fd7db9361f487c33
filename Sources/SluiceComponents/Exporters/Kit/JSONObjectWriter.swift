import SluiceCore

// Writing one JSON object per record, for every exporter whose destination takes
// JSON documents (Elasticsearch, Datadog, Azure Monitor, webhooks): keys written
// once each (ObjectKeys), attributes as members or nested objects, times in ISO 8601.

/// One object being written at the end of `out`, with its keys.
struct JSONObjectWriter {
    var out = JSONOutput()
    var keys = ObjectKeys()
    var first = true

    /// Begins a new object after what `out` holds.
    mutating func begin() {
        keys.reset()
        first = true
        out.append(UInt8(ascii: "{"))
    }

    mutating func key(_ name: String) -> Bool { ObjectKeys.beginMember(&out, &keys, prefix: nil, key: name, &first) }

    mutating func string(_ name: String, _ value: StringView) {
        if !value.isEmpty, key(name) { out.appendString(value.utf8) }
    }

    mutating func hex(_ name: String, _ value: BytesView) {
        if !value.isEmpty, key(name) { out.appendHexString(value.bytes) }
    }

    mutating func int(_ name: String, _ value: Int64) {
        if key(name) { out.appendInt(value) }
    }

    /// Each attribute as a member of this object, named `<prefix><key>`.
    mutating func members(_ attributes: AttributesView?, prefix: [UInt8]? = nil) {
        guard let attributes else { return }
        for attribute in attributes {
            guard let value = attribute.value, ObjectKeys.beginMember(&out, &keys, prefix: prefix, key: attribute.key.utf8, &first) else { continue }
            value.writePlainJSON(to: &out)
        }
    }

    /// `"name":{…attributes}`, its keys written once each; nothing when empty.
    mutating func object(_ name: String, _ attributes: AttributesView?) {
        guard let attributes, !attributes.isEmpty, key(name) else { return }
        Self.writeObject(attributes, to: &out)
    }

    static func writeObject(_ attributes: AttributesView, to out: inout JSONOutput) {
        var nested = ObjectKeys()
        var first = true
        out.append(UInt8(ascii: "{"))
        for attribute in attributes {
            guard let value = attribute.value, ObjectKeys.beginMember(&out, &nested, prefix: nil, key: attribute.key.utf8, &first) else { continue }
            value.writePlainJSON(to: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    /// `"name":"2026-11-21T10:00:00.123Z"`, with 3 or 9 fractional digits.
    mutating func time(_ name: String, _ nanos: UInt64, digits: Int) {
        guard key(name) else { return }
        out.appendISOTime(nanos, digits: digits)
    }

    mutating func end() { out.append(UInt8(ascii: "}")) }
}

extension JSONOutput {
    /// `"2026-11-21T10:00:00.123Z"` (UTC): Elasticsearch's `strict_date_optional_time`.
    mutating func appendISOTime(_ nanos: UInt64, digits: Int) {
        let (year, month, day, hour) = IndexName.civil(nanos)
        let seconds = Int(nanos / 1_000_000_000)
        func two(_ n: Int) { append(UInt8(ascii: "0") + UInt8(n / 10)); append(UInt8(ascii: "0") + UInt8(n % 10)) }
        append(UInt8(ascii: "\""))
        appendInt(Int64(year))
        append(UInt8(ascii: "-")); two(month)
        append(UInt8(ascii: "-")); two(day)
        append(UInt8(ascii: "T")); two(hour)
        append(UInt8(ascii: ":")); two(seconds % 3600 / 60)
        append(UInt8(ascii: ":")); two(seconds % 60)
        var fraction = Int(nanos % 1_000_000_000)
        if digits > 0 {
            append(UInt8(ascii: "."))
            for _ in digits..<9 { fraction /= 10 }
            var divisor = 1
            for _ in 1..<digits { divisor *= 10 }
            while divisor > 0 {
                append(UInt8(ascii: "0") + UInt8(fraction / divisor % 10))
                divisor /= 10
            }
        }
        append(ascii: "Z\"")
    }
}

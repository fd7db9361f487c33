import SluiceCore

/// An index name that may carry the record's date in UTC: `siem-events-%{+yyyy.MM.dd}`
/// (the placeholder Logstash and Fluent Bit users know), and the Collector's
/// `logstash_format` suffix (`date_format` in strftime's `%Y.%m.%d`).
///
/// Rendered once per hour of record time and cached: records of one request almost
/// always share it.
struct IndexName: Sendable {
    enum Part: Sendable, Equatable {
        case literal(String)
        /// yyyy, yy, MM, dd, HH (Joda/Java names), or %Y %y %m %d %H (strftime).
        case year4, year2, month, day, hour
    }

    let parts: [Part]
    var hasDate: Bool { parts.contains { if case .literal = $0 { false } else { true } } }

    /// `template` with `%{+…}` placeholders, then `logstash` when enabled.
    init(_ template: String, logstash: ElasticsearchConfig.LogstashFormat = .init()) {
        var parts = Self.parse(template).parts
        if logstash.enabled {
            parts.append(.literal(logstash.prefixSeparator))
            parts += Self.strftime(logstash.dateFormat)
        }
        self.parts = parts
    }

    /// Why `template` cannot name an index, or nil.
    static func problem(_ template: String) -> String? {
        if let problem = parse(template).problem { return problem }
        let literal = parse(template).parts.compactMap { if case .literal(let s) = $0 { s } else { nil } }.joined()
        if literal != literal.lowercased() { return "'\(template)': Elasticsearch index names must be lowercase" }
        if let bad = literal.first(where: { "\\/*?\"<>| ,#:".contains($0) }) {
            return "'\(template)': Elasticsearch index names cannot contain '\(bad)'"
        }
        if let first = literal.first, "-_+".contains(first) { return "'\(template)': Elasticsearch index names cannot start with '\(first)'" }
        return nil
    }

    private static func parse(_ template: String) -> (parts: [Part], problem: String?) {
        var parts: [Part] = []
        var rest = Substring(template)
        while let open = rest.range(of: "%{") {
            if open.lowerBound > rest.startIndex { parts.append(.literal(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                return (parts, "'\(template)': a %{ without its closing }")
            }
            var pattern = rest[open.upperBound..<close]
            guard pattern.first == "+" else {
                return (parts, "'\(template)': only date placeholders like %{+yyyy.MM.dd} are supported in index names; for a field of the record use logs_dynamic_index")
            }
            pattern = pattern.dropFirst()
            // Joda tokens; anything else in the pattern is copied.
            var literal = ""
            var i = pattern.startIndex
            while i < pattern.endIndex {
                let tail = pattern[i...]
                let tokens: [(String, Part)] = [("yyyy", .year4), ("YYYY", .year4), ("yy", .year2), ("MM", .month), ("dd", .day), ("HH", .hour)]
                if let (token, part) = tokens.first(where: { tail.hasPrefix($0.0) }) {
                    if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
                    parts.append(part)
                    i = pattern.index(i, offsetBy: token.count)
                } else {
                    if pattern[i].isLetter { return (parts, "'\(template)': '\(pattern[i])' is not a date letter here; use yyyy, yy, MM, dd and HH") }
                    literal.append(pattern[i])
                    i = pattern.index(after: i)
                }
            }
            if !literal.isEmpty { parts.append(.literal(literal)) }
            rest = rest[rest.index(after: close)...]
        }
        if !rest.isEmpty { parts.append(.literal(String(rest))) }
        return (parts, nil)
    }

    private static func strftime(_ format: String) -> [Part] {
        var parts: [Part] = []
        var literal = ""
        var chars = format.makeIterator()
        while let c = chars.next() {
            guard c == "%", let spec = chars.next() else { literal.append(c); continue }
            let part: Part? = switch spec {
            case "Y": .year4
            case "y": .year2
            case "m": .month
            case "d": .day
            case "H": .hour
            default: nil
            }
            if let part {
                if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
                parts.append(part)
            } else {
                literal.append(c)
                literal.append(spec)
            }
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        return parts
    }

    /// The name for a record at `nanos` since the epoch.
    func render(_ nanos: UInt64) -> String {
        guard hasDate else { return parts.map { if case .literal(let s) = $0 { s } else { "" } }.joined() }
        let (year, month, day, hour) = Self.civil(nanos)
        var out = ""
        for part in parts {
            switch part {
            case .literal(let s): out += s
            case .year4: out += String(year)
            case .year2: out += Self.two(year % 100)
            case .month: out += Self.two(month)
            case .day: out += Self.two(day)
            case .hour: out += Self.two(hour)
            }
        }
        return out
    }

    private static func two(_ n: Int) -> String { n < 10 ? "0\(n)" : String(n) }

    /// The UTC calendar date and hour of a time (days to civil date: the
    /// proleptic Gregorian calendar, computed in 400-year eras).
    static func civil(_ nanos: UInt64) -> (year: Int, month: Int, day: Int, hour: Int) {
        let seconds = Int(nanos / 1_000_000_000)
        let days = seconds / 86_400
        let hour = seconds % 86_400 / 3600
        let z = days + 719_468
        let era = z / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day, hour)
    }
}

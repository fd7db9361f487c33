import SluiceCore
import SluiceNet
import SluiceOTLP

/// `redaction`: removes attributes that are not allowed and masks values that look
/// like personal or secret data, in every attribute list of a batch (resources,
/// scopes, log records, spans and their events and links, metric data points),
/// nested maps and arrays included, and in log bodies.
///
/// The Collector's rules run as there: ignored keys pass untouched, keys not
/// allowed are removed, values matching `allowed_values` are kept, values under
/// `blocked_key_patterns` are masked whole, and the parts of values matching
/// `blocked_values` become `****` (or their `hash_function` hex). Sluice's
/// detectors then mask what they find as `[REDACTED:<detector>]`, or with a
/// `hash_function` `[REDACTED:<detector>:<hex>]` of the normalized value (digits of
/// a card, lowercase email), so one card or address still correlates across events.
///
/// https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/processor/redactionprocessor
public struct RedactionProcessorFactory: ProcessorFactory {
    public let type = "redaction"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Processor)? {
        guard let settings = RedactionConfig.read(config) else { return nil }
        return RedactionProcessor(id: id, settings: settings, metrics: context.metrics)
    }
}

final class RedactionProcessor: Processor {
    let id: ComponentID
    let settings: RedactionConfig
    let scanner: SensitiveDataScanner
    /// Whether any key rule is configured: most configurations have none, and the
    /// per-attribute checks then cost one branch.
    private let checksIgnoredKeys: Bool
    private let checksBlockedKeys: Bool
    /// Masked values by what found them: each detector, then `blocked_value`, `blocked_key`.
    private let maskedCounters: [Counter]
    private let removedCounter: Counter

    static let blockedValueSlot = SensitiveKind.allCases.count
    static let blockedKeySlot = SensitiveKind.allCases.count + 1

    init(id: ComponentID, settings: RedactionConfig, metrics: MetricsRegistry) {
        self.id = id
        self.settings = settings
        scanner = SensitiveDataScanner(enabled: settings.detectors)
        checksIgnoredKeys = !settings.ignoredKeys.isEmpty || !settings.ignoredKeyPatterns.isEmpty
        checksBlockedKeys = !settings.blockedKeyPatterns.isEmpty
        let labels = SensitiveKind.allCases.map(\.rawValue) + ["blocked_value", "blocked_key"]
        maskedCounters = labels.map {
            metrics.counter("sluice_redaction_masked_values_total", "Values (or parts of values) the redaction processor masked, by what found them.",
                            labels: [("processor", id.description), ("detector", $0)])
        }
        removedCounter = metrics.counter("sluice_redaction_removed_attributes_total", "Attributes the redaction processor removed because allowed_keys does not list them.",
                                         labels: [("processor", id.description)])
    }

    func process(_ batch: OTLPBatch) -> ProcessOutcome {
        var tally = Tally()
        do {
            try batch.edit { editor in
                try editor.forEachResource { try redactAttributes($0, &tally) }
                try editor.forEachScope { try redactAttributes($0, &tally) }
                try editor.forEachLogRecord { record in
                    try redactAttributes(record.attributes, &tally)
                    if let body = record.body { try redactBody(body, summaryInto: record.attributes, &tally) }
                }
                try editor.forEachSpan { span in
                    try redactAttributes(span.attributes, &tally)
                    try span.forEachEvent { try redactAttributes($0, &tally) }
                    try span.forEachLink { try redactAttributes($0, &tally) }
                }
                try editor.forEachDataPoint { try redactAttributes($0.attributes, &tally) }
            }
        } catch {
            return .refuse(.memoryLimit, retryAfter: .seconds(1))
        }
        tally.report(maskedCounters, removedCounter)
        return .pass(dropped: 0)
    }

    // MARK: Attribute lists

    private func redactAttributes(_ list: AttributesEditor, _ tally: inout Tally) throws(OTLPEditError) {
        let count = list.count
        guard count > 0 else { return }
        var summary = ListSummary(keepKeys: settings.summary == .debug)
        var removals: [Int] = []
        for i in 0..<count {
            let pair = list.view[i]
            let key = pair.key.utf8
            if isIgnored(key) { summary.ignored += 1; continue }
            if !settings.allowAllKeys, !settings.allowedKeys.contains(key) {
                removals.append(i)
                summary.record(.redacted, key)
                continue
            }
            guard let valueView = pair.value else { continue }
            let outcome: Outcome
            if !checksBlockedKeys, case .string(let text) = valueView.value {
                // The common case: a string is given an editor only when something
                // in it is masked.
                outcome = try redactText(text.utf8, into: { () throws(OTLPEditError) in try list.value(at: i) }, &tally)
            } else {
                outcome = try redact(list.value(at: i), key: key, removesUnallowedKeys: false, path: nil, &tally, &summary)
            }
            switch outcome {
            case .masked: summary.record(.masked, key)
            case .allowed: summary.record(.allowed, key)
            case .unchanged: break
            }
        }
        for i in removals.reversed() { list.remove(at: i) }
        tally.removed += removals.count
        try summary.write(into: list, summary: settings.summary, body: false)
    }

    /// A log body: strings and other scalars checked as text (as the Collector reads
    /// a body), maps entry by entry with the key rules, allowed keys included.
    private func redactBody(_ body: AnyValueEditor, summaryInto attributes: AttributesEditor, _ tally: inout Tally) throws(OTLPEditError) {
        var summary = ListSummary(keepKeys: settings.summary == .debug)
        switch body.view.value {
        case .kvlist, .array:
            _ = try redact(body, key: nil, removesUnallowedKeys: true, path: "", &tally, &summary)
        case .empty, .bytes:
            break
        default:
            switch try redactScalar(body, body.view.value, asText: true, &tally) {
            case .masked: summary.record(.masked, "body")
            case .allowed: summary.record(.allowed, "body")
            case .unchanged: break
            }
        }
        try summary.write(into: attributes, summary: settings.summary, body: true)
    }

    enum Outcome { case unchanged, masked, allowed }

    /// One value under `key` (nil for array elements and a body). Nested maps apply
    /// the key rules to their entries; `path` is where a body's entries are, for the
    /// debug summary (nil inside attribute values, which are summarized by their key).
    private func redact(_ value: AnyValueEditor, key: UnsafeBufferPointer<UInt8>?, removesUnallowedKeys: Bool, path: String?,
                        _ tally: inout Tally, _ summary: inout ListSummary) throws(OTLPEditError) -> Outcome {
        let content = value.view.value
        switch content {
        case .array:
            var changed = false
            for (index, element) in value.elements.enumerated() {
                let elementPath = path.map { "\($0.isEmpty ? "" : "\($0).")[\(index)]" }
                let outcome = try redact(element, key: nil, removesUnallowedKeys: removesUnallowedKeys, path: elementPath, &tally, &summary)
                if outcome == .masked { changed = true }
                if let elementPath, !isContainer(element.view) { summary.recordPath(outcome, elementPath) }
            }
            return changed ? .masked : .unchanged
        case .kvlist:
            guard let map = value.map else { return .unchanged }
            var changed = false
            var removals: [Int] = []
            for i in 0..<map.count {
                let pair = map.view[i]
                let entryKey = pair.key.utf8
                let entryPath = path.map { $0.isEmpty ? pair.key.string : "\($0).\(pair.key.string)" }
                if isIgnored(entryKey) {
                    if path != nil { summary.ignored += 1 }
                    continue
                }
                if removesUnallowedKeys, !settings.allowAllKeys, !settings.allowedKeys.contains(entryKey) {
                    removals.append(i)
                    if let entryPath { summary.recordPath(.unchanged, entryPath, redacted: true) }
                    continue
                }
                guard pair.value != nil else { continue }
                let outcome = try redact(map.value(at: i), key: entryKey, removesUnallowedKeys: removesUnallowedKeys, path: entryPath, &tally, &summary)
                if outcome == .masked { changed = true }
                if let entryPath, !isContainer(map.view[i].value) { summary.recordPath(outcome, entryPath) }
            }
            for i in removals.reversed() { map.remove(at: i) }
            tally.removed += removals.count
            return changed || !removals.isEmpty ? .masked : .unchanged
        case .empty, .bytes:
            return .unchanged
        default:
            if checksBlockedKeys, let key, isBlockedKey(key) {
                if !settings.allowedValues.isEmpty, settings.allowedValues.contains(where: { $0.matches(value.view.stringValue) }) { return .allowed }
                try maskWhole(value)
                tally.counts[RedactionProcessor.blockedKeySlot] += 1
                return .masked
            }
            return try redactScalar(value, content, asText: path != nil || settings.redactAllTypes, &tally)
        }
    }

    private func isContainer(_ value: AnyValueView?) -> Bool {
        switch value?.value {
        case .array?, .kvlist?: true
        default: false
        }
    }

    /// A string (or, with `asText`, an int, double or bool as its text): masks what
    /// `blocked_values` and the detectors find.
    private func redactScalar(_ value: AnyValueEditor, _ content: AnyValueView.Value, asText: Bool, _ tally: inout Tally) throws(OTLPEditError) -> Outcome {
        switch content {
        case .string(let s):
            return try redactText(s.utf8, into: { value }, &tally)
        case .int, .double, .bool:
            guard asText else { return .unchanged }
            let text = Array(value.view.stringValue.utf8)
            return try text.withUnsafeBufferPointer { bytes throws(OTLPEditError) in try redactText(bytes, into: { value }, &tally) }
        default:
            return .unchanged
        }
    }

    /// `value` is asked for only when the text changes.
    private func redactText(_ text: UnsafeBufferPointer<UInt8>, into value: () throws(OTLPEditError) -> AnyValueEditor,
                            _ tally: inout Tally) throws(OTLPEditError) -> Outcome {
        if !settings.allowedValues.isEmpty {
            let string = String(decoding: text, as: UTF8.self)
            if settings.allowedValues.contains(where: { $0.matches(string) }) { return .allowed }
        }
        guard let masked = mask(text, &tally) else { return .unchanged }
        let editor = try value()
        try masked.withUnsafeBufferPointer { bytes throws(OTLPEditError) in try editor.setString(bytes) }
        return .masked
    }

    /// The text with every match masked; nil when nothing matched (and then nothing
    /// was allocated unless `blocked_values` are configured).
    func mask(_ text: UnsafeBufferPointer<UInt8>, _ tally: inout Tally) -> [UInt8]? {
        var matches: [Match] = []
        if !settings.blockedValues.isEmpty {
            let string = String(decoding: text, as: UTF8.self)
            for pattern in settings.blockedValues {
                for found in string.matches(of: pattern.regex) where !found.range.isEmpty {
                    let start = string.utf8.distance(from: string.startIndex, to: found.range.lowerBound)
                    let end = string.utf8.distance(from: string.startIndex, to: found.range.upperBound)
                    matches.append(Match(range: start..<end, kind: nil))
                }
            }
        }
        scanner.scan(text) { range, kind in matches.append(Match(range: range, kind: kind)) }
        guard !matches.isEmpty else { return nil }
        matches.sort { $0.range.lowerBound < $1.range.lowerBound }
        var out: [UInt8] = []
        out.reserveCapacity(text.count + 16)
        var position = 0
        for match in matches {
            // Overlaps: the earlier match wins and the later is skipped (a
            // blocked_values match and a detector on the same text).
            guard match.range.lowerBound >= position else { continue }
            out.append(contentsOf: text[position..<match.range.lowerBound])
            let part = UnsafeBufferPointer(rebasing: text[match.range])
            if let kind = match.kind {
                tally.counts[kind.index] += 1
                appendDetectorMask(kind, part, to: &out)
            } else {
                tally.counts[RedactionProcessor.blockedValueSlot] += 1
                out.append(contentsOf: settings.digest.map { $0.hex(UnsafeRawBufferPointer(part)) } ?? Self.fixedMask)
            }
            position = match.range.upperBound
        }
        out.append(contentsOf: text[position...])
        return out
    }

    struct Match {
        let range: Range<Int>
        /// nil for a `blocked_values` match.
        let kind: SensitiveKind?
    }

    /// The Collector's mask for blocked values and keys.
    static let fixedMask = Array("****".utf8)

    /// `[REDACTED:email]`, or `[REDACTED:email:<hex>]` with a hash function.
    private func appendDetectorMask(_ kind: SensitiveKind, _ part: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        out.append(contentsOf: "[REDACTED:".utf8)
        out.append(contentsOf: kind.rawValue.utf8)
        if let digest = settings.digest {
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: digest.hex(Self.normalized(kind, part)))
        }
        out.append(UInt8(ascii: "]"))
    }

    /// The form a value is hashed in, so one card or address written two ways
    /// correlates: digits only for cards, SSNs and phones (`+` kept), lowercase
    /// emails, uppercase IBANs without spaces.
    static func normalized(_ kind: SensitiveKind, _ part: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        switch kind {
        case .card, .ssn: return part.filter(Bytes.isDigit)
        case .phone: return part.filter { Bytes.isDigit($0) || $0 == UInt8(ascii: "+") }
        case .email: return part.map { Bytes.isUpper($0) ? $0 | 0x20 : $0 }
        case .iban: return part.compactMap { $0 == UInt8(ascii: " ") ? nil : (Bytes.isLower($0) ? $0 & 0xDF : $0) }
        default: return Array(part)
        }
    }

    /// A value under a blocked key: `****`, or the hash of its text.
    private func maskWhole(_ value: AnyValueEditor) throws(OTLPEditError) {
        let replacement: [UInt8]
        if let digest = settings.digest {
            var text = value.view.stringValue
            replacement = text.withUTF8 { digest.hex(UnsafeRawBufferPointer($0)) }
        } else {
            replacement = Self.fixedMask
        }
        try replacement.withUnsafeBufferPointer { bytes throws(OTLPEditError) in try value.setString(bytes) }
    }

    private func isIgnored(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
        checksIgnoredKeys && (settings.ignoredKeys.contains(key) || settings.ignoredKeyPatterns.contains { $0.matches(key) })
    }

    private func isBlockedKey(_ key: UnsafeBufferPointer<UInt8>) -> Bool {
        checksBlockedKeys && settings.blockedKeyPatterns.contains { $0.matches(key) }
    }
}

/// What one batch masked and removed, added to the counters once per batch.
struct Tally {
    var counts = [Int](repeating: 0, count: SensitiveKind.allCases.count + 2)
    var removed = 0

    func report(_ counters: [Counter], _ removedCounter: Counter) {
        for (counter, n) in zip(counters, counts) where n > 0 { counter.add(n) }
        if removed > 0 { removedCounter.add(removed) }
    }
}

/// What the processor did to one attribute list (or one body), for the
/// `redaction.*` summary attributes.
struct ListSummary {
    enum Kind { case redacted, masked, allowed }

    let keepKeys: Bool
    var redacted: [String] = [], masked: [String] = [], allowed: [String] = []
    var redactedCount = 0, maskedCount = 0, allowedCount = 0
    var ignored = 0

    init(keepKeys: Bool) { self.keepKeys = keepKeys }

    mutating func record(_ kind: Kind, _ key: UnsafeBufferPointer<UInt8>) {
        record(kind, keepKeys ? String(decoding: key, as: UTF8.self) : "")
    }

    mutating func record(_ kind: Kind, _ key: String) {
        switch kind {
        case .redacted: redactedCount += 1; if keepKeys { redacted.append(key) }
        case .masked: maskedCount += 1; if keepKeys { masked.append(key) }
        case .allowed: allowedCount += 1; if keepKeys { allowed.append(key) }
        }
    }

    /// A body entry's outcome, by its path (`user.email`, `items.[0]`).
    mutating func recordPath(_ outcome: RedactionProcessor.Outcome, _ path: String, redacted: Bool = false) {
        if redacted { record(.redacted, path); return }
        switch outcome {
        case .masked: record(.masked, path)
        case .allowed: record(.allowed, path)
        case .unchanged: break
        }
    }

    /// Adds the counts (`info`) and keys (`debug`) to `list`, merged with what an
    /// earlier redaction processor wrote there, as the Collector does.
    func write(into list: AttributesEditor, summary: RedactionConfig.Summary, body: Bool) throws(OTLPEditError) {
        guard summary != .silent else { return }
        typealias K = RedactionSummaryKeys
        try add(list, body ? K.bodyRedactedKeys : K.redactedKeys, body ? K.bodyRedactedCount : K.redactedCount, redacted, redactedCount, summary)
        try add(list, body ? K.bodyMaskedKeys : K.maskedKeys, body ? K.bodyMaskedCount : K.maskedCount, masked, maskedCount, summary)
        try add(list, body ? K.bodyAllowedKeys : K.allowedKeys, body ? K.bodyAllowedCount : K.allowedCount, allowed, allowedCount, summary)
        try add(list, nil, body ? K.bodyIgnoredCount : K.ignoredCount, [], ignored, summary)
    }

    private func add(_ list: AttributesEditor, _ keysKey: String?, _ countKey: String, _ keys: [String], _ count: Int,
                     _ summary: RedactionConfig.Summary) throws(OTLPEditError) {
        guard count > 0 else { return }
        if summary == .debug, let keysKey {
            var all = keys
            if let i = list.index(of: keysKey), case .string(let existing)? = list.view[i].value?.value, !existing.isEmpty {
                all += existing.string.split(separator: ",").map(String.init)
            }
            try list.upsert(keysKey, .text(all.sorted().joined(separator: ",")))
        }
        var total = Int64(count)
        if let i = list.index(of: countKey), case .int(let existing)? = list.view[i].value?.value { total += existing }
        try list.upsert(countKey, .int(total))
    }
}

import SluiceCore
import SluiceNet
import SluiceOTLP

/// The Collector's attribute actions (its `coreinternal/attraction`), shared by the
/// `attributes` processor (`actions:`) and the `resource` processor (`attributes:`):
/// `insert`, `update`, `upsert`, `delete`, `hash`, `extract`, `convert`, run in the
/// order written on one attribute list.
///
/// https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/processor/attributesprocessor
struct AttributeAction: Sendable {
    enum Kind: String, CaseIterable, Sendable {
        case insert, update, upsert, delete, hash, extract, convert
    }

    enum Source: Sendable {
        case value(OTLPValue)
        case attribute(String)
    }

    enum ConvertTarget: String, CaseIterable, Sendable { case int, double, string }

    let kind: Kind
    let key: String?
    /// `delete`/`hash`: every key it matches; `extract`: the pattern over the value.
    let pattern: ConfigPattern?
    let source: Source?
    let convertTo: ConvertTarget?
}

/// An ordered list of actions, read from configuration and applied to attribute lists.
struct AttributeActions: Sendable {
    let actions: [AttributeAction]

    /// The SHA-256 of the `hash` action (the Collector's since its
    /// `coreinternal.attraction.hash.sha256` gate became the default).
    static let hashDigest = ValueDigest(.sha256)

    /// Reads the list under `key` (`actions` or `attributes`). Each problem names the
    /// action's index and key; nil when any action is wrong.
    static func read(_ config: ConfigMap, key: String) -> AttributeActions? {
        guard let sections = config.sections(key) else {
            config.report(key, "missing: list at least one action (insert, update, upsert, delete, hash, extract or convert)")
            return nil
        }
        if sections.isEmpty { config.report(key, "is empty: list at least one action") }
        let before = config.diagnostics.all.count
        let actions = sections.compactMap(readAction)
        guard config.diagnostics.all.count == before, !sections.isEmpty else { return nil }
        return AttributeActions(actions: actions)
    }

    private static func readAction(_ section: ConfigMap) -> AttributeAction? {
        let before = section.diagnostics.all.count
        let names = AttributeAction.Kind.allCases.map(\.rawValue)
        guard let written = section.string("action") else {
            section.report("action", "missing: set action to one of \(names.joined(separator: ", "))")
            section.accept("key", "value", "from_attribute", "from_context", "pattern", "converted_type")
            return nil
        }
        // The Collector takes the action in either case (INSERT or insert).
        guard let kind = AttributeAction.Kind(rawValue: written.lowercased()) else {
            let hint = closestMatch(to: written.lowercased(), in: names).map { " (did you mean \($0)?)" } ?? ""
            section.report("action", "'\(written)' is not one of \(names.joined(separator: ", "))\(hint)")
            section.accept("key", "value", "from_attribute", "from_context", "pattern", "converted_type")
            return nil
        }
        let key = section.string("key").flatMap { $0.isEmpty ? nil : $0 }
        let value = section.has("value") ? section.value("value") : nil
        let fromAttribute = section.string("from_attribute").flatMap { $0.isEmpty ? nil : $0 }
        if section.has("from_context") {
            _ = section.string("from_context")
            section.report("from_context", "Sluice's receivers do not pass client metadata or authentication attributes to processors (the Collector's include_metadata), so there is nothing to read; set value or from_attribute instead")
        }
        let sources = [value != nil, fromAttribute != nil, section.has("from_context")].filter { $0 }.count
        let hasPattern = section.has("pattern")
        let pattern = section.pattern("pattern")
        let convertedType = section.has("converted_type") ? section.string("converted_type") : nil

        func refuse(_ field: String, _ why: String) { section.report(field, "\(kind.rawValue) \(why)") }
        switch kind {
        case .insert, .update, .upsert:
            if key == nil { section.report("key", "missing: \(kind.rawValue) needs the key to set") }
            if sources == 0 { section.report("action", "\(kind.rawValue) needs one of value, from_attribute or from_context") }
            if sources > 1 { section.report("action", "\(kind.rawValue) takes one of value, from_attribute or from_context, not several") }
            if hasPattern { refuse("pattern", "does not use pattern; remove it") }
            if convertedType != nil { refuse("converted_type", "does not use converted_type; remove it") }
        case .delete, .hash:
            if key == nil, !hasPattern { section.report("key", "missing: \(kind.rawValue) needs key, pattern (a regular expression over keys) or both") }
            if value != nil { refuse("value", "does not use value; remove it") }
            if fromAttribute != nil { refuse("from_attribute", "does not use from_attribute; remove it") }
            if convertedType != nil { refuse("converted_type", "does not use converted_type; remove it") }
        case .extract:
            if key == nil { section.report("key", "missing: extract needs the key whose value the pattern reads") }
            if sources > 0 { section.report("action", "extract takes no value, from_attribute or from_context; the new attributes come from the pattern's named groups") }
            if convertedType != nil { refuse("converted_type", "does not use converted_type; remove it") }
            if !hasPattern {
                section.report("pattern", "missing: extract needs a pattern with named groups, like ^(?P<scheme>\\w+)://(?P<host>[^/]+)")
            } else if let pattern {
                let groups = pattern.groupNames
                if groups.isEmpty { section.report("pattern", "has no named groups; each group names the attribute it extracts, like (?P<host>[^/]+)") }
                if groups.contains(where: { $0 == nil }) { section.report("pattern", "has a group without a name; name every group, like (?P<host>…), or make it non-capturing with (?:…)") }
            }
        case .convert:
            if key == nil { section.report("key", "missing: convert needs the key to convert") }
            if sources > 0 || hasPattern { section.report("action", "convert takes no value, from_attribute, from_context or pattern; only key and converted_type") }
            if convertedType == nil {
                section.report("converted_type", "missing: convert needs converted_type: int, double or string")
            } else if let convertedType, AttributeAction.ConvertTarget(rawValue: convertedType) == nil {
                section.report("converted_type", "'\(convertedType)' is not one of int, double, string")
            }
        }
        section.finish()
        guard section.diagnostics.all.count == before else { return nil }
        return AttributeAction(kind: kind, key: key, pattern: pattern, source: value.map(AttributeAction.Source.value) ?? fromAttribute.map(AttributeAction.Source.attribute),
                               convertTo: convertedType.flatMap(AttributeAction.ConvertTarget.init))
    }

    /// Runs every action on `attributes`, in order.
    func apply(to attributes: AttributesEditor) throws(OTLPEditError) {
        for action in actions {
            switch action.kind {
            case .insert:
                guard let key = action.key, let value = sourceValue(action, attributes) else { continue }
                try attributes.insert(key, value)
            case .update:
                guard let key = action.key, let value = sourceValue(action, attributes) else { continue }
                try attributes.update(key, value)
            case .upsert:
                guard let key = action.key, let value = sourceValue(action, attributes) else { continue }
                try attributes.upsert(key, value)
            case .delete:
                if let key = action.key { attributes.remove(key) }
                if let pattern = action.pattern { attributes.removeAll { pattern.matches($0.key.utf8) } }
            case .hash:
                for i in matchingIndices(action, attributes) { try Self.hash(attributes.value(at: i)) }
            case .extract:
                try extract(action, attributes)
            case .convert:
                guard let key = action.key, let target = action.convertTo, let i = attributes.index(of: key) else { continue }
                try Self.convert(attributes.value(at: i), to: target)
            }
        }
    }

    private func sourceValue(_ action: AttributeAction, _ attributes: AttributesEditor) -> OTLPValue? {
        switch action.source {
        case .value(let value): return value
        case .attribute(let name):
            guard let i = attributes.index(of: name) else { return nil }
            return attributes.view[i].value.map(OTLPValue.init) ?? .empty
        case nil: return nil
        }
    }

    /// The attribute `key` names and every attribute `pattern` matches, once each.
    private func matchingIndices(_ action: AttributeAction, _ attributes: AttributesEditor) -> [Int] {
        var indices: [Int] = []
        let view = attributes.view
        for i in view.indices {
            let key = view[i].key
            if let name = action.key, key.equals(name) { indices.append(i); continue }
            if let pattern = action.pattern, pattern.matches(key.utf8) { indices.append(i) }
        }
        return indices
    }

    /// The Collector's hash: SHA-256 in lowercase hex of a string's bytes, a bool as
    /// one byte (1 or 0), an int or a double's bits as 8 little-endian bytes. Other
    /// kinds (bytes, arrays, maps, empty) become the empty string, as there.
    static func hash(_ value: AnyValueEditor) throws(OTLPEditError) {
        let hex: [UInt8]
        switch value.view.value {
        case .string(let s): hex = hashDigest.hex(UnsafeRawBufferPointer(s.utf8))
        case .bool(let b): hex = hashDigest.hex([b ? 1 : 0])
        case .int(let i): hex = withUnsafeBytes(of: UInt64(bitPattern: i).littleEndian) { hashDigest.hex($0) }
        case .double(let d): hex = withUnsafeBytes(of: d.bitPattern.littleEndian) { hashDigest.hex($0) }
        default: hex = []
        }
        try value.set(.string(hex))
    }

    /// `extract`: the pattern's named groups become attributes (set whether or not
    /// they exist) when the value is a string the pattern matches.
    private func extract(_ action: AttributeAction, _ attributes: AttributesEditor) throws(OTLPEditError) {
        guard let key = action.key, let pattern = action.pattern, let i = attributes.index(of: key),
              case .string(let text)? = attributes.view[i].value?.value else { return }
        guard let match = text.string.firstMatch(of: pattern.regex) else { return }
        for group in match.output.dropFirst() {
            guard let name = group.name else { continue }
            try attributes.upsert(name, .string(group.substring.map { Array($0.utf8) } ?? []))
        }
    }

    /// The Collector's conversions: a value that cannot be converted stays as it is.
    static func convert(_ value: AnyValueEditor, to target: AttributeAction.ConvertTarget) throws(OTLPEditError) {
        let view = value.view
        switch (target, view.value) {
        case (.string, .string): return
        case (.string, _): try value.set(.text(view.stringValue))
        case (.int, .double(let d)):
            guard d.isFinite, d > -9.3e18, d < 9.3e18, let i = Int64(exactly: d.rounded(.towardZero)) else { return }
            try value.set(.int(i))
        case (.int, .bool(let b)): try value.set(.int(b ? 1 : 0))
        case (.int, .string(let s)):
            guard let i = Int64(s.string) else { return }
            try value.set(.int(i))
        case (.double, .int(let i)): try value.set(.double(Double(i)))
        case (.double, .bool(let b)): try value.set(.double(b ? 1 : 0))
        case (.double, .string(let s)):
            guard let d = Double(s.string) else { return }
            try value.set(.double(d))
        default: return
        }
    }
}

import SluiceCore
import SluiceOTLP

/// The `include` / `exclude` blocks of the `attributes` processor (the Collector's
/// `filterconfig.MatchProperties`): which records, spans or data points the actions
/// run on. Every property given must match (and), any entry of a list matches for
/// `services`, `span_names`, `log_bodies`, `log_severity_texts`, `metric_names` and `libraries`,
/// every entry for `attributes` and `resources`.
///
/// https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/internal/filter/filterconfig
struct MatchProperties: Sendable {
    enum Matcher: Sendable {
        case strict(String)
        case regexp(ConfigPattern)

        func matches(_ text: String) -> Bool {
            switch self {
            case .strict(let expected): text == expected
            case .regexp(let pattern): pattern.matches(text)
            }
        }
    }

    struct AttributeCondition: Sendable {
        let key: String
        /// Strict: the value the attribute must equal (type and value); nil means the
        /// key must be present.
        let strictValue: OTLPValue?
        /// Regexp: the pattern the value's text form must match.
        let pattern: ConfigPattern?
    }

    struct LibraryCondition: Sendable {
        let name: Matcher
        let version: Matcher?
    }

    var services: [Matcher] = []
    var spanNames: [Matcher] = []
    var logBodies: [Matcher] = []
    var severityTexts: [Matcher] = []
    var metricNames: [Matcher] = []
    var libraries: [LibraryCondition] = []
    var attributes: [AttributeCondition] = []
    var resources: [AttributeCondition] = []

    /// The properties the Collector defines that Sluice does not match on; each is
    /// refused by name (a silently ignored condition would widen or narrow what is
    /// changed without a word).
    static let refused: [(key: String, why: String)] = [
        ("span_kinds", "match spans by span_names, attributes or resources instead"),
        ("log_severity_number", "match log records by log_severity_texts instead"),
    ]

    static func read(_ config: ConfigMap) -> MatchProperties? {
        let before = config.diagnostics.all.count
        let type = config.enumeration("match_type", ["strict", "regexp"])
        if type == nil, !config.has("match_type") {
            config.report("match_type", "missing: set match_type to strict or regexp")
        }
        let regexp = type == "regexp"
        if config.has("regexp") {
            // Cache settings for Go's regexp matcher; Sluice compiles each pattern once.
            config.keysWithoutEffect([("regexp", "patterns are compiled once when the configuration is read; there is no match cache to size")])
        }
        for (key, why) in refused where config.has(key) {
            config.accept(key)
            config.report(key, "is not supported by Sluice's attributes processor; \(why)")
        }

        func matcher(_ text: String, _ key: String) -> Matcher? {
            guard regexp else { return .strict(text) }
            do { return .regexp(try ConfigPattern(text)) } catch {
                config.report(key, "'\(text)' is not a valid regular expression (\(error))")
                return nil
            }
        }
        func matchers(_ key: String) -> [Matcher] {
            (config.stringList(key) ?? []).compactMap { matcher($0, key) }
        }
        func conditions(_ key: String) -> [AttributeCondition] {
            guard let sections = config.sections(key) else { return [] }
            return sections.compactMap { section in
                defer { section.finish() }
                guard let name = section.string("key"), !name.isEmpty else {
                    section.report("key", "missing: each entry names the attribute key it tests")
                    return nil
                }
                guard section.has("value") else { return AttributeCondition(key: name, strictValue: nil, pattern: nil) }
                if regexp {
                    guard let pattern = section.pattern("value") else { return nil }
                    return AttributeCondition(key: name, strictValue: nil, pattern: pattern)
                }
                return AttributeCondition(key: name, strictValue: section.value("value"), pattern: nil)
            }
        }

        var properties = MatchProperties()
        properties.services = matchers("services")
        properties.spanNames = matchers("span_names")
        properties.logBodies = matchers("log_bodies")
        properties.severityTexts = matchers("log_severity_texts")
        properties.metricNames = matchers("metric_names")
        properties.attributes = conditions("attributes")
        properties.resources = conditions("resources")
        properties.libraries = (config.sections("libraries") ?? []).compactMap { section in
            defer { section.finish() }
            guard let name = section.string("name") else {
                section.report("name", "missing: each library entry names the instrumentation scope")
                return nil
            }
            guard let nameMatcher = matcher(name, "libraries") else { return nil }
            let version = section.string("version").flatMap { matcher($0, "libraries") }
            return LibraryCondition(name: nameMatcher, version: version)
        }
        config.finish()
        if properties.isEmpty, config.diagnostics.all.count == before {
            config.report("match_type", "no property to match: set at least one of services, resources, libraries, attributes, span_names, log_bodies, log_severity_texts, metric_names")
        }
        guard config.diagnostics.all.count == before else { return nil }
        return properties
    }

    var isEmpty: Bool {
        services.isEmpty && spanNames.isEmpty && logBodies.isEmpty && severityTexts.isEmpty && metricNames.isEmpty && libraries.isEmpty
            && attributes.isEmpty && resources.isEmpty
    }

    /// What one item offers to match against. A property about another signal's items
    /// (span_names for a log record) does not match.
    struct Item {
        var resource: ResourceView?
        var scope: ScopeView?
        var attributes: AttributesView
        var spanName: StringView?
        var logBody: AnyValueView??
        var severityText: StringView?
        var metricName: StringView?
    }

    func matches(_ item: Item) -> Bool {
        if !services.isEmpty {
            guard let service = item.resource?.attributes["service.name"]?.stringValue, services.contains(where: { $0.matches(service) }) else { return false }
        }
        if !spanNames.isEmpty {
            guard let name = item.spanName?.string, spanNames.contains(where: { $0.matches(name) }) else { return false }
        }
        if !logBodies.isEmpty {
            guard case .some(let body) = item.logBody else { return false }
            let text = body?.stringValue ?? ""
            guard logBodies.contains(where: { $0.matches(text) }) else { return false }
        }
        if !severityTexts.isEmpty {
            guard let severity = item.severityText?.string, severityTexts.contains(where: { $0.matches(severity) }) else { return false }
        }
        if !metricNames.isEmpty {
            guard let name = item.metricName?.string, metricNames.contains(where: { $0.matches(name) }) else { return false }
        }
        if !libraries.isEmpty {
            guard let scope = item.scope, libraries.contains(where: { library in
                library.name.matches(scope.name.string) && (library.version.map { $0.matches(scope.version.string) } ?? true)
            }) else { return false }
        }
        if !attributes.isEmpty, !Self.all(attributes, in: item.attributes) { return false }
        if !resources.isEmpty {
            guard let resource = item.resource, Self.all(resources, in: resource.attributes) else { return false }
        }
        return true
    }

    private static func all(_ conditions: [AttributeCondition], in list: AttributesView) -> Bool {
        conditions.allSatisfy { condition in
            guard let value = list[condition.key] else { return false }
            if let pattern = condition.pattern {
                switch value.value {
                case .array, .kvlist, .bytes, .empty: return false
                default: return pattern.matches(value.stringValue)
                }
            }
            guard let expected = condition.strictValue else { return true }
            return OTLPValue(value) == expected
        }
    }
}

/// `include` and `exclude` together: an item is changed when it matches `include`
/// (or there is none) and does not match `exclude`.
struct ItemSelection: Sendable {
    var include: MatchProperties?
    var exclude: MatchProperties?

    static func read(_ config: ConfigMap) -> ItemSelection? {
        let before = config.diagnostics.all.count
        let selection = ItemSelection(include: config.map("include").flatMap(MatchProperties.read),
                                      exclude: config.map("exclude").flatMap(MatchProperties.read))
        return config.diagnostics.all.count == before ? selection : nil
    }

    var selectsAll: Bool { include == nil && exclude == nil }

    func selects(_ item: MatchProperties.Item) -> Bool {
        if let include, !include.matches(item) { return false }
        if let exclude, exclude.matches(item) { return false }
        return true
    }
}

import Yams

/// Comparing two loads of the same section, for a configuration reload: a component
/// whose section says the same thing keeps running, whatever lines it moved to.
extension ConfigMap {
    /// The same keys with the same values (nested values compared as YAML nodes,
    /// which ignore positions). Key order does not count; a repeated key counts once,
    /// with the value that wins when the section is read.
    public func sameContent(as other: ConfigMap) -> Bool {
        func values(_ map: ConfigMap) -> [String: Node] {
            Dictionary(map.entries.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
        }
        return values(self) == values(other)
    }

    /// Whether any value in the section, at any depth, is `text`: how a reload finds
    /// the receivers that name an extension (`auth.authenticator: bearertokenauth`).
    public func mentions(_ text: String) -> Bool {
        func walk(_ node: Node) -> Bool {
            switch node {
            case .scalar(let scalar): scalar.string == text
            case .mapping(let mapping): mapping.contains { walk($0.value) }
            case .sequence(let sequence): sequence.contains { walk($0) }
            case .alias: false
            }
        }
        return entries.contains { walk($0.value) }
    }
}

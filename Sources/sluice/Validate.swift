import ArgumentParser
import Logging
import SluiceComponents
import SluiceCore

/// `sluice validate`: checks a configuration without starting anything.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check a configuration and print every problem (exit 1 if any).")

    @OptionGroup var options: ConfigOptions

    func run() throws {
        let config = options.load()
        config.diagnostics.filesMayBeAbsent = true
        // Components are built even when the file has other problems, so one run
        // reports every problem.
        Service.check(config, context: ComponentContext(logger: Logger(label: "sluice", factory: { _ in SwiftLogNoOpLogHandler() })))
        var errors = StandardError()
        for diagnostic in config.diagnostics.all { print(diagnostic, to: &errors) }
        for warning in config.diagnostics.warnings { print("warning: \(warning)", to: &errors) }
        if !config.diagnostics.isEmpty { throw ExitCode(1) }
        print("\(options.config): valid (\(config.pipelines.count) pipeline\(config.pipelines.count == 1 ? "" : "s"))")
    }
}

/// `sluice components`: the component types this build has.
struct Components: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the receivers, processors, exporters and extensions this build has.")

    func run() throws {
        let registry = ComponentRegistry.builtIn
        for kind in ComponentKind.allCases {
            print("\(kind.section):")
            for type in registry.types(kind) {
                let current = registry.deprecatedAliases[kind]?[type]
                print("  \(type)\(current.map { " (deprecated alias of \($0))" } ?? "")")
            }
        }
    }
}

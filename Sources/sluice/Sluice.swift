import ArgumentParser
import SluiceCore

@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "A collector sidecar: OTLP in, security tools out.",
        version: SluiceVersion.current,
        subcommands: [Run.self, Validate.self, Components.self, Replay.self, Convert.self, Verify.self],
        defaultSubcommand: Run.self
    )
}

/// Options every command that reads a configuration shares.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "The configuration file, in the OpenTelemetry Collector's format.")
    var config: String = "collector.yaml"

    @Option(name: .customLong("set"), help: "Override one setting, like the Collector's --set: exporters.file.path=/tmp/x (repeatable).")
    var overrides: [String] = []

    func load() -> CollectorConfig {
        CollectorConfig.load(path: config, overrides: overrides)
    }
}

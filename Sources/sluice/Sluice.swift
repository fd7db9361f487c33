import ArgumentParser
import SluiceCore

@main
struct Sluice: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "A collector sidecar: OTLP in, security tools out.",
        version: SluiceVersion.current,
        subcommands: [Convert.self]
    )
}

import ArgumentParser
import CSluiceShims
import Dispatch
import Foundation
import Logging
import SluiceComponents
import SluiceCore

/// `sluice [run] --config collector.yaml`: runs the collector until SIGTERM or SIGINT.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the collector (the default command).")

    @OptionGroup var options: ConfigOptions

    @Option(help: "Log format on stderr: json or text (overrides service.telemetry.logs.encoding).")
    var logFormat: String?

    @Option(help: "Folder for the file exporter's default output and dead-letter files.")
    var dataDirectory: String = "data"

    func run() async throws {
        // Decoded batches are large, short-lived allocations. With a fixed mmap
        // threshold they come from mmap and go back to the system when freed; glibc's
        // default raises the threshold after the first such free, after which freed
        // batches stay in the heap and the resident size follows the peak, not the
        // live data. Two malloc arenas are plenty for two event loops.
        _ = sluice_mallopt(Int32(SLUICE_M_MMAP_THRESHOLD), 128 * 1024)
        _ = sluice_mallopt(Int32(SLUICE_M_ARENA_MAX), 2)
        let config = options.load()
        let format: StructuredLogHandler.Format
        switch logFormat ?? (config.telemetry.logEncoding == "console" ? "text" : "json") {
        case "text", "console": format = .text
        case "json": format = .json
        default: throw ValidationError("--log-format must be json or text")
        }
        let level = Logger.Level(configName: config.telemetry.logLevel) ?? .info
        LoggingSystem.bootstrap { label in StructuredLogHandler(label: label, format: format, level: level) }
        let logger = Logger(label: "sluice")
        let context = ComponentContext(logger: logger, dataDirectory: dataDirectory)
        let built = Service.build(config, context: context)
        guard config.diagnostics.isEmpty, let service = built else {
            for diagnostic in config.diagnostics.all { logger.error("\(diagnostic)") }
            throw ExitCode(1)
        }
        let stop = ShutdownSignal()
        do {
            try await service.start()
        } catch {
            logger.error("cannot start", metadata: ["error": "\(error)"])
            await service.shutdown()
            throw ExitCode(1)
        }
        let signal = await stop.wait()
        logger.info("signal received", metadata: ["signal": "\(signal)"])
        await service.shutdown()
    }
}

/// Waits for SIGTERM (Kubernetes stopping the pod) or SIGINT.
final class ShutdownSignal {
    private let sources: [any DispatchSourceSignal]
    private let stream: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: String.self)
        var sources: [any DispatchSourceSignal] = []
        for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            let continuation = self.continuation
            source.setEventHandler { continuation.yield(name) }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    func wait() async -> String {
        for await name in stream { return name }
        return "end"
    }
}

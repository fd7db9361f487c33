import ArgumentParser
import CSluiceShims
import Dispatch
import Foundation
import Logging
import SluiceComponents
import SluiceCore

/// `sluice [run] --config collector.yaml`: runs the collector until SIGTERM or SIGINT,
/// reloading the configuration on SIGHUP or when the file's content changes.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the collector (the default command).")

    @OptionGroup var options: ConfigOptions

    @Option(help: "Log format on stderr: json or text (overrides service.telemetry.logs.encoding).")
    var logFormat: String?

    @Option(help: "Folder for the file exporter's default output and dead-letter files.")
    var dataDirectory: String = "data"

    @Option(help: "How often to look for a changed configuration file (a Kubernetes ConfigMap update), like 5s; 0 turns it off. SIGHUP reloads at any time.")
    var configPollInterval: String = "5s"

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
        for warning in config.diagnostics.warnings { logger.warning("\(warning)") }
        guard let poll = parseGoDuration(configPollInterval) else {
            throw ValidationError("--config-poll-interval must be a duration like 5s, or 0")
        }
        let watcher = ConfigFileWatcher(path: options.config)
        let events = ServiceSignals(watching: poll > .zero ? watcher : nil, every: poll)
        do {
            try await service.start()
        } catch {
            logger.error("cannot start", metadata: ["error": "\(error)"])
            await service.shutdown()
            throw ExitCode(1)
        }
        // One event at a time: a reload finishes before the next one (or the
        // shutdown) begins.
        for await event in events.stream {
            switch event {
            case .stop(let signal):
                logger.info("signal received", metadata: ["signal": "\(signal)"])
                await service.shutdown()
                return
            case .reload(let trigger):
                watcher.rebaseline()
                logger.info("reloading the configuration", metadata: ["trigger": "\(trigger)", "file": "\(watcher.resolvedPath)"])
                _ = await service.reload(options.load())
            }
        }
    }
}

/// What the run loop reacts to: SIGTERM (Kubernetes stopping the pod) or SIGINT
/// stop it; SIGHUP or a changed configuration file reload it.
final class ServiceSignals {
    enum Event { case stop(String), reload(String) }

    private let sources: [any DispatchSourceSignal]
    private let poller: Task<Void, Never>?
    let stream: AsyncStream<Event>

    init(watching watcher: ConfigFileWatcher?, every interval: Duration) {
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self)
        self.stream = stream
        var sources: [any DispatchSourceSignal] = []
        for (number, event) in [(SIGTERM, Event.stop("SIGTERM")), (SIGINT, .stop("SIGINT")), (SIGHUP, .reload("SIGHUP"))] {
            // Ignored first: SIGHUP's default action would end the process.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(event) }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
        poller = watcher.map { watcher in
            Task {
                for await _ in watcher.changes(every: interval) { continuation.yield(.reload("config file changed")) }
            }
        }
    }

    deinit {
        poller?.cancel()
        for source in sources { source.cancel() }
    }
}

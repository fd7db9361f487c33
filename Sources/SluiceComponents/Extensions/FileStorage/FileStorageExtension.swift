import Foundation
import SluiceCore

/// `file_storage`: where pipeline logs live on disk. As in the Collector, an
/// exporter opts in with `sending_queue: {storage: file_storage}`; in Sluice that puts
/// the whole pipeline's log on disk (docs/architecture.md: one log per pipeline, one cursor per
/// exporter), so a 2xx means the data survives a restart — and with `fsync: always`,
/// a power cut.
public struct FileStorageExtensionFactory: ExtensionFactory {
    public let type = "file_storage"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Extension)? {
        let before = config.diagnostics.all.count
        guard let settings = FileStorageSettings(config, dataDirectory: context.dataDirectory) else { return nil }
        guard config.diagnostics.all.count == before else { return nil }
        return FileStorageExtension(id: id, settings: settings)
    }
}

public struct FileStorageSettings: Sendable, Equatable {
    public var directory: String
    public var log = DiskLogSettings()

    init?(_ config: ConfigMap, dataDirectory: String) {
        directory = config.string("directory") ?? "\(dataDirectory)/storage"
        let interval = config.duration("fsync_interval") ?? .milliseconds(200)
        if interval <= .zero { config.report("fsync_interval", "must be greater than 0") }
        // The Collector's file_storage has `fsync: true|false`; Sluice also takes the
        // policy by name.
        switch config.string("fsync")?.lowercased() {
        case nil, "interval": log.fsync = .interval(interval)
        case "always", "true": log.fsync = .always
        case "never", "false": log.fsync = .never
        case let other?: config.report("fsync", "'\(other)' is not one of always, interval, never (or true/false)")
        }
        if let size = config.byteSize("max_size") {
            if size < 1 << 20 { config.report("max_size", "must be at least 1MiB") } else { log.maxSizeBytes = size }
        }
        if let direct = config.bool("direct_io") { log.directIO = direct }
        if let mode = config.enumeration("when_full", ["block", "drop_oldest"]) { log.whenFull = WhenFull(rawValue: mode)! }
        if let mode = config.fileMode("directory_permissions") { log.directoryMode = mode }
        config.keysWithoutEffect([
            ("timeout", "the disk log's lock is taken at once or the start fails, saying the directory is in use by another Sluice"),
            ("compaction", "segments are deleted once every exporter has delivered them; there is nothing to compact"),
            ("create_directory", "the directory is always created when missing (0700, or directory_permissions)"),
            ("recreate", "what the disk log holds at start is delivered, never discarded"),
        ])
        config.finish()
    }
}

final class FileStorageExtension: Extension, DiskStorageProvider {
    let id: ComponentID
    let settings: FileStorageSettings

    init(id: ComponentID, settings: FileStorageSettings) {
        self.id = id
        self.settings = settings
    }

    func start(health: HealthState) async throws {}
    func shutdown() async {}
}

/// An extension that can hold pipeline logs on disk.
protocol DiskStorageProvider: Sendable {
    var id: ComponentID { get }
    var settings: FileStorageSettings { get }
}

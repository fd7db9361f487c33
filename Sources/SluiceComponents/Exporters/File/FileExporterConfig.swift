import Foundation
import SluiceCore

/// `exporters.file`, with the Collector's names and meanings
/// (exporter/fileexporter, config.go and factory.go), plus Sluice's `fsync`,
/// `retry_on_failure` and `sending_queue`.
///
/// What the Collector does and Sluice keeps:
/// - without `rotation` the file is truncated at start unless `append: true`;
/// - with `rotation` (even an empty one) the file is continued across restarts and
///   rolled over by size, as the lumberjack logger the Collector uses does; the
///   Collector refuses `append` with `rotation`, Sluice takes it (it means the same).
/// - `max_days` is how long rotated files are kept, judged by the time in their
///   name, not a reason to rotate; `0` keeps them whatever their age.
struct FileExporterConfig: Sendable {
    enum Format: String, Sendable {
        /// One OTLP/JSON request per line.
        case json
        /// Each request's protobuf, after its length as a 4-byte big-endian integer.
        case proto
    }

    /// `rotation`, with lumberjack's defaults as the Collector sets them.
    struct Rotation: Sendable, Equatable {
        /// `max_megabytes`: the file is rolled over before a write would take it past
        /// this. lumberjack reads 0 as its default, 100.
        var maxBytes = 100 << 20
        /// `max_days`: rotated files older than this are deleted (0: never for age).
        var maxDays = 0
        /// `max_backups`: how many rotated files are kept, newest first (0: all).
        var maxBackups = 100
        /// `localtime`: the time in rotated names is local instead of UTC.
        var localTime = false
    }

    var path: String
    var format: Format = .json
    var append = false
    var rotation: Rotation?
    /// Read so Collector configs stay valid. Sluice writes every export straight to
    /// the file, so no acknowledged data waits in a buffer for the next flush.
    var flushInterval: Duration = .seconds(1)
    /// `fsync`: each export is on the disk before it counts as delivered.
    var fsync = false
    /// `compression: zstd`: each request is a zstd frame behind its length.
    var zstd = false
    /// `directory_permissions`: the mode of parent directories Sluice creates.
    var directoryMode: mode_t = POSIXFile.privateDirectoryMode
    /// `file_mode`: the mode of the files it writes (0600, as the Collector's
    /// file exporter creates them; 0640 lets a log shipper in the pod's group read).
    var fileMode: mode_t = POSIXFile.privateFileMode
    var retry = RetrySettings()
    var queue = QueueSettings()

    init(path: String) { self.path = path }

    /// `nil` when the section had errors; they are in `config.diagnostics`.
    init?(_ config: ConfigMap) {
        let before = config.diagnostics.all.count
        let path = config.string("path") ?? ""
        if path.isEmpty { config.report("path", "missing: set path to the file to write, like ./data/telemetry.jsonl") }
        self.init(path: path)

        if let v = config.enumeration("format", ["json", "proto"]) { format = Format(rawValue: v)! }
        if let v = config.bool("append") { append = v }
        if config.has("rotation") { rotation = Self.rotation(config.map("rotation")) }
        if let v = config.duration("flush_interval") {
            if v < .zero { config.report("flush_interval", "must not be negative") } else if v > .zero { flushInterval = v }
        }
        if let v = config.bool("fsync") { fsync = v }

        if let v = config.enumeration("compression", ["zstd", "none", ""]) { zstd = v == "zstd" }
        if config.has("encoding") {
            _ = config.string("encoding")
            config.report("encoding", "encoding extensions are not supported; use format: json or format: proto")
        }
        if let groupBy = config.map("group_by") {
            if groupBy.bool("enabled") == true {
                groupBy.report("enabled", "group_by is not supported by Sluice's file exporter; remove group_by or set enabled: false")
            }
            groupBy.accept("resource_attribute", "max_open_files")
            groupBy.finish()
        }
        // The Collector creates parent directories only when asked; Sluice always
        // does, so create_directory is read for validity only.
        _ = config.bool("create_directory")
        if let mode = config.fileMode("directory_permissions") { directoryMode = mode }
        if let mode = config.fileMode("file_mode") { fileMode = mode }

        retry = RetrySettings(config.map("retry_on_failure"))
        queue = QueueSettings(config.map("sending_queue"))
        config.finish()
        if config.diagnostics.all.count > before { return nil }
    }

    private static func rotation(_ config: ConfigMap?) -> Rotation {
        var rotation = Rotation()
        // `rotation:` with nothing under it turns rotation on with every default.
        guard let config else { return rotation }
        if let v = config.int("max_megabytes", min: 0, max: 1 << 20), v > 0 { rotation.maxBytes = v << 20 }
        if let v = config.int("max_days", min: 0) { rotation.maxDays = v }
        if let v = config.int("max_backups", min: 0) { rotation.maxBackups = v }
        if let v = config.bool("localtime") { rotation.localTime = v }
        config.finish()
        return rotation
    }
}

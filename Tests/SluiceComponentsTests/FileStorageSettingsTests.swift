// `extensions.file_storage`: the disk log's settings, the Collector's names among
// them, and the errors a user can make.
import Testing
import SluiceCore
@testable import SluiceComponents

@Suite struct FileStorageSettingsTests {
    func load(_ body: String) -> (FileStorageSettings?, [ConfigDiagnostic]) {
        let indented = body.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n")
        let text = "extensions:\n  file_storage:\n\(indented)\nexporters:\n  nop:\nservice:\n  extensions: [file_storage]\n"
            + "  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [nop]\nreceivers:\n  otlp:\n"
        let config = CollectorConfig.load(text: text, file: "test.yaml")
        guard let section = config.extensions.first?.config else { return (nil, config.diagnostics.all) }
        let settings = FileStorageSettings(section, dataDirectory: "/data")
        return (settings, config.diagnostics.all)
    }

    @Test func defaults() throws {
        let (settings, diagnostics) = load("directory: /var/lib/sluice")
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let log = try #require(settings?.log)
        #expect(settings?.directory == "/var/lib/sluice")
        #expect(log.fsync == .interval(.milliseconds(200)))
        #expect(log.maxSizeBytes == 1 << 30)
        #expect(log.whenFull == .block)
        #expect(log.directIO)
    }

    @Test func everySettingIsRead() throws {
        let (settings, diagnostics) = load("""
        fsync: always
        max_size: 256MiB
        when_full: drop_oldest
        direct_io: false
        """)
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let log = try #require(settings?.log)
        #expect(settings?.directory == "/data/storage")
        #expect(log.fsync == .always)
        #expect(log.maxSizeBytes == 256 << 20)
        #expect(log.whenFull == .dropOldest)
        #expect(!log.directIO)
        // The Collector's boolean fsync.
        #expect(load("fsync: false").0?.log.fsync == .never)
    }

    @Test func mistakesNameTheKey() {
        for (body, key) in [("fsync: sometimes", "fsync"), ("max_size: 10KiB", "max_size"), ("when_full: wait", "when_full"),
                            ("direct_io: maybe", "direct_io"), ("fsync_interval: 0s", "fsync_interval"), ("direcotry: /x", "direcotry")] {
            let (_, diagnostics) = load(body)
            #expect(diagnostics.contains { $0.path.hasSuffix(key) }, "\(body): \(diagnostics)")
        }
    }
}

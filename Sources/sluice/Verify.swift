import ArgumentParser
import Foundation
import SluiceComponents
import SluiceCore

/// `sluice verify`: checks a file of delivered records against the integrity
/// processor's hashes and chains (IntegrityVerifier). Exit 0 when every record is
/// intact and no chain has a gap; 1 with the first problems named otherwise.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check delivered records (OTLP/JSON lines, HEC events, Elasticsearch otel documents) against their integrity hashes and chains."
    )

    @Argument(help: "Files of delivered records ('-' for standard input).")
    var files: [String]

    @Option(help: "Name of an environment variable holding the integrity processor's HMAC key.")
    var keyEnv: String?

    @Option(help: "A file holding the integrity processor's HMAC key (trailing newline ignored).")
    var keyFile: String?

    @Option(help: "HEC field name of the severity text (the exporter's otel_to_hec_fields.severity_text).")
    var hecSeverityTextField = "severity_text"

    @Option(help: "HEC field name of the severity number.")
    var hecSeverityNumberField = "severity_number"

    @Option(help: "How many problems to list.")
    var maxProblems = 20

    func run() throws {
        var key: [UInt8]?
        if let keyEnv {
            guard let value = ProcessInfo.processInfo.environment[keyEnv], !value.isEmpty else {
                throw ValidationError("--key-env \(keyEnv): the variable is not set or empty")
            }
            key = Array(value.utf8)
        }
        if let keyFile {
            guard let data = FileManager.default.contents(atPath: keyFile) else { throw ValidationError("--key-file \(keyFile): cannot read it") }
            var bytes = [UInt8](data)
            while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
            key = bytes
        }
        var verifier = IntegrityVerifier(key: key)
        verifier.hecSeverityTextField = hecSeverityTextField
        verifier.hecSeverityNumberField = hecSeverityNumberField
        for file in files {
            let data: Data
            if file == "-" {
                data = FileHandle.standardInput.readDataToEndOfFile()
            } else {
                guard let contents = FileManager.default.contents(atPath: file) else { throw ValidationError("\(file): cannot read it") }
                data = contents
            }
            var number = 0
            for line in [UInt8](data).split(separator: 0x0A, omittingEmptySubsequences: false) {
                number += 1
                verifier.add(line: Array(line), number: number, file: files.count > 1 ? file : nil)
            }
        }
        let report = verifier.finish()
        if report.ok {
            print("ok: \(report.records) records intact, \(report.streams) chain\(report.streams == 1 ? "" : "s") without gaps")
            return
        }
        var errors = StandardError()
        for problem in report.problems.prefix(maxProblems) { print(problem, to: &errors) }
        if report.problems.count > maxProblems { print("… and \(report.problems.count - maxProblems) more", to: &errors) }
        print("FAILED: \(report.problems.count) problem\(report.problems.count == 1 ? "" : "s") in \(report.records) records", to: &errors)
        throw ExitCode(1)
    }
}

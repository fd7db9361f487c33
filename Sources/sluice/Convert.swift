import ArgumentParser
import SluiceCore
#if canImport(Glibc)
import Glibc
#endif

/// `sluice convert`: decodes one OTLP request and writes it out again. Useful to
/// look inside a captured payload, and the way the end-to-end tests check the codecs
/// against the OpenTelemetry SDK's own encoders.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert one OTLP export request between protobuf and OTLP/JSON (stdin to stdout)."
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case proto, json }

    @Option(help: "The signal: logs, traces or metrics.")
    var signal: String = "logs"

    @Option(help: "Input format: proto or json.")
    var from: Format

    @Option(help: "Output format: proto or json.")
    var to: Format

    @Option(help: "Content-Encoding of the input: identity, gzip, deflate or zstd.")
    var encoding: String = "identity"

    @Option(help: "Deepest message or JSON nesting accepted.")
    var maxDepth: Int = 64

    func run() throws {
        guard let otlpSignal = OTLPSignal(rawValue: signal) else {
            throw ValidationError("--signal must be logs, traces or metrics, not '\(signal)'")
        }
        guard (1...OTLPDecodeLimits.nestingCeiling).contains(maxDepth) else {
            throw ValidationError("--max-depth must be from 1 to \(OTLPDecodeLimits.nestingCeiling)")
        }
        guard let contentEncoding = ContentEncoding(headerValue: encoding) else {
            throw ValidationError("--encoding must be identity, gzip, deflate or zstd, not '\(encoding)'")
        }
        var input: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(0, &chunk, chunk.count)
            if n < 0 { throw ValidationError("cannot read standard input: errno \(errno)") }
            if n == 0 { break }
            input.append(contentsOf: chunk[0..<n])
        }
        let limits = OTLPDecodeLimits(maxBodyBytes: 1 << 30, maxNestingDepth: maxDepth)
        do {
            let body = try Decompression.decompress(input, encoding: contentEncoding, limit: limits.maxDecompressedBytes)
            let batch = try from == .proto
                ? OTLPBatch.decode(protobuf: body, signal: otlpSignal, limits: limits)
                : OTLPBatch.decode(json: body, signal: otlpSignal, limits: limits)
            var output = to == .proto ? batch.encodeProtobuf() : batch.encodeJSON()
            if to == .json { output.append(UInt8(ascii: "\n")) }
            var written = 0
            while written < output.count {
                let n = output[written...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
                if n <= 0 { throw ValidationError("cannot write standard output: errno \(errno)") }
                written += n
            }
        } catch let error as OTLPDecodeError {
            var standardError = StandardError()
            print("sluice convert: \(error)", to: &standardError)
            throw ExitCode(2)
        }
    }
}

/// Standard error as a `TextOutputStream`, written with write(2) so no shared
/// C `FILE *` is involved.
struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var string = string
        string.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
    }
}

import Foundation
import SluiceCore
import SluiceOTLP
import Testing
@testable import SluiceComponents

/// One line of Fixtures/redaction-corpus.txt.
struct RedactionCase: CustomStringConvertible, Sendable {
    let line: Int
    let label: String
    let input: String
    let expected: String
    var description: String { "line \(line): \(input)" }

    static let all: [RedactionCase] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/redaction-corpus.txt")
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { index, line in
            guard !line.isEmpty, !line.hasPrefix("#") else { return nil }
            let parts = line.components(separatedBy: " || ").map { $0.replacingOccurrences(of: "\\n", with: "\n") }
            return RedactionCase(line: index + 1, label: parts[0], input: parts[1], expected: parts.count > 2 ? parts[2] : parts[1])
        }
    }()
}

@Suite struct RedactionCorpusTests {
    @Test func theCorpusHasCasesOfEveryDetector() {
        let labels = Set(RedactionCase.all.map(\.label))
        #expect(RedactionCase.all.count > 100)
        for kind in SensitiveKind.allCases { #expect(labels.contains(kind.rawValue), "no case for \(kind.rawValue)") }
        #expect(RedactionCase.all.filter { $0.label == "-" }.count > 40)
    }

    @Test(arguments: RedactionCase.all)
    func eachCaseIsMaskedAsWritten(_ testCase: RedactionCase) throws {
        let (processor, diagnostics) = makeProcessor("redaction", "allow_all_keys: true")
        #expect(diagnostics.errorLines == [])
        let redaction = try #require(processor as? RedactionProcessor)
        var tally = Tally()
        var input = testCase.input
        let masked = input.withUTF8 { redaction.mask($0, &tally) }
        let output = masked.map { String(decoding: $0, as: UTF8.self) } ?? testCase.input
        #expect(output == testCase.expected)
        if testCase.label == "-" {
            #expect(masked == nil)
        } else {
            let kind = try #require(SensitiveKind(rawValue: testCase.label))
            #expect(tally.counts[kind.index] >= 1)
        }
    }

    @Test func eachDetectorFindsOnlyItsOwnKindWhenChosenAlone() throws {
        for kind in SensitiveKind.allCases {
            let (processor, _) = makeProcessor("redaction", "allow_all_keys: true\ndetectors: [\(kind.rawValue)]")
            let redaction = try #require(processor as? RedactionProcessor)
            for testCase in RedactionCase.all where testCase.label != "-" {
                var tally = Tally()
                var input = testCase.input
                let masked = input.withUTF8 { redaction.mask($0, &tally) }
                if testCase.label == kind.rawValue {
                    #expect(masked != nil, "\(kind.rawValue) alone missed \(testCase)")
                } else if let masked {
                    #expect(!String(decoding: masked, as: UTF8.self).contains("[REDACTED:\(testCase.label)]"))
                }
            }
        }
    }

    /// Not an assertion (timings depend on the host): what a clean value costs.
    @Test func cleanValueCost() throws {
        let scanner = SensitiveDataScanner()
        let clean = Array("The model refused the request because the prompt asked for step-by-step instructions on topic 42 now".utf8)
        #expect(clean.count == 100)
        let rounds = 20_000
        var found = 0
        let start = ContinuousClock.now
        clean.withUnsafeBufferPointer { bytes in
            for _ in 0..<rounds { scanner.scan(bytes) { _, _ in found += 1 } }
        }
        let elapsed = ContinuousClock.now - start
        #expect(found == 0)
        let nanoseconds = Double(elapsed.components.attoseconds) / 1e9 + Double(elapsed.components.seconds) * 1e9
        print("redaction scan of a clean 100-byte value: \(Int(nanoseconds / Double(rounds))) ns (this build's optimization level)")
    }
}

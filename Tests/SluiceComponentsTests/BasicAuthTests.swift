import Foundation
import Logging
import Testing
import SluiceCore
@testable import SluiceComponents

/// `basicauth`'s client side: the header from values or from mounted files (read
/// again when they change), and the contrib keys Sluice does not have named.
@Suite struct BasicAuthTests {
    func make(_ section: String) -> (BasicAuthExtension?, [ConfigDiagnostic]) {
        let indented = section.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n    ")
        let yaml = "extensions:\n  basicauth:\n    \(indented)\nservice:\n  pipelines: {}\n"
        let loaded = CollectorConfig.load(text: yaml, file: "test.yaml")
        guard let section = loaded.extensions.first?.config else { return (nil, loaded.diagnostics.all) }
        let made = BasicAuthExtensionFactory().make(id: ComponentID("basicauth")!, config: section,
                                                    context: ComponentContext(logger: Logger(label: "test")))
        return (made as? BasicAuthExtension, loaded.diagnostics.all)
    }

    @Test func credentialsFromFilesAreReadAgainWhenTheyChange() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("basicauth-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let user = directory.appendingPathComponent("username"), password = directory.appendingPathComponent("password")
        try "sluice_writer\n".write(to: user, atomically: true, encoding: .utf8)
        try "first-secret\n".write(to: password, atomically: true, encoding: .utf8)
        let (made, problems) = make("client_auth:\n  username_file: \(user.path)\n  password_file: \(password.path)")
        let auth = try #require(made, "\(problems)")
        #expect(auth.credentialHeader()?.value == "Basic " + Data("sluice_writer:first-secret".utf8).base64EncodedString())
        // A rotated secret: a new file (a new modification time), as the kubelet swaps it.
        try FileManager.default.removeItem(at: password)
        try "second-secret\n".write(to: password, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(5)], ofItemAtPath: password.path)
        #expect(auth.credentialHeader()?.value == "Basic " + Data("sluice_writer:second-secret".utf8).base64EncodedString())
        #expect(auth.secretValues().contains("second-secret"))
    }

    @Test func keysSluiceDoesNotHaveAreNamed() {
        let (made, problems) = make("client_auth:\n  username: u\n  aws_secrets_manager:\n    region: us-east-1")
        #expect(made == nil)
        #expect(problems.contains { $0.path.hasSuffix("aws_secrets_manager") && $0.message.contains("username_file") })
        let (_, both) = make("client_auth:\n  username: u\n  username_file: /x\n  password: p")
        #expect(both.contains { $0.path.hasSuffix("username_file") && $0.message.contains("not both") })
    }
}

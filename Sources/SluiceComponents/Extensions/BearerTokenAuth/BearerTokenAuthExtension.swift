// `bearertokenauth`: the Collector's bearer token authenticator
// (extension/bearertokenauthextension). On the server side a receiver protocol
// that names it in `auth.authenticator` lets a request in only when its
// `authorization` header is `Bearer <token>`; on the client side an exporter that
// names it sends that header. The token is given inline (`token`, or several in `tokens`) or
// in a file (`filename`, re-read when it changes: a rotated Kubernetes secret).
// Tokens are compared in constant time and never logged, echoed or reported.
import Foundation
import Logging
import SluiceCore
import Synchronization

public struct BearerTokenAuthExtensionFactory: ExtensionFactory {
    public let type = "bearertokenauth"
    public init() {}

    public func make(id: ComponentID, config: ConfigMap, context: ComponentContext) -> (any Extension)? {
        guard let settings = BearerTokenAuthSettings(config) else { return nil }
        if settings.filename != nil && !settings.inlineTokens.isEmpty {
            // The Collector reads the file when both are set; say so rather than
            // leave the user guessing which one counts.
            context.logger.warning("bearertokenauth has both a token and a filename; the file's token is used",
                                   metadata: ["extension": "\(id)"])
        }
        let extensionValue = BearerTokenAuthExtension(id: id, settings: settings, logger: context.logger)
        if let filename = settings.filename, let problem = extensionValue.tokens.reload(logProblems: false) {
            config.report("filename", "'\(filename)': \(problem)")
            return nil
        }
        return extensionValue
    }
}

/// The extension's section, with the Collector's names.
struct BearerTokenAuthSettings: Sendable {
    /// Looked up lowercase, as HTTP/2 and gRPC metadata carry header names.
    var header = "authorization"
    /// Empty: the header holds the bare token.
    var scheme = "Bearer"
    var inlineTokens: [String] = []
    var filename: String?
    /// How often the token file is read again to see whether it changed.
    var pollInterval: Duration = .seconds(1)

    init(header: String = "authorization", scheme: String = "Bearer", tokens: [String] = [], filename: String? = nil) {
        self.header = header.lowercased()
        self.scheme = scheme
        self.inlineTokens = tokens
        self.filename = filename
    }

    init?(_ config: ConfigMap) {
        let before = config.diagnostics.all.count
        if let value = config.string("header") { header = value.lowercased() }
        if config.has("scheme") { scheme = config.string("scheme") ?? "" }
        if let token = config.string("token") { inlineTokens.append(token) }
        if let tokens = config.stringList("tokens") {
            if config.has("token") { config.report("tokens", "set either token or tokens, not both") }
            inlineTokens += tokens.filter { !$0.isEmpty }
        }
        filename = config.string("filename")
        if let filename {
            var isDirectory: ObjCBool = false
            if !FileManager.default.fileExists(atPath: filename, isDirectory: &isDirectory) {
                config.report("filename", "'\(filename)' does not exist; check the path (and that the secret is mounted)")
            } else if isDirectory.boolValue {
                config.report("filename", "'\(filename)' is a directory; name the file that holds the token")
            }
        }
        if inlineTokens.isEmpty && filename == nil {
            config.report("token", "missing: set token (the bearer token clients must send) or filename (a file that holds it)")
        }
        config.finish()
        if config.diagnostics.all.count > before { return nil }
    }
}

final class BearerTokenAuthExtension: ServerAuthenticator, ClientAuthenticator {
    let id: ComponentID
    let settings: BearerTokenAuthSettings
    let tokens: BearerTokenSource
    private let logger: Logger
    private let watcher = Mutex<Task<Void, Never>?>(nil)

    init(id: ComponentID, settings: BearerTokenAuthSettings, logger: Logger) {
        self.id = id
        self.settings = settings
        self.logger = logger
        tokens = BearerTokenSource(inline: settings.inlineTokens, filename: settings.filename, id: id, logger: logger)
    }

    func start(health: HealthState) async throws {
        guard settings.filename != nil else { return }
        let tokens = self.tokens, interval = settings.pollInterval
        let task = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { break }
                tokens.reload()
            }
        }
        watcher.withLock { $0 = task }
    }

    func shutdown() async {
        let task = watcher.withLock { t -> Task<Void, Never>? in defer { t = nil }; return t }
        task?.cancel()
        await task?.value
    }

    /// RFC 6750 §2.1: `Authorization: Bearer <token>`; the scheme is matched without
    /// regard to case (RFC 9110 §11.1). The reasons never hold what was sent.
    func authenticate(header lookup: (String) -> String?) -> String? {
        guard let value = lookup(settings.header) else { return "missing \(settings.header) header" }
        var credential = Substring(value)
        if !settings.scheme.isEmpty {
            let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard parts.count == 2, parts[0].lowercased() == settings.scheme.lowercased() else {
                return "\(settings.header) header does not use the \(settings.scheme) scheme"
            }
            credential = parts[1]
        }
        let presented = ConstantTimeDigest(credential.trimmingCharacters(in: .whitespaces))
        return tokens.matches(presented) ? nil : "the \(settings.scheme.isEmpty ? "" : settings.scheme.lowercased() + " ")token is not valid"
    }

    /// On an exporter (`auth.authenticator`), the same extension sends its token:
    /// `<header>: <scheme> <token>`, the file's token as last read, so a rotated
    /// secret is sent from the next request on.
    func credentialHeader() -> (name: String, value: String)? {
        guard let token = tokens.current else { return nil }
        return (settings.header, settings.scheme.isEmpty ? token : "\(settings.scheme) \(token)")
    }

    func secretValues() -> [String] { tokens.current.map { [$0] } ?? [] }
}

/// The tokens a request may present: fixed, or read from a file and read again
/// (`reload`) to follow rotation. Digests are compared; the plain token is kept
/// only for an exporter to send (`current`).
final class BearerTokenSource: Sendable {
    private struct State {
        var digests: [ConstantTimeDigest] = []
        /// What the file held last time, to notice a change.
        var fileDigest: ConstantTimeDigest?
        /// The last problem logged, so a file that stays unreadable is logged once.
        var lastProblem: String?
        /// The token an exporter sends: the file's, or the first inline one.
        var current: String?
    }

    /// Larger files are not token files; refusing them keeps a wrong path cheap.
    static let maxFileBytes = 64 << 10

    private let filename: String?
    private let id: ComponentID
    private let logger: Logger
    private let state: Mutex<State>

    init(inline: [String], filename: String?, id: ComponentID, logger: Logger) {
        self.filename = filename
        self.id = id
        self.logger = logger
        state = Mutex(State(digests: filename == nil ? inline.map { ConstantTimeDigest($0) } : [],
                            current: filename == nil ? inline.first : nil))
    }

    var current: String? { state.withLock { $0.current } }

    /// Whether `presented` is one of the tokens. Every token is compared, so the time
    /// does not tell which one (or whether an early one) matched.
    func matches(_ presented: ConstantTimeDigest) -> Bool {
        state.withLock { state in
            var matched = false
            for digest in state.digests { matched = digest.matches(presented) || matched }
            return matched
        }
    }

    /// Reads the token file again and takes its token when it changed. Returns the
    /// problem when the file cannot be used; the previous token then stays in force,
    /// since a secret being swapped can be missing for a moment. The content is
    /// compared, not the modification time: file times are coarse (a rewrite within
    /// the same tick looks unchanged) and Kubernetes swaps a symlink, not the file.
    /// `logProblems` is off for the first read, whose problem is a config error.
    @discardableResult
    func reload(logProblems: Bool = true) -> String? {
        guard let filename else { return nil }
        let problem: String?
        if let data = FileManager.default.contents(atPath: filename) {
            if data.count > Self.maxFileBytes {
                problem = "the token file is \(data.count) bytes; a token file holds one token (at most \(Self.maxFileBytes) bytes)"
            } else {
                let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                problem = token.isEmpty ? "the token file is empty; write the token into it" : nil
                if problem == nil { take(token) }
            }
        } else {
            problem = "the token file cannot be read; check that it exists and that this process may read it"
        }
        state.withLock { state in
            if let problem, problem != state.lastProblem, logProblems {
                logger.warning("bearertokenauth: \(problem); the previous token stays in force",
                               metadata: ["extension": "\(id)", "filename": "\(filename)"])
            }
            state.lastProblem = problem
        }
        return problem
    }

    private func take(_ token: String) {
        let digest = ConstantTimeDigest(token)
        let changed = state.withLock { state -> Bool in
            if let previous = state.fileDigest, previous.matches(digest) { return false }
            let first = state.fileDigest == nil
            state.fileDigest = digest
            state.current = token
            state.digests = [digest]
            return !first
        }
        if changed {
            logger.info("bearertokenauth: the token file changed; its new token is in force",
                        metadata: ["extension": "\(id)", "filename": "\(filename ?? "")"])
        }
    }
}

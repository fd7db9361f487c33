import Foundation
import Logging
import SluiceCore
import SluiceOTTL
import Synchronization

// What the `filter` processor and the `routing` connector share: reading OTTL
// conditions from the configuration (a syntax error points at its line and column
// in the file), `error_mode`, and what happens when a condition fails on a record.

/// The Collector's `error_mode` for OTTL (pkg/ottl: ErrorMode).
enum OTTLErrorMode: String, Sendable {
    /// The request is refused (400 / INVALID_ARGUMENT) with the failure; the Collector's default.
    case propagate
    /// The condition counts as not met; the failure is logged and counted.
    case ignore
    /// As ignore, but only counted.
    case silent
}

extension ConfigMap {
    func ottlErrorMode() -> OTTLErrorMode {
        enumeration("error_mode", ["propagate", "ignore", "silent"]).flatMap(OTTLErrorMode.init(rawValue:)) ?? .propagate
    }
}

extension ConfigString {
    /// Parses the value as a condition (or, with `statementEditor`, as a statement
    /// like `route() where …`); a problem is reported at the line and column of the
    /// offending token and the result is nil.
    func ottlCondition(_ context: OTTLContext, statementEditor: String? = nil) -> OTTLCondition? {
        do {
            if let editor = statementEditor { return try OTTLCondition(statement: text, editor: editor, context: context) }
            return try OTTLCondition(text, context: context)
        } catch {
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            let shown = trimmed.count > 200 ? trimmed.prefix(200) + "…" : Substring(trimmed)
            report(at: error.scalarOffset, "\(error.message) — in: \(shown)")
            return nil
        }
    }
}

/// Counts conditions that failed on a record and says so in the log, at most once
/// a minute per component (a failing condition fails on every record).
final class OTTLFailures: Sendable {
    let component: String
    let mode: OTTLErrorMode
    private let logger: Logger
    private let counter: Counter
    private let lastLogged = Mutex<(at: ContinuousClock.Instant?, unreported: Int)>((nil, 0))

    /// `kind` is the metric label's name: `processor` or `connector`.
    init(_ kind: String, _ id: ComponentID, mode: OTTLErrorMode, logger: Logger, metrics: MetricsRegistry) {
        component = "\(kind) \(id)"
        self.mode = mode
        self.logger = logger
        counter = metrics.counter("sluice_\(kind)_\(id.type)_condition_failures_total",
                                  "OTTL conditions that failed on a record (error_mode decides what followed).", labels: [(kind, id.description)])
    }

    /// One failure. For `propagate`, the refusal the request gets.
    func record(_ error: OTTLEvaluationError, in condition: OTTLCondition) -> ProcessOutcome? {
        counter.increment()
        let why = "\(component): condition \(condition.text) failed: \(error.message)"
        if mode == .silent { return nil }
        let now = ContinuousClock.now
        let report: Int? = lastLogged.withLock { state in
            state.unreported += 1
            if let at = state.at, now - at < .seconds(60) { return nil }
            defer { state = (now, 0) }
            return state.unreported
        }
        if let count = report {
            let consequence = mode == .propagate ? "the request was refused (error_mode: propagate)" : "the condition counted as not met (error_mode: ignore)"
            logger.warning("an OTTL condition failed; \(consequence)",
                           metadata: ["component": "\(component)", "condition": "\(condition.text)", "error": "\(error.message)", "failures_since_last_report": "\(count)"])
        }
        return mode == .propagate ? .refuse(.unprocessable(why), retryAfter: .zero) : nil
    }
}

import SluiceCore

/// What a destination said about one payload, read from its answer by the exporter.
enum PayloadAnswer: Sendable, Equatable {
    /// Every record of the payload was taken.
    case accepted
    /// Taken, but only delivered once the destination confirms it later (Splunk's
    /// indexer acknowledgement); the exporter confirms it after the call's payloads.
    case pending(ackID: UInt64)
    /// One result per record of the payload, in payload order (a bulk answer).
    case perRecord([RecordResult])
    /// 413: too large. Split in halves, down to one record refused alone.
    case tooLarge(String)
    /// One record is bad and the others are fine: the destination named it (its
    /// position in the payload), or did not, and the payload is split in halves.
    case badRecord(String, index: Int?)
    /// Nothing of this call will be taken (a bad credential, a wrong path).
    case refused(String)
    /// Nothing was taken; try the call again later.
    case retry(String, after: Duration?)
}

/// One record's fate inside an accepted payload.
enum RecordResult: Sendable, Equatable {
    case delivered
    /// Not taken this time (a bulk item's 429 or 5xx): sent again on the retry, alone.
    case retry(String)
    /// Never taken (a mapping error): to the dead-letter file with the reason.
    case refused(String)
}

/// Sends one export call's records as payloads and reacts to every answer the same
/// way for every exporter: per-record results go into `progress`; a 413 splits the
/// payload in halves until one record is refused alone (never a loop: every split
/// is smaller than what it came from); a whole-call refusal refuses what is left; a
/// retry stops the call with the rest still open. The exporter turns the result into
/// an `ExportOutcome` with `outcome(...)`.
struct PayloadDelivery {
    /// Packs record indices into payloads; records that cannot fit even alone are
    /// refused into the progress with the reason.
    var pack: ([Int], inout ExportProgress) -> [Payload]
    /// One attempt at one payload.
    var send: (Payload) async -> PayloadAnswer
    /// Told of each 413; returns true when the exporter lowered its limit, so the
    /// payloads not sent yet are packed again.
    var learnTooLarge: (Payload) -> Bool = { _ in false }
    /// Told of each split (for a metric).
    var onSplit: () -> Void = {}
    /// What the destination calls a record, for reasons ("event", "document").
    var noun = "record"

    /// How the call ended.
    struct Result {
        /// Why the call must be tried again, when it must.
        var retry: (reason: String, after: Duration?)?
        /// Payloads taken but not confirmed yet, with their records.
        var pending: [(ackID: UInt64, records: [Int])] = []
        /// The destination refused a whole request (a credential, a path), not records
        /// one by one: the exporter is `failed` until someone acts (docs/operations.md).
        var refusedWhole = false
    }

    func run(_ progress: inout ExportProgress) async -> Result {
        var work = Array(pack(progress.open, &progress).reversed())
        var result = Result()
        var itemRetry: (reason: String, count: Int)?
        while let payload = work.popLast() {
            if Task.isCancelled {
                result.retry = ("shutting down", nil)
                return result
            }
            switch await send(payload) {
            case .accepted:
                progress.deliver(payload.records)
            case .pending(let ackID):
                result.pending.append((ackID, payload.records))
            case .perRecord(let results):
                for (position, record) in payload.records.enumerated() {
                    // A short answer leaves the records it does not mention open.
                    guard position < results.count else {
                        itemRetry = ("the destination answered for \(results.count) of \(payload.records.count) records", (itemRetry?.count ?? 0) + 1)
                        continue
                    }
                    switch results[position] {
                    case .delivered: progress.deliver([record])
                    case .refused(let reason): progress.refuse(record, reason)
                    case .retry(let reason): itemRetry = (reason, (itemRetry?.count ?? 0) + 1)
                    }
                }
            case .tooLarge(let reason):
                if learnTooLarge(payload), !work.isEmpty {
                    // The payloads cut before would meet the same 413: cut them again.
                    work = Array(pack(work.reversed().flatMap(\.records), &progress).reversed())
                }
                if payload.records.count == 1 {
                    progress.refuse(payload.records[0], "\(reason); even alone this \(noun) (\(payload.body.count) bytes as sent) is over the destination's limit")
                } else {
                    onSplit()
                    let half = payload.records.count / 2
                    let parts = [Array(payload.records[..<half]), Array(payload.records[half...])]
                    work.append(contentsOf: parts.flatMap { pack($0, &progress) }.reversed())
                }
            case .badRecord(let reason, let index):
                if payload.records.count == 1 {
                    progress.refuse(payload.records[0], reason)
                    break
                }
                onSplit()
                var parts: [[Int]]
                if let n = index, n >= 0, n < payload.records.count {
                    // The destination named the record: it alone is refused. The records
                    // before it are sent again (they may have been taken: a duplicate,
                    // not a loss).
                    progress.refuse(payload.records[n], reason)
                    parts = [Array(payload.records[..<n]), Array(payload.records[(n + 1)...])]
                } else {
                    let half = payload.records.count / 2
                    parts = [Array(payload.records[..<half]), Array(payload.records[half...])]
                }
                parts.removeAll { $0.isEmpty }
                work.append(contentsOf: parts.flatMap { pack($0, &progress) }.reversed())
            case .refused(let reason):
                result.refusedWhole = true
                for record in payload.records { progress.refuse(record, reason) }
                for rest in work { for record in rest.records { progress.refuse(record, reason) } }
                work.removeAll()
            case .retry(let reason, let after):
                result.retry = (reason, after)
                return result
            }
        }
        if let itemRetry {
            result.retry = ("\(itemRetry.count) records not taken this time, sent again alone: \(itemRetry.reason)", nil)
        }
        return result
    }

    /// One export call from its encoded records to its outcome: the progress of an
    /// earlier attempt at the same batches (so a retry sends only what is left),
    /// `refuseFirst` for records the exporter knows the destination cannot take,
    /// the payloads, and the progress kept when the call must be tried again.
    func export(_ records: EncodedRecords, batches: [OTLPBatch], signal: OTLPSignal, memory: ProgressMemory,
                redact: (String) -> String, refuseFirst: (inout ExportProgress) -> Void = { _ in }) async -> ExportOutcome {
        guard records.count > 0 else { return .delivered }
        var progress = memory.take(batches, records: records.count)
        refuseFirst(&progress)
        let result = await run(&progress)
        if let retry = result.retry {
            memory.keep(progress)
            return .retryable(reason: redact(retry.reason), after: retry.after)
        }
        return Self.outcome(progress, result, records: records, batches: batches, signal: signal, noun: noun, redact: redact)
    }

    /// The call's outcome from its progress: refused records go to the dead-letter
    /// file (rebuilt as OTLP batches holding only them), the rest counts as delivered.
    /// Only a whole request refused makes it `.permanent`; records refused one by one
    /// (even every record of a small call) leave the destination taking data.
    static func outcome(_ progress: ExportProgress, _ result: Result, records: EncodedRecordsIndex, batches: [OTLPBatch], signal: OTLPSignal,
                        noun: String = "record", redact: (String) -> String) -> ExportOutcome {
        guard !progress.refused.isEmpty else { return .delivered }
        let reason = redact(summarize(progress.refused, noun: noun))
        if result.refusedWhole, progress.refused.count == records.count { return .permanent(reason: reason) }
        let locators = progress.refused.keys.sorted().map { records.locators[$0] }
        return .partiallyDelivered(rejected: RejectedRecords.batches(batches, signal: signal, refused: locators), reason: reason)
    }

    /// One reason for everything refused in a call: the reason when there is one
    /// (the dead-letter file shows how many records it covers), else
    /// "3 records refused: 2× …; 1× …".
    static func summarize(_ refused: [Int: String], noun: String = "record") -> String {
        var counts: [String: Int] = [:]
        for reason in refused.values { counts[reason, default: 0] += 1 }
        let groups = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        if groups.count == 1 { return groups[0].key }
        let listed = groups.prefix(3).map { "\($0.value)× \($0.key)" }.joined(separator: "; ")
        return "\(refused.count) \(noun)s refused: \(listed)\(groups.count > 3 ? "; and \(groups.count - 3) other reasons" : "")"
    }
}

/// What `PayloadDelivery.outcome` needs of a call's records: how many, and where
/// each came from.
protocol EncodedRecordsIndex {
    var count: Int { get }
    var locators: [RecordLocator] { get }
}

extension EncodedRecords: EncodedRecordsIndex {}

import Foundation
import SluiceCore

/// Copies of OTLP batches holding only some of their records, with their resource
/// and scope: the records a destination refused for good, for the dead-letter file
/// (so `sluice replay` resends nothing that was delivered), or one half of a
/// request that was refused as too large.
///
/// The copy goes through OTLP/JSON: the batch's own JSON encoding, with every
/// record not kept taken out, decoded again. It is off the hot path (only refused
/// records and split requests take it), so Foundation's JSON parser is fine here;
/// OTLP/JSON carries 64-bit integers as strings, so nothing is rounded on the way.
enum RejectedRecords {
    /// One new batch per original batch that had refused records. Where a copy
    /// cannot be made (it never should), the whole original batch is returned:
    /// a record written to the dead-letter file twice is better than one lost.
    static func batches(_ batches: [OTLPBatch], signal: OTLPSignal, refused: [RecordLocator]) -> [OTLPBatch] {
        var byBatch: [Int32: Set<RecordLocator>] = [:]
        for locator in refused { byBatch[locator.batch, default: []].insert(locator) }
        return byBatch.keys.sorted().map { b in
            let batch = batches[Int(b)]
            return subset(batch, signal: signal, index: b, keeping: byBatch[b]!) ?? batch
        }
    }

    /// `batch` (number `index` of the call) with only the records in `keeping`.
    static func subset(_ batch: OTLPBatch, signal: OTLPSignal, index: Int32, keeping: Set<RecordLocator>) -> OTLPBatch? {
        let (resourcesKey, scopesKey, recordsKey) = signal == .logs
            ? ("resourceLogs", "scopeLogs", "logRecords")
            : ("resourceSpans", "scopeSpans", "spans")
        guard var request = (try? JSONSerialization.jsonObject(with: Data(batch.encodeJSON()))) as? [String: Any],
              let resources = request[resourcesKey] as? [[String: Any]] else { return nil }
        let expected = shape(batch, signal: signal)
        guard resources.count == expected.count else { return nil }
        var keptResources: [[String: Any]] = []
        for (r, var resource) in resources.enumerated() {
            let scopes = resource[scopesKey] as? [[String: Any]] ?? []
            guard scopes.count == expected[r].count else { return nil }
            var keptScopes: [[String: Any]] = []
            for (s, var scope) in scopes.enumerated() {
                let records = scope[recordsKey] as? [Any] ?? []
                guard records.count == expected[r][s] else { return nil }
                let kept = records.enumerated().filter { k, _ in
                    keeping.contains(RecordLocator(batch: index, resource: Int32(r), scope: Int32(s), record: Int32(k)))
                }.map(\.element)
                if kept.isEmpty { continue }
                scope[recordsKey] = kept
                keptScopes.append(scope)
            }
            if keptScopes.isEmpty { continue }
            resource[scopesKey] = keptScopes
            keptResources.append(resource)
        }
        request[resourcesKey] = keptResources
        guard let json = try? JSONSerialization.data(withJSONObject: request) else { return nil }
        // The records were decoded once already; allow the deepest nesting any
        // receiver setting allows, and any size.
        let limits = OTLPDecodeLimits(maxBodyBytes: Int(Int32.max), maxNestingDepth: OTLPDecodeLimits.nestingCeiling)
        guard let copy = try? OTLPBatch.decode(json: Array(json), signal: signal, limits: limits),
              copy.itemCount == keeping.count else { return nil }
        return copy
    }

    /// How many records each scope of each resource has, to check the JSON lines up
    /// with the views the locators were taken from (and to locate them).
    static func shape(_ batch: OTLPBatch, signal: OTLPSignal) -> [[Int]] {
        switch signal {
        case .logs: batch.withLogs { $0.resourceLogs.map { $0.scopeLogs.map(\.logRecords.count) } } ?? []
        case .traces: batch.withTraces { $0.resourceSpans.map { $0.scopeSpans.map(\.spans.count) } } ?? []
        case .metrics: []
        }
    }
}

/// Every record of a call's batches, located, for exporters that send whole OTLP
/// requests (`otlphttp`, `otlp`): a payload is a set of records, and its body is
/// the batches it covers whole, or copies holding just its records when a 413 split
/// a request (`RejectedRecords.subset`). Metrics are located by batch only (a
/// record index of -1): they split down to one request as it was received.
struct OTLPRecordIndex: EncodedRecordsIndex {
    let locators: [RecordLocator]
    /// How many units each batch has, to tell a whole batch from part of one.
    private let unitsPerBatch: [Int]
    var count: Int { locators.count }

    /// `wholeRequests`: one unit per batch, so a split never goes below a request as
    /// it was received (gRPC's RESOURCE_EXHAUSTED may be a quota rather than a size,
    /// so splitting further would only multiply the calls).
    init(_ batches: [OTLPBatch], signal: OTLPSignal, wholeRequests: Bool = false) {
        var locators: [RecordLocator] = []
        var unitsPerBatch: [Int] = []
        for (b, batch) in batches.enumerated() {
            let shape = wholeRequests ? [] : RejectedRecords.shape(batch, signal: signal)
            let before = locators.count
            for (r, scopes) in shape.enumerated() {
                for (s, records) in scopes.enumerated() {
                    for k in 0..<records { locators.append(RecordLocator(batch: Int32(b), resource: Int32(r), scope: Int32(s), record: Int32(k))) }
                }
            }
            // A batch without records (or of metrics) is still sent: one unit for it whole.
            if locators.count == before { locators.append(RecordLocator(batch: Int32(b), resource: -1, scope: -1, record: -1)) }
            unitsPerBatch.append(locators.count - before)
        }
        self.locators = locators
        self.unitsPerBatch = unitsPerBatch
    }

    /// The batches holding exactly `records` (indices into `locators`), in order:
    /// whole batches as they are, parts of a batch as copies.
    func batches(_ records: [Int], of batches: [OTLPBatch], signal: OTLPSignal) -> [OTLPBatch] {
        var byBatch: [(Int32, [RecordLocator])] = []
        for record in records {
            let locator = locators[record]
            if byBatch.last?.0 == locator.batch { byBatch[byBatch.count - 1].1.append(locator) } else { byBatch.append((locator.batch, [locator])) }
        }
        return byBatch.map { b, kept in
            let batch = batches[Int(b)]
            if kept.count == unitsPerBatch[Int(b)] { return batch }
            // A copy that cannot be made (it never should) sends the batch whole:
            // a duplicate rather than a loss.
            return RejectedRecords.subset(batch, signal: signal, index: b, keeping: Set(kept)) ?? batch
        }
    }

    /// One request body for `records`: the OTLP encodings of the batches holding
    /// them, one after another (protobuf merges concatenated messages), compressed
    /// as the exporter is configured.
    func payload(_ records: [Int], of batches: [OTLPBatch], signal: OTLPSignal, json: Bool = false,
                 settings: HTTPExporterSettings) -> Payload {
        var raw: [UInt8] = []
        for batch in self.batches(records, of: batches, signal: signal) { raw += json ? batch.encodeJSON() : batch.encodeProtobuf() }
        let (body, gzipped) = settings.compress(raw)
        return Payload(records: records, body: body, gzipped: gzipped, rawBytes: raw.count)
    }
}

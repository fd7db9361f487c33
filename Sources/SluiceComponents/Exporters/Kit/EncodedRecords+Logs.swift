import SluiceCore

/// One log record as an encoder sees it: the record with its scope and resource.
struct LogRecordContext {
    var record: LogRecordView
    var scope: ScopeView?
    var resource: AttributesView?
    /// Where the record is: records of one resource share `batch` and `resource`,
    /// so an encoder can write what it derives from the resource once.
    var locator: RecordLocator
}

extension EncodedRecords {
    /// Every log record of a call's batches, in order, written by `write` as one
    /// JSON value each (the exporters whose destinations take a JSON array of
    /// records: Datadog, Azure Monitor, webhooks). `write` appends one value to
    /// `doc.out` and returns true, or writes nothing and returns false to leave the
    /// record out (a filter the user configured); `skipped` counts those.
    static func logs(_ batches: [OTLPBatch], _ write: (inout JSONObjectWriter, LogRecordContext) -> Bool) -> (records: EncodedRecords, skipped: Int) {
        var doc = JSONObjectWriter()
        doc.out.bytes.reserveCapacity(batches.reduce(0) { $0 + $1.memoryBytes } + 4096)
        var records = EncodedRecords()
        var skipped = 0
        for (b, batch) in batches.enumerated() {
            batch.withLogs { request in
                for (r, resourceLogs) in request.resourceLogs.enumerated() {
                    let resource = resourceLogs.resource?.attributes
                    for (s, scopeLogs) in resourceLogs.scopeLogs.enumerated() {
                        let scope = scopeLogs.scope
                        for (k, record) in scopeLogs.logRecords.enumerated() {
                            let start = doc.out.count
                            let locator = RecordLocator(batch: Int32(b), resource: Int32(r), scope: Int32(s), record: Int32(k))
                            guard write(&doc, LogRecordContext(record: record, scope: scope, resource: resource, locator: locator)) else {
                                doc.out.bytes.removeLast(doc.out.count - start)
                                skipped += 1
                                continue
                            }
                            records.ends.append(doc.out.count)
                            records.locators.append(locator)
                        }
                    }
                }
            }
        }
        records.bytes = doc.out.bytes
        return (records, skipped)
    }
}

extension AnyValueView {
    /// A string value as it is; any other value as its JSON text (a log body as a
    /// message).
    func writeText(to out: inout JSONOutput) {
        if case .string(let text) = value { out.appendString(text.utf8) } else { out.appendString(stringValue) }
    }
}

import COTLP

/// A log record to build a batch from (receivers of other formats than OTLP).
public struct NewLogRecord: Sendable {
    public var timeUnixNano: UInt64 = 0
    public var observedTimeUnixNano: UInt64 = 0
    public var severityNumber: Int32 = 0
    public var severityText: [UInt8] = []
    public var eventName: [UInt8] = []
    public var body: OTLPValue?
    public var attributes: [OTLPKeyValue] = []
    /// 16 bytes, or empty.
    public var traceID: [UInt8] = []
    /// 8 bytes, or empty.
    public var spanID: [UInt8] = []
    public var flags: UInt32 = 0

    public init() {}
}

extension OTLPBatch {
    /// A logs request of one resource and one scope holding `records`.
    public static func makeLogs(
        resource: [OTLPKeyValue],
        scopeName: String,
        scopeVersion: String = "",
        records: [NewLogRecord]
    ) throws(OTLPEditError) -> OTLPBatch {
        guard let empty = OTLPBatch.empty(.logs) else { throw OTLPEditError() }
        let arena = empty.arena
        let request = UnsafeMutableRawPointer(empty.message).assumingMemoryBound(to: CLogsRequest.self)

        let resourceLogs = try arena.message(sluice_resource_logs_descriptor(), as: CResourceLogs.self)
        let resourceMessage = try arena.message(sluice_resource_descriptor(), as: CResource.self)
        (resourceMessage.pointee.attributes, resourceMessage.pointee.n_attributes) = try arena.keyValues(resource)
        resourceLogs.pointee.resource = resourceMessage

        let scopeLogs = try arena.message(sluice_scope_logs_descriptor(), as: CScopeLogs.self)
        let scope = try arena.message(sluice_scope_descriptor(), as: CScope.self)
        scope.pointee.name = try arena.binary(Array(scopeName.utf8))
        scope.pointee.version = try arena.binary(Array(scopeVersion.utf8))
        scopeLogs.pointee.scope = scope

        if !records.isEmpty {
            let list = try arena.pointers(records.count, of: CLogRecord.self)
            for (i, new) in records.enumerated() {
                let record = try arena.message(sluice_log_record_descriptor(), as: CLogRecord.self)
                record.pointee.time_unix_nano = new.timeUnixNano
                record.pointee.observed_time_unix_nano = new.observedTimeUnixNano
                record.pointee.severity_number = Opentelemetry__Proto__Logs__V1__SeverityNumber(rawValue: UInt32(bitPattern: new.severityNumber))
                record.pointee.severity_text = try arena.binary(new.severityText)
                record.pointee.event_name = try arena.binary(new.eventName)
                if let body = new.body {
                    let any = try arena.message(sluice_any_value_descriptor(), as: CAnyValue.self)
                    try arena.write(body, into: any)
                    record.pointee.body = any
                }
                (record.pointee.attributes, record.pointee.n_attributes) = try arena.keyValues(new.attributes)
                record.pointee.trace_id = try arena.binary(new.traceID)
                record.pointee.span_id = try arena.binary(new.spanID)
                record.pointee.flags = new.flags
                list[i] = record
            }
            scopeLogs.pointee.log_records = list
            scopeLogs.pointee.n_log_records = records.count
        }
        let scopes = try arena.pointers(1, of: CScopeLogs.self)
        scopes[0] = scopeLogs
        resourceLogs.pointee.scope_logs = scopes
        resourceLogs.pointee.n_scope_logs = 1

        let resources = try arena.pointers(1, of: CResourceLogs.self)
        resources[0] = resourceLogs
        request.pointee.resource_logs = resources
        request.pointee.n_resource_logs = 1
        return empty
    }
}

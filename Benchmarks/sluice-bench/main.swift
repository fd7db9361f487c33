// `make bench`: throughput numbers every later change is held against.
// `BENCH_ONLY=<words>` runs only the rows whose names contain them, and
// `BENCH_ITERATIONS=N` each exactly N times: for a profiler (Benchmarks/README.md).
//
// Decode: one OTLP/HTTP logs request of 1,000 governance events (ten attributes
// each, docs/events.md's fields), decoded over and over on one core:
//   - protobuf into the batch's arena, then every field read through the views
//     (what a receiver plus an exporter's encoder pay);
//   - the same unpack with protobuf-c's default malloc allocator, for comparison;
//   - OTLP/JSON into the same structs;
//   - the same 1,000 events as the gateway's own JSON (NDJSON, the events
//     receiver's input): parsed into OTLP values, then built into a batch with
//     the fields as attributes and the object as the body, as the receiver does.
// Encode: the decoded request packed as protobuf (logs: LogsProtobufWriter), next
// to protobuf-c's generic packer on the same request (what a processor's edit used
// to cost on the way to a disk log); as OTLP/JSON; as HEC events.
// OTTL: one condition evaluated on each record of the decoded request (the filter
// processor's and routing connector's cost per record), with IsMatch through
// POSIX regexec in place next to Swift's Regex over a String made per record.
// Redaction: the same decode, then the `redaction` processor with every detector
// (issue 15), once on the events as they are (each has an email in user_id) and
// once on events with nothing to mask (the cost of scanning clean values).
import COTLP
import CReferenceLoop
import SluiceComponents
import SluiceCore
import SluiceOTLP
import SluiceOTTL
#if canImport(Glibc)
import Glibc
#endif

/// The request the benchmark decodes, built as OTLP/JSON then packed as protobuf.
func gatewayEvents(count: Int, emails: Bool = true) -> [UInt8] {
    let actions = [("request", "allow"), ("blocked", "block"), ("escalated", "escalate"), ("redacted", "redact")]
    var json = #"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"ai-gateway"}},{"key":"host.name","value":{"stringValue":"gw-7f9c5d"}},{"key":"k8s.pod.name","value":{"stringValue":"ai-gateway-7f9c5d-x2k4q"}}]},"scopeLogs":[{"scope":{"name":"gateway.audit","version":"2.1.0"},"logRecords":["#
    for i in 0..<count {
        let (type, action) = actions[i % actions.count]
        if i > 0 { json += "," }
        let nanos = 1_763_712_000_000_000_000 + UInt64(i) * 1_000_000
        let id = String(i, radix: 16)
        let traceID = String(repeating: "0", count: 32 - id.count) + id
        let spanID = String(repeating: "0", count: 16 - min(id.count, 16)) + id
        json += #"{"timeUnixNano":"\#(nanos)","observedTimeUnixNano":"\#(nanos + 1000)","severityNumber":9,"severityText":"INFO","#
        json += #""body":{"stringValue":"policy decision \#(action) for request \#(i)"},"traceId":"\#(traceID)","spanId":"\#(spanID)","attributes":["#
        json += #"{"key":"event_id","value":{"stringValue":"evt-\#(String(repeating: "0", count: 8 - min(8, String(i).count)))\#(i)-7c1e-4a8b-9d2f"}},"#
        json += #"{"key":"event_type","value":{"stringValue":"\#(type)"}},"#
        json += #"{"key":"action","value":{"stringValue":"\#(action)"}},"#
        json += #"{"key":"policy_name","value":{"stringValue":"pii-guard-v\#(i % 7)"}},"#
        json += #"{"key":"model","value":{"stringValue":"gpt-4o-2024-08-06"}},"#
        json += #"{"key":"gateway_id","value":{"stringValue":"gw-eu-west-1a"}},"#
        json += #"{"key":"user_id","value":{"stringValue":"user-\#(i % 97)\#(emails ? "@example.com" : "")"}},"#
        json += #"{"key":"org_id","value":{"stringValue":"org-\#(i % 13)"}},"#
        json += #"{"key":"latency_ms","value":{"intValue":"\#(i % 500)"}},"#
        json += #"{"key":"risk_score","value":{"doubleValue":0.\#(i % 100)}}]}"#
    }
    json += "]}]}]}"
    let batch = try! OTLPBatch.decode(json: Array(json.utf8), signal: .logs)
    return batch.encodeProtobuf()
}

/// Reads every field a SIEM encoder reads, so the views' cost is in the number.
@inline(never)
func readEveryField(_ batch: OTLPBatch) -> Int {
    batch.withLogs { logs in
        var touched = 0
        for (resource, scope, record) in logs.records {
            touched &+= resource.resource?.attributes.count ?? 0
            touched &+= scope.scope?.name.utf8.count ?? 0
            touched &+= Int(truncatingIfNeeded: record.timeUnixNano) &+ Int(record.severityNumber)
            touched &+= record.severityText.utf8.count &+ record.traceID.bytes.count &+ record.spanID.bytes.count
            if case .string(let body) = record.body?.value { touched &+= body.utf8.count }
            for attribute in record.attributes {
                touched &+= attribute.key.utf8.count
                switch attribute.value?.value {
                case .string(let s): touched &+= s.utf8.count
                case .int(let v): touched &+= Int(truncatingIfNeeded: v)
                case .double(let d): touched &+= Int(d * 100)
                default: break
                }
            }
        }
        return touched
    } ?? 0
}

struct Measurement {
    var seconds: Double
    var cpuSeconds: Double
    var iterations: Int
}

func cpuTime() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func measure(minimumSeconds: Double, _ body: () -> Void) -> Measurement {
    // BENCH_ITERATIONS=N: exactly N runs, no warm-up (instruction counts under
    // valgrind --tool=callgrind, which hold on a busy host where seconds do not).
    if let value = getenv("BENCH_ITERATIONS"), let n = Int(String(cString: value)) {
        let start = now(), cpuStart = cpuTime()
        for _ in 0..<n { body() }
        return Measurement(seconds: now() - start, cpuSeconds: cpuTime() - cpuStart, iterations: n)
    }
    for _ in 0..<20 { body() }  // warm-up
    let start = now(), cpuStart = cpuTime()
    var iterations = 0
    while now() - start < minimumSeconds {
        for _ in 0..<10 { body() }
        iterations += 10
    }
    return Measurement(seconds: now() - start, cpuSeconds: cpuTime() - cpuStart, iterations: iterations)
}

/// Whether BENCH_ONLY (when set) names this row.
func selected(_ name: String) -> Bool {
    guard let only = getenv("BENCH_ONLY") else { return true }
    return name.contains(String(cString: only))
}

/// Measures and prints one row, unless BENCH_ONLY names others.
@discardableResult
func row(_ name: String, bytes: Int, _ body: () -> Void) -> Measurement? {
    guard selected(name) else { return nil }
    let m = measure(minimumSeconds: seconds, body)
    report(name, bytes: bytes, records: records, m)
    return m
}

func report(_ name: String, bytes: Int, records: Int, _ m: Measurement) {
    let perIteration = m.seconds / Double(m.iterations)
    let mbps = Double(bytes) / perIteration / 1e6
    let rps = Double(records) / perIteration
    let name = name.count >= 36 ? name : name + String(repeating: " ", count: 36 - name.count)
    print("\(name) \(format(mbps, 1).leftPad(8)) MB/s  \(format(rps, 0).leftPad(11)) records/s  \(format(perIteration * 1e6, 1).leftPad(9)) µs/request")
}

func format(_ value: Double, _ decimals: Int) -> String {
    var s = String(Int((value * pow(10, Double(decimals))).rounded()))
    guard decimals > 0 else { return s }
    while s.count <= decimals { s = "0" + s }
    s.insert(".", at: s.index(s.endIndex, offsetBy: -decimals))
    return s
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

// `make bench` runs this under `taskset -c 0`: the numbers are for one core.
let seconds: Double = {
    if let value = getenv("BENCH_SECONDS"), let parsed = Double(String(cString: value)) { return parsed }
    return 3
}()

let records = 1_000
let payload = gatewayEvents(count: records)
// `sluice-bench --write-payload FILE` writes the request for the runtime benchmark.
if CommandLine.arguments.count == 3, CommandLine.arguments[1] == "--write-payload" {
    let fd = open(CommandLine.arguments[2], O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    _ = payload.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
    exit(0)
}
let json = try! OTLPBatch.decode(protobuf: payload, signal: .logs).encodeJSON()
print("payload: \(records) log records, \(payload.count) bytes protobuf, \(json.count) bytes OTLP/JSON; one core, \(Int(seconds)) s per row")

var sink = 0
row("decode protobuf, arena + views", bytes: payload.count) {
    let batch = try! OTLPBatch.decode(protobuf: payload, signal: .logs)
    sink &+= readEveryField(batch)
}

row("decode protobuf, arena", bytes: payload.count) {
    let batch = try! OTLPBatch.decode(protobuf: payload, signal: .logs)
    sink &+= batch.memoryBytes
}

let descriptor = sluice_logs_request_descriptor()
row("decode protobuf, malloc (protobuf-c)", bytes: payload.count) {
    payload.withUnsafeBufferPointer { buffer in
        let message = protobuf_c_message_unpack(descriptor, nil, buffer.count, buffer.baseAddress)!
        sink &+= Int(message.pointee.n_unknown_fields)
        protobuf_c_message_free_unpacked(message, nil)
    }
}

row("decode OTLP/JSON, arena + views", bytes: json.count) {
    let batch = try! OTLPBatch.decode(json: json, signal: .logs)
    sink &+= readEveryField(batch)
}

let decoded = try! OTLPBatch.decode(protobuf: payload, signal: .logs)
row("encode protobuf", bytes: payload.count) { sink &+= decoded.encodeProtobuf().count }
// What `encode protobuf` cost before LogsProtobufWriter: protobuf-c's generic size
// walk and pack walk, on the same request unpacked by protobuf-c.
let unpacked = payload.withUnsafeBufferPointer { protobuf_c_message_unpack(descriptor, nil, $0.count, $0.baseAddress)! }
if decoded.encodeProtobuf() != OTLPBatch.packWithProtobufC(unpacked) {
    print("encode protobuf: writes other bytes than protobuf-c for the same request")
}
row("encode protobuf, protobuf-c", bytes: payload.count) { sink &+= OTLPBatch.packWithProtobufC(unpacked).count }
row("encode OTLP/JSON", bytes: json.count) { sink &+= decoded.encodeJSON().count }
let hecBytes = HECEncoderBenchmark.encodeLogs(decoded, sourcetype: "ai:gateway:audit")
row("encode HEC events", bytes: hecBytes) { sink &+= HECEncoderBenchmark.encodeLogs(decoded, sourcetype: "ai:gateway:audit") }
let swiftHEC = row("decode protobuf + encode HEC", bytes: payload.count) {
    let batch = try! OTLPBatch.decode(protobuf: payload, signal: .logs)
    sink &+= HECEncoderBenchmark.encodeLogs(batch, sourcetype: "ai:gateway:audit")
}
// The C reference (Benchmarks/c-reference): protobuf-c into the same arena, a HEC
// writer in C. It must write the Swift encoder's bytes, or the ratio means nothing.
var referenceBuffer = sluice_reference_buffer()
let referenceEvents = payload.withUnsafeBufferPointer { sluice_reference_decode_hec($0.baseAddress, $0.count, "ai:gateway:audit", &referenceBuffer) }
let referenceBytes = Array(UnsafeBufferPointer(start: referenceBuffer.bytes, count: referenceBuffer.count))
let swiftBytes = HECEncoderBenchmark.encodedLogs(decoded, sourcetype: "ai:gateway:audit")
if referenceEvents != records || referenceBytes != swiftBytes {
    let at = (0..<min(referenceBytes.count, swiftBytes.count)).first { referenceBytes[$0] != swiftBytes[$0] } ?? min(referenceBytes.count, swiftBytes.count)
    print("C reference: writes other bytes than the Swift encoder (\(referenceEvents) events, \(referenceBytes.count) bytes against \(swiftBytes.count); first difference at byte \(at))")
}
let cHEC = row("C reference: decode + encode HEC", bytes: payload.count) {
    payload.withUnsafeBufferPointer { sink &+= sluice_reference_decode_hec($0.baseAddress, $0.count, "ai:gateway:audit", &referenceBuffer) }
}
if let swiftHEC, let cHEC {
    let ratio = (swiftHEC.seconds / Double(swiftHEC.iterations)) / (cHEC.seconds / Double(cHEC.iterations))
    print("decode + HEC encode, Swift / C reference: \(format(ratio, 2))x the time per request (target <= 1.3)")
}

/// The same events as the gateway writes them itself: one JSON object per line.
func gatewayNDJSON(count: Int) -> [UInt8] {
    let actions = [("request", "allow"), ("blocked", "block"), ("escalated", "escalate"), ("redacted", "redact")]
    var text = ""
    for i in 0..<count {
        let (type, action) = actions[i % actions.count]
        text += #"{"event_id":"evt-\#(String(repeating: "0", count: 8 - min(8, String(i).count)))\#(i)-7c1e-4a8b-9d2f","timestamp":"2026-11-21T10:00:\#(String(format2: i % 60)).\#(i % 1000)Z","#
        text += #""event_type":"\#(type)","action":"\#(action)","policy_name":"pii-guard-v\#(i % 7)","model":"gpt-4o-2024-08-06","#
        text += #""gateway_id":"gw-eu-west-1a","user_id":"user-\#(i % 97)@example.com","org_id":"org-\#(i % 13)","latency_ms":\#(i % 500),"risk_score":0.\#(i % 100)}"#
        text += "\n"
    }
    return Array(text.utf8)
}

extension String {
    init(format2 value: Int) { self = value < 10 ? "0\(value)" : "\(value)" }
}

let ndjson = gatewayNDJSON(count: records)
func parseEvents() -> [[OTLPKeyValue]] {
    ndjson.withUnsafeBufferPointer { buffer in
        var reader = JSONValueReader(buffer)
        var events: [[OTLPKeyValue]] = []
        while let (members, _) = try! reader.nextObject() { events.append(members) }
        return events
    }
}
row("gateway NDJSON, parse to values", bytes: ndjson.count) { sink &+= parseEvents().count }
row("gateway NDJSON, parse + build batch + views", bytes: ndjson.count) {
    let records = parseEvents().map { members in
        var record = NewLogRecord()
        record.attributes = members
        record.body = .map(members)
        return record
    }
    let batch = try! OTLPBatch.makeLogs(resource: [], scopeName: "sluice.events", records: records)
    sink &+= readEveryField(batch)
}
let built = try! OTLPBatch.makeLogs(resource: [], scopeName: "sluice.events", records: parseEvents().map { members in
    var record = NewLogRecord()
    record.attributes = members
    record.body = .map(members)
    return record
})
print("gateway NDJSON: \(ndjson.count / records) bytes an event; the batch holds \(built.memoryBytes / records) bytes an event (attributes and map body)")

/// Evaluates `condition` on every record of `decoded`; ns per record.
@MainActor func evaluate(_ text: String) -> Double {
    let condition = try! OTTLCondition(text, context: .log)
    let m = measure(minimumSeconds: seconds) {
        _ = decoded.withLogs { request in
            for (resource, scope, record) in request.records where (try? condition.matches(log: record, resource: resource.resource, scope: scope.scope)) == true {
                sink &+= 1
            }
        }
    }
    return m.seconds / Double(m.iterations) / Double(records) * 1e9
}
for condition in [#"attributes["action"] == "allow""#,
                  #"attributes["action"] == "allow" or resource.attributes["k8s.pod.name"] == "x" or severity_number >= SEVERITY_NUMBER_WARN"#,
                  #"IsMatch(body, "decision (block|escalate)")"#] where selected("OTTL \(condition)") {
    print("OTTL \(condition)  \(format(evaluate(condition), 1)) ns/record")
}
let swiftRegex = try! Regex("decision (block|escalate)")
if selected("Swift Regex") {
    let viaSwiftRegex = measure(minimumSeconds: seconds) {
        _ = decoded.withLogs { request in
            for (_, _, record) in request.records {
                if case .string(let body)? = record.body?.value, body.string.contains(swiftRegex) { sink &+= 1 }
            }
        }
    }
    print("Swift Regex on the body (a String per record), for comparison  " + "\(format(viaSwiftRegex.seconds / Double(viaSwiftRegex.iterations) / Double(records) * 1e9, 1).leftPad(8)) ns/record")
}
/// The `redaction` processor as `sluice run` builds it from `section`.
func redactionProcessor(_ section: String) -> any Processor {
    let config = CollectorConfig.load(text: """
    receivers: {otlp: {protocols: {http: {}}}}
    processors: {redaction: \(section)}
    exporters: {nop: {}}
    service: {pipelines: {logs: {receivers: [otlp], processors: [redaction], exporters: [nop]}}}
    """, file: "bench.yaml")
    let (id, section) = config.processors[0]
    return ComponentRegistry.builtIn.processors["redaction"]!.make(id: id, config: section, context: ComponentContext(logger: .init(label: "bench")))!
}

/// Decodes `request`, runs `processor` on it (none: the plain decode) and reads
/// every field, as one row of the table.
@MainActor
func decodeRow(_ name: String, _ request: [UInt8], through processor: (any Processor)?) {
    row(name, bytes: request.count) {
        let batch = try! OTLPBatch.decode(protobuf: request, signal: .logs)
        _ = processor?.process(batch)
        sink &+= readEveryField(batch)
    }
}

let redaction = redactionProcessor("{allow_all_keys: true}")
let clean = gatewayEvents(count: records, emails: false)
decodeRow("decode + redaction, 1 email a record", payload, through: redaction)
decodeRow("decode, nothing to mask", clean, through: nil)
decodeRow("decode + redaction, nothing to mask", clean, through: redaction)
// The walk over every value without any detector: the rest is the scanning.
decodeRow("decode + redaction walk, no detectors", clean, through: redactionProcessor("{allow_all_keys: true, detectors: []}"))
// The integrity processor: decode, seal every record (canonical form, SHA-256,
// and with chain the three chain attributes) as the fanout does before appending.
func integrityProcessor(_ section: String) -> any AppendOrderedProcessor {
    let config = CollectorConfig.load(text: """
    receivers: {otlp: {protocols: {http: {}}}}
    processors: {integrity: \(section)}
    exporters: {nop: {}}
    service: {pipelines: {logs: {receivers: [otlp], processors: [integrity], exporters: [nop]}}}
    """, file: "bench.yaml")
    let (id, section) = config.processors[0]
    let context = ComponentContext(logger: .init(label: "bench"), dataDirectory: "/tmp/sluice-bench-\(getpid())")
    return ComponentRegistry.builtIn.processors["integrity"]!.make(id: id, config: section, context: context) as! any AppendOrderedProcessor
}

@MainActor
func sealRow(_ name: String, _ request: [UInt8], through processor: any AppendOrderedProcessor) {
    row(name, bytes: request.count) {
        let batch = try! OTLPBatch.decode(protobuf: request, signal: .logs)
        _ = processor.seal(batch, pipeline: "logs") { true }
        sink &+= readEveryField(batch)
    }
}

// Its parts on one decoded batch: the canonical form alone, then with SHA-256.
let sealed = try! OTLPBatch.decode(protobuf: clean, signal: .logs)
var canonicalForm = IntegrityCanonicalForm()
for (label, hashing) in [("integrity canonical form alone", false), ("integrity canonical form + SHA-256", true)] where selected(label) {
    let start = cpuTime()
    var rounds = 0
    var hashed: [UInt8] = []
    while cpuTime() - start < seconds {
        sealed.withLogs { request in
            for (resourceLogs, _, record) in request.records {
                let bytes = canonicalForm.encode(record, resource: resourceLogs.resource)
                if hashing { IntegrityCanonicalForm.hash(bytes, key: nil, into: &hashed) }
                sink &+= bytes.count
            }
        }
        rounds += 1
    }
    print("\(label): \(format((cpuTime() - start) / Double(rounds * records) * 1e9, 1)) ns/record (CPU time)")
}
sealRow("decode + integrity (hash only)", clean, through: integrityProcessor("{}"))
sealRow("decode + integrity (chain)", clean, through: integrityProcessor("{chain: true}"))

// The scanner alone on a clean 100-byte value, in CPU time (the host is shared).
let cleanValue = Array("The model refused the request because the prompt asked for step-by-step instructions on topic 42 now".utf8)
let scanner = SensitiveDataScanner()
let scanRounds = 2_000_000
let scanStart = cpuTime()
cleanValue.withUnsafeBufferPointer { bytes in
    for _ in 0..<scanRounds { scanner.scan(bytes) { _, _ in sink &+= 1 } }
}
print("redaction scan of one clean \(cleanValue.count)-byte value: \(format((cpuTime() - scanStart) / Double(scanRounds) * 1e9, 1)) ns (CPU time)")
if sink == 42 { print("") }

import Foundation
import SluiceCore

/// What `sluice verify` does: recomputes each delivered record's integrity hash from
/// its canonical form (IntegrityCanonicalForm.swift) and walks each stream's chain,
/// naming the first record that was altered and the first that is missing.
///
/// Input is a file of delivered records, one JSON document per line, in any of the
/// forms Sluice delivers: OTLP/JSON lines (the `file` exporter), Splunk HEC event
/// JSON (one or more events per line, as a HEC payload carries them), and
/// Elasticsearch documents in `mapping.mode: otel` (bulk action lines are skipped).
/// Delivery is at least once, so a record seen twice with the same hash is fine.
public struct IntegrityVerifier {
    public struct Seal {
        public var location: String
        public var claimed: String
        /// Every hash the record may have been sealed with (one, except for a HEC
        /// event whose body HEC had to stand in for).
        public var recomputed: [String]
        public var stream: String?
        public var seq: Int64?
        public var prev: String?
        /// On a chain's first record when it continues an earlier run's chain.
        public var prevStream: String?
        public var prevSeq: Int64?

        /// The seal a decoded record carries; `canonical`: its canonical form.
        init(location: String, attributes: AttributesView, canonical: [UInt8], key: [UInt8]?) {
            self.location = location
            claimed = attributes[IntegrityCanonicalForm.hashKey]?.stringValue ?? ""
            stream = attributes["integrity_stream"]?.stringValue
            seq = attributes["integrity_seq"].flatMap { Int64($0.stringValue) }
            prev = attributes["integrity_prev"]?.stringValue
            prevStream = attributes["integrity_prev_stream"]?.stringValue
            prevSeq = attributes["integrity_prev_seq"].flatMap { Int64($0.stringValue) }
            let link = Self.link(stream: stream, seq: seq, prev: prev, prevStream: prevStream, prevSeq: prevSeq)
            recomputed = [IntegrityCanonicalForm.sealHash(canonical, link: link, key: key)]
        }

        /// The seal of a HEC event, from its indexed fields; `canonical`: each form
        /// the record may have had.
        init(location: String, fields: [String: Any], canonical: [[UInt8]], key: [UInt8]?) {
            self.location = location
            claimed = fields[IntegrityCanonicalForm.hashKey] as? String ?? ""
            stream = fields["integrity_stream"] as? String
            seq = (fields["integrity_seq"] as? String).flatMap { Int64($0) }
            prev = fields["integrity_prev"] as? String
            prevStream = fields["integrity_prev_stream"] as? String
            prevSeq = (fields["integrity_prev_seq"] as? String).flatMap { Int64($0) }
            let link = Self.link(stream: stream, seq: seq, prev: prev, prevStream: prevStream, prevSeq: prevSeq)
            recomputed = canonical.map { IntegrityCanonicalForm.sealHash($0, link: link, key: key) }
        }

        /// The record's place in a chain when its seal names one: the hash it should
        /// hold is then taken through the link form.
        static func link(stream: String?, seq: Int64?, prev: String?, prevStream: String?, prevSeq: Int64?) -> IntegrityCanonicalForm.ChainLink? {
            guard let stream, let seq else { return nil }
            var link = IntegrityCanonicalForm.ChainLink(stream: Array(stream.utf8), seq: seq, prev: Array((prev ?? "").utf8))
            if let prevStream, let prevSeq { link.previousRun = (Array(prevStream.utf8), prevSeq) }
            return link
        }
    }

    public let key: [UInt8]?
    /// HEC field names for the severity (`otel_to_hec_fields` of the exporter).
    public var hecSeverityTextField = "severity_text"
    public var hecSeverityNumberField = "severity_number"
    public private(set) var seals: [Seal] = []
    public private(set) var problems: [String] = []
    private var encoder = IntegrityCanonicalForm()

    public init(key: [UInt8]?) { self.key = key }

    // MARK: Reading

    /// Reads one line of the file (numbered from 1).
    public mutating func add(line bytes: [UInt8], number: Int, file: String? = nil) {
        let number = file.map { "\($0):\(number)" } ?? "\(number)"

        var start = 0
        while start < bytes.count, JSONSpans.isSpace(bytes[start]) { start += 1 }
        if start == bytes.count { return }
        var index = 0
        while start < bytes.count {
            guard let end = JSONSpans.valueEnd(bytes, from: start), bytes[start] == UInt8(ascii: "{") else {
                problems.append("line \(number): not a JSON object at byte \(start + 1); expected OTLP/JSON, HEC events or Elasticsearch documents")
                return
            }
            let document = Array(bytes[start..<end])
            index += 1
            addDocument(document, location: index > 1 || end < bytes.count ? "line \(number), event \(index)" : "line \(number)")
            start = end
            while start < bytes.count, JSONSpans.isSpace(bytes[start]) { start += 1 }
        }
    }

    private mutating func addDocument(_ document: [UInt8], location: String) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(document))) as? [String: Any] else {
            problems.append("\(location): invalid JSON")
            return
        }
        if object["resourceLogs"] != nil { return addOTLP(document, location: location) }
        if object["event"] != nil { return addHEC(document, object, location: location) }
        if object.count == 1, let action = object.keys.first, ["create", "index"].contains(action) { return }
        if object["attributes"] != nil || object["resource"] != nil || object["@timestamp"] != nil {
            return addElasticsearch(document, object, location: location)
        }
        problems.append("\(location): neither OTLP/JSON (resourceLogs), a HEC event (event) nor an Elasticsearch otel document (attributes)")
    }

    private mutating func addOTLP(_ document: [UInt8], location: String) {
        let batch: OTLPBatch
        do {
            batch = try OTLPBatch.decode(json: document, signal: .logs)
        } catch {
            problems.append("\(location): invalid OTLP/JSON: \(error)")
            return
        }
        var index = 0
        batch.withLogs { request in
            for (resourceLogs, _, record) in request.records {
                index += 1
                let canonical = encoder.encode(record, resource: resourceLogs.resource)
                seals.append(Seal(location: request.recordCount > 1 ? "\(location), record \(index)" : location,
                                  attributes: record.attributes, canonical: canonical, key: key))
            }
        }
    }

    private mutating func addHEC(_ document: [UInt8], _ object: [String: Any], location: String) {
        let fields = object["fields"] as? [String: Any] ?? [:]
        encoder.reset()
        let renamed: [String: String] = [
            "trace_id": "@trace_id", "span_id": "@span_id", "event_name": "@event_name",
            hecSeverityTextField: "@severity_text", hecSeverityNumberField: "@severity_number",
        ]
        for (name, value) in fields {
            let key = renamed[name] ?? name
            if let text = value as? String {
                encoder.addText(Array(key.utf8), Array(text.utf8))
            } else if let list = value as? [Any] {
                var json = JSONOutput()
                json.append(UInt8(ascii: "["))
                for (i, item) in list.enumerated() {
                    if i > 0 { json.append(UInt8(ascii: ",")) }
                    json.appendString("\(item)")
                }
                json.append(UInt8(ascii: "]"))
                encoder.addJSON(Array(key.utf8), json.bytes)
            } else {
                encoder.addText(Array(key.utf8), Array("\(value)".utf8))
            }
        }
        if let time = JSONSpans.member("time", of: document).map({ Array(document[$0]) }), let millis = Self.hecMillis(time) {
            encoder.addText(Array("@time".utf8), Array(String(millis).utf8))
        }
        var candidates: [[UInt8]] = []
        if let span = JSONSpans.member("event", of: document) {
            let raw = Array(document[span])
            let body: [UInt8] = raw.first == UInt8(ascii: "\"")
                ? Array(((try? JSONSerialization.jsonObject(with: Data(raw), options: .fragmentsAllowed)) as? String ?? "").utf8)
                : raw
            var withBody = encoder
            withBody.addText(Array("@body".utf8), body)
            candidates.append(withBody.serialise())
            // A record without a body went as its event name or "(no body)".
            let text = String(decoding: body, as: UTF8.self)
            if text == HECEncoder.emptyBody || text == fields["event_name"] as? String {
                candidates.append(encoder.serialise())
            }
        }
        seals.append(Seal(location: location, fields: fields, canonical: candidates, key: key))
    }

    /// An Elasticsearch document in the exporter's `otel` mapping mode.
    private mutating func addElasticsearch(_ document: [UInt8], _ object: [String: Any], location: String) {
        var pairs: [OTLPKeyValue] = []
        let resource = ((object["resource"] as? [String: Any])?["attributes"] as? [String: Any]) ?? [:]
        let attributes = object["attributes"] as? [String: Any] ?? [:]
        var record = NewLogRecord()
        for (k, v) in resource { pairs.append(OTLPKeyValue(k, Self.value(v))) }
        for (k, v) in attributes { record.attributes.append(OTLPKeyValue(k, Self.value(v))) }
        // A structured body is hashed as the JSON it was sent as (a decoded
        // dictionary would lose its key order).
        var structuredBody: [UInt8]?
        if let body = object["body"] as? [String: Any] {
            if let text = body["text"] as? String { record.body = .text(text) }
            else if let span = JSONSpans.member("body", of: document) {
                let raw = Array(document[span])
                for name in ["structured", "flattened"] {
                    if let inner = JSONSpans.member(name, of: raw) { structuredBody = Array(raw[inner]) }
                }
            }
        }
        if let text = object["severity_text"] as? String { record.severityText = Array(text.utf8) }
        if let number = object["severity_number"] as? Int { record.severityNumber = Int32(clamping: number) }
        if let name = object["event_name"] as? String { record.eventName = Array(name.utf8) }
        if let trace = object["trace_id"] as? String { record.traceID = JSONValueReader.hexBytes(Array(trace.utf8)) ?? [] }
        if let span = object["span_id"] as? String { record.spanID = JSONValueReader.hexBytes(Array(span.utf8)) ?? [] }
        if let time = object["@timestamp"] as? String { record.timeUnixNano = EventTimestamp.rfc3339(Array(time.utf8)) ?? 0 }
        guard let batch = try? OTLPBatch.makeLogs(resource: pairs, scopeName: "", records: [record]) else {
            problems.append("\(location): out of memory")
            return
        }
        batch.withLogs { request in
            for (resourceLogs, _, view) in request.records {
                encoder.reset()
                if let resource = resourceLogs.resource { encoder.addAttributes(resource.attributes, prefix: nil) }
                encoder.addAttributes(view.attributes, prefix: nil)
                encoder.addRecordFields(view)
                if let structuredBody { encoder.addText(Array("@body".utf8), structuredBody) }
                let canonical = encoder.serialise()
                seals.append(Seal(location: location, attributes: view.attributes, canonical: canonical, key: key))
            }
        }
    }

    // MARK: Checking

    public struct Report {
        public var records: Int
        public var streams: Int
        public var problems: [String]
        public var ok: Bool { problems.isEmpty }
    }

    /// Checks every hash, then every stream's chain.
    public func finish() -> Report {
        var problems = self.problems
        for seal in seals {
            if seal.claimed.isEmpty {
                problems.append("\(seal.location): no integrity_hash (was the integrity processor in the pipeline?)")
            } else if !seal.recomputed.contains(seal.claimed) {
                problems.append("\(seal.location): altered: integrity_hash is \(seal.claimed) but the record hashes to \(seal.recomputed.first ?? "nothing")")
            }
        }
        var byStream: [String: [Seal]] = [:]
        for seal in seals {
            if let stream = seal.stream { byStream[stream, default: []].append(seal) }
            else if seal.seq != nil { problems.append("\(seal.location): integrity_seq without integrity_stream") }
        }
        for stream in byStream.keys.sorted() {
            let ordered = byStream[stream]!.sorted { ($0.seq ?? 0) < ($1.seq ?? 0) }
            var previous: Seal?
            for seal in ordered {
                guard let seq = seal.seq else {
                    problems.append("\(seal.location): no integrity_seq in stream \(stream)")
                    continue
                }
                if let last = previous, let lastSeq = last.seq {
                    if seq == lastSeq {
                        // Delivered twice (at least once): fine when it is the same record.
                        if seal.claimed != last.claimed {
                            problems.append("\(seal.location): stream \(stream) seq \(seq) appears twice with different hashes (also \(last.location))")
                        }
                        continue
                    }
                    if seq != lastSeq + 1 {
                        let missing = seq - lastSeq - 1
                        problems.append("stream \(stream): \(missing == 1 ? "record seq \(lastSeq + 1) is" : "records seq \(lastSeq + 1)–\(seq - 1) are") missing (between \(last.location) and \(seal.location))")
                    } else if seal.prev != last.claimed {
                        problems.append("\(seal.location): integrity_prev does not match the hash of seq \(lastSeq) (\(last.location))")
                    }
                } else if seq == 1, seal.prev != IntegrityProcessor.genesis {
                    problems.append(contentsOf: checkLink(seal, stream: stream, byStream))
                }
                previous = seal
            }
        }
        return Report(records: seals.count, streams: byStream.count, problems: problems)
    }

    /// A chain's first record that continues an earlier run's chain must link to a
    /// record of it that is in the files.
    private func checkLink(_ first: Seal, stream: String, _ byStream: [String: [Seal]]) -> [String] {
        guard let previousStream = first.prevStream, let previousSeq = first.prevSeq else {
            return ["\(first.location): the first record of stream \(stream) links to neither the chain's start nor an earlier stream"]
        }
        guard let earlier = byStream[previousStream] else {
            return ["stream \(stream) continues stream \(previousStream) at seq \(previousSeq), which is not in these files: verify the files of that run too, or its records were removed"]
        }
        guard let linked = earlier.first(where: { $0.seq == previousSeq }) else {
            return ["stream \(stream) continues stream \(previousStream) at seq \(previousSeq), which is missing from these files"]
        }
        if linked.claimed != first.prev {
            return ["\(first.location): integrity_prev does not match the hash of stream \(previousStream) seq \(previousSeq) (\(linked.location))"]
        }
        return []
    }

    // MARK: Helpers

    /// HEC's `time` (seconds with three decimals) in milliseconds, digit by digit.
    static func hecMillis(_ text: [UInt8]) -> UInt64? {
        let parts = text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count <= 2, let seconds = UInt64(String(decoding: parts[0], as: UTF8.self)) else { return nil }
        var fraction = parts.count == 2 ? Array(parts[1]) : []
        while fraction.count < 3 { fraction.append(UInt8(ascii: "0")) }
        guard let millis = UInt64(String(decoding: fraction.prefix(3), as: UTF8.self)) else { return nil }
        return seconds * 1000 + millis
    }

    static func value(_ any: Any) -> OTLPValue {
        switch any {
        case let s as String: return .text(s)
        case let n as NSNumber:
            // Foundation hands JSON booleans over as NSNumbers of C type `c` (char).
            if String(cString: n.objCType) == "c" { return .bool(n.boolValue) }
            if let i = Int64(exactly: n.doubleValue), !"\(n)".contains(".") && !"\(n)".contains("e") { return .int(i) }
            return .double(n.doubleValue)
        case let list as [Any]: return .array(list.map(value))
        case let map as [String: Any]: return .map(map.map { OTLPKeyValue($0.key, value($0.value)) })
        default: return .empty
        }
    }
}

/// Finding the extent of JSON values in bytes without decoding them, so a HEC
/// event's body can be hashed exactly as it was sent.
enum JSONSpans {
    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }

    /// The index just past the value starting at `start`, or nil when malformed.
    static func valueEnd(_ b: [UInt8], from start: Int) -> Int? {
        guard start < b.count else { return nil }
        switch b[start] {
        case UInt8(ascii: "\""):
            var i = start + 1
            while i < b.count {
                if b[i] == UInt8(ascii: "\\") { i += 2; continue }
                if b[i] == UInt8(ascii: "\"") { return i + 1 }
                i += 1
            }
            return nil
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var i = start
            while i < b.count {
                switch b[i] {
                case UInt8(ascii: "\""):
                    guard let end = valueEnd(b, from: i) else { return nil }
                    i = end
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return i + 1 }
                default: break
                }
                i += 1
            }
            return nil
        default:
            var i = start
            while i < b.count, !isSpace(b[i]), b[i] != UInt8(ascii: ","), b[i] != UInt8(ascii: "}"), b[i] != UInt8(ascii: "]") { i += 1 }
            return i > start ? i : nil
        }
    }

    /// The span of the top-level member `name` of the object in `b`.
    static func member(_ name: String, of b: [UInt8]) -> Range<Int>? {
        var i = 1
        let wanted = Array("\"\(name)\"".utf8)
        while i < b.count {
            while i < b.count, isSpace(b[i]) || b[i] == UInt8(ascii: ",") { i += 1 }
            guard i < b.count, b[i] == UInt8(ascii: "\""), let keyEnd = valueEnd(b, from: i) else { return nil }
            let key = Array(b[i..<keyEnd])
            i = keyEnd
            while i < b.count, isSpace(b[i]) || b[i] == UInt8(ascii: ":") { i += 1 }
            guard let valueEnd = valueEnd(b, from: i) else { return nil }
            if key == wanted { return i..<valueEnd }
            i = valueEnd
        }
        return nil
    }
}

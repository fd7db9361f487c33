import SluiceCore

/// One HTTP body: some records concatenated (HEC events one after another, bulk
/// NDJSON lines) or framed as a JSON array (Datadog, Azure Monitor, webhooks),
/// gzipped or not.
struct Payload: Sendable {
    /// Indices into the call's `EncodedRecords`, in order.
    var records: [Int]
    var body: [UInt8]
    var gzipped: Bool
    /// Bytes before compression.
    var rawBytes: Int
}

/// Cuts records into payloads no larger than a byte limit and no longer than an
/// item limit. The byte limit is on the bytes sent, so on the compressed bytes when
/// gzip is on (as the Collector measures `max_content_length_*` and `flush.bytes`;
/// a destination that counts the uncompressed size sets `limitsRawBytes`).
///
/// With gzip the compressed size of a cut is only known after compressing it, so
/// the packer guesses a cut from the compression ratio seen so far, compresses it,
/// and cuts smaller (at the ratio just measured) when the result is over the limit:
/// compress-and-split, never a payload over the limit. The ratio is kept between
/// calls, so after the first payload the guess is usually right the first time.
struct PayloadPacker {
    var limit: Int
    var gzip: Bool
    /// At most this many records in one payload (0: no limit).
    var maxItems = 0
    /// The limit is on the bytes before compression (CloudWatch, Datadog count them so).
    var limitsRawBytes = false
    /// One record alone may take up to this (at least `limit`): an exporter that
    /// learned a lower limit from a 413 still tries a single record up to just
    /// under what was refused.
    var singleRecordLimit = 0
    /// How records are joined into a body: back to back, or as a JSON array.
    var framing = Framing.concatenated
    /// Uncompressed bytes per compressed byte, as last measured.
    var ratio: Double = 4
    /// zlib level.
    var level: Int32 = 1
    /// Aim this far under the limit, so a guess from the last ratio usually fits.
    static let margin = 0.9
    /// Never gather more than this much raw data into one payload, whatever the ratio.
    static let maxRawBytes = 64 << 20

    init(limit: Int, gzip: Bool, maxItems: Int = 0, ratio: Double = 4, level: Int32 = 1) {
        self.limit = limit
        self.gzip = gzip
        self.maxItems = maxItems
        self.ratio = ratio
        self.level = level
    }

    /// What goes before, between and after the records of one body. The limit
    /// counts these bytes too.
    struct Framing: Sendable {
        var prefix: [UInt8] = []
        var separator: [UInt8] = []
        var suffix: [UInt8] = []

        /// Records one after another (NDJSON lines, HEC events).
        static let concatenated = Framing()
        /// `[record,record]`: each record is one JSON value.
        static let jsonArray = Framing(prefix: [UInt8(ascii: "[")], separator: [UInt8(ascii: ",")], suffix: [UInt8(ascii: "]")])

        /// The framing's bytes in a body of `records` records.
        func overhead(_ records: Int) -> Int { prefix.count + suffix.count + separator.count * max(0, records - 1) }
    }

    /// Records that cannot be sent even alone: over the limit.
    struct TooLarge {
        var record: Int
        var bytes: Int
    }

    /// Packs `order` (record indices, in the order to send) into payloads.
    mutating func pack(_ records: EncodedRecords, _ order: [Int]) -> (payloads: [Payload], tooLarge: [TooLarge]) {
        var payloads: [Payload] = []
        var tooLarge: [TooLarge] = []
        let single = max(singleRecordLimit, limit)
        var start = 0
        while start < order.count {
            var target = gzip && !limitsRawBytes ? min(Int(Double(limit) * ratio * Self.margin), Self.maxRawBytes) : limit
            while true {
                // At least one record; then as many as fit the target and the item limit.
                var end = start + 1
                var raw = records.size(order[start]) + framing.overhead(1)
                while end < order.count, maxItems == 0 || end - start < maxItems,
                      raw + records.size(order[end]) + framing.separator.count <= target {
                    raw += records.size(order[end]) + framing.separator.count
                    end += 1
                }
                let indices = Array(order[start..<end])
                let rawBody = Self.concatenate(records, indices, framing: framing)
                var body = rawBody
                var gzipped = false
                if gzip, let compressed = Compression.gzip(rawBody, level: level) {
                    body = compressed
                    gzipped = true
                }
                let counted = limitsRawBytes ? raw : body.count
                if counted <= limit || (indices.count == 1 && counted <= single) {
                    payloads.append(Payload(records: indices, body: body, gzipped: gzipped, rawBytes: raw))
                    if gzipped, body.count > 0 { ratio = max(1, Double(raw) / Double(body.count)) }
                    start = end
                    break
                }
                if indices.count == 1 {
                    tooLarge.append(TooLarge(record: indices[0], bytes: counted))
                    start = end
                    break
                }
                // Over: cut at the size this measurement says would fit.
                if gzipped { ratio = max(1, Double(raw) / Double(body.count)) }
                target = min(Int(Double(raw) * Double(limit) / Double(counted) * Self.margin), raw - records.size(indices.last!))
            }
        }
        return (payloads, tooLarge)
    }

    /// The records' bytes one after another, framed.
    static func concatenate(_ records: EncodedRecords, _ indices: [Int], framing: Framing = .concatenated) -> [UInt8] {
        guard let first = indices.first, let last = indices.last else { return framing.prefix + framing.suffix }
        // Consecutive records without a separator are one slice of the buffer.
        if framing.separator.isEmpty, framing.prefix.isEmpty, framing.suffix.isEmpty, last - first == indices.count - 1 {
            return Array(records.bytes[records.range(first).lowerBound..<records.range(last).upperBound])
        }
        var out: [UInt8] = []
        out.reserveCapacity(indices.reduce(0) { $0 + records.size($1) } + framing.overhead(indices.count))
        out += framing.prefix
        for (n, i) in indices.enumerated() {
            if n > 0 { out += framing.separator }
            out.append(contentsOf: records.bytes[records.range(i)])
        }
        out += framing.suffix
        return out
    }
}

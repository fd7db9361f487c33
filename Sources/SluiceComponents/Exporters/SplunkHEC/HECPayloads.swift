import SluiceCore

/// One HTTP body for the HEC event endpoint: some events concatenated (HEC takes
/// JSON objects one after another, with no array and no commas), gzipped or not.
struct HECPayload {
    /// Indices into the call's `HECEvents`, in order.
    var events: [Int]
    var body: [UInt8]
    var gzipped: Bool
    /// Bytes before compression.
    var rawBytes: Int
}

/// Cuts events into payloads no larger than a limit — on the bytes sent, so on the
/// compressed bytes when gzip is on, as the Collector measures `max_content_length_*`.
///
/// With gzip the compressed size of a cut is only known after compressing it, so
/// the packer guesses a cut from the compression ratio seen so far, compresses it,
/// and cuts smaller (at the ratio just measured) when the result is over the limit:
/// compress-and-split, never a payload over the limit. The ratio is kept between
/// calls, so after the first payload the guess is usually right the first time.
struct HECPayloadPacker {
    var limit: Int
    var gzip: Bool
    /// One event alone may take up to this (at least `limit`): see SplunkHECExporter.pack.
    var singleEventLimit = 0
    /// Uncompressed bytes per compressed byte, as last measured.
    var ratio: Double = 4
    /// zlib level (`compression_params.level`; SplunkHECConfig says why 1).
    var level: Int32 = 1
    /// Aim this far under the limit, so a guess from the last ratio usually fits.
    static let margin = 0.9
    /// Never gather more than this much raw JSON into one payload, whatever the ratio.
    static let maxRawBytes = 64 << 20

    /// Events that cannot be sent even alone: over the limit after compression.
    struct TooLarge {
        var event: Int
        var bytes: Int
    }

    /// Packs `order` (event indices, in the order to send) into payloads.
    mutating func pack(_ events: HECEvents, _ order: [Int]) -> (payloads: [HECPayload], tooLarge: [TooLarge]) {
        var payloads: [HECPayload] = []
        var tooLarge: [TooLarge] = []
        var start = 0
        while start < order.count {
            var target = gzip ? min(Int(Double(limit) * ratio * Self.margin), Self.maxRawBytes) : limit
            while true {
                // At least one event; then as many as fit the target.
                var end = start + 1
                var raw = events.size(order[start])
                while end < order.count, raw + events.size(order[end]) <= target {
                    raw += events.size(order[end])
                    end += 1
                }
                let indices = Array(order[start..<end])
                let rawBody = Self.concatenate(events, indices)
                var body = rawBody
                var gzipped = false
                if gzip, let compressed = Compression.gzip(rawBody, level: level) {
                    body = compressed
                    gzipped = true
                }
                if body.count <= limit || (indices.count == 1 && body.count <= singleEventLimit) {
                    payloads.append(HECPayload(events: indices, body: body, gzipped: gzipped, rawBytes: raw))
                    if gzipped, body.count > 0 { ratio = max(1, Double(raw) / Double(body.count)) }
                    start = end
                    break
                }
                if indices.count == 1 {
                    tooLarge.append(TooLarge(event: indices[0], bytes: body.count))
                    start = end
                    break
                }
                // Over: cut at the size this measurement says would fit.
                if gzipped { ratio = max(1, Double(raw) / Double(body.count)) }
                target = min(Int(Double(raw) * Double(limit) / Double(body.count) * Self.margin), raw - events.size(indices.last!))
            }
        }
        return (payloads, tooLarge)
    }

    /// The events' bytes one after another.
    static func concatenate(_ events: HECEvents, _ indices: [Int]) -> [UInt8] {
        guard let first = indices.first, let last = indices.last else { return [] }
        // Consecutive events are one slice of the buffer.
        if last - first == indices.count - 1 {
            return Array(events.bytes[events.range(first).lowerBound..<events.range(last).upperBound])
        }
        var out: [UInt8] = []
        out.reserveCapacity(indices.reduce(0) { $0 + events.size($1) })
        for i in indices { out.append(contentsOf: events.bytes[events.range(i)]) }
        return out
    }
}

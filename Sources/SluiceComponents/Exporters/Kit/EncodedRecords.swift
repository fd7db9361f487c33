// The exporter kit: what every HTTP exporter shares, so that delivering safely is
// written once (docs/exporter-kit.md). An exporter brings its config, its encoder
// (records → the destination's bytes) and its answer parser (the destination's
// response → per-record results); the kit does the rest:
//
// - EncodedRecords: one export call's records, encoded back to back, with where
//   each came from (RecordLocator);
// - PayloadPacker: cuts them into payloads under a byte and an item limit;
// - PayloadDelivery: sends the payloads, splits on 413, applies per-record
//   results and remembers progress, so a retry sends only what is left;
// - RejectedRecords: OTLP batches holding just the refused records, for the
//   dead-letter file;
// - HTTPExporterSettings: the Collector's shared client keys, read once;
// - ResponseClass: what an HTTP status means for delivery;
// - HTTPTransport: the HTTP client, or a scripted fake in tests.
import SluiceCore

/// Where one record came from, so refused records can be put back into OTLP
/// batches for the dead-letter file.
struct RecordLocator: Hashable, Sendable {
    var batch: Int32
    var resource: Int32
    var scope: Int32
    var record: Int32
}

/// The encoded records of one export call: every record's bytes back to back in
/// one buffer, in record order, and where each came from.
struct EncodedRecords {
    var bytes: [UInt8] = []
    /// End offset of each record in `bytes`; a record starts where the previous ends.
    var ends: [Int] = []
    var locators: [RecordLocator] = []

    var count: Int { ends.count }
    func range(_ i: Int) -> Range<Int> { (i == 0 ? 0 : ends[i - 1])..<ends[i] }
    func size(_ i: Int) -> Int { ends[i] - (i == 0 ? 0 : ends[i - 1]) }
}

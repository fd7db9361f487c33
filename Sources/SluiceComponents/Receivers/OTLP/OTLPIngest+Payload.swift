// OTLP's own pieces of an answer: the payload formats OTLP/HTTP offers, and the
// few protobuf fields an `Export*ServiceResponse` or `google.rpc.Status` needs.
// Receiving itself (decompress, decode, hand to the pipelines, count) is the
// receiver kit's ReceiverIngest.
import NIOCore
import SluiceCore
import SluiceNet

/// How a request's payload is encoded (OTLP/HTTP offers both; gRPC is protobuf).
enum OTLPPayloadFormat: Sendable { case protobuf, json }

extension ReceiverIngest {
    /// Ingests an OTLP request of `format`.
    func ingest(_ payload: ByteBuffer, signal: OTLPSignal, format: OTLPPayloadFormat, compression: ContentEncoding,
                limits: OTLPDecodeLimits, completion: @escaping @Sendable (ReceiverIngestOutcome) -> Void) {
        ingest(payload, signal: signal, compression: compression, limits: limits, decode: { raw throws(OTLPDecodeError) in
            switch format {
            case .protobuf: try OTLPBatch.decode(protobuf: raw, signal: signal, limits: limits)
            case .json: try OTLPBatch.decode(json: raw, signal: signal, limits: limits)
            }
        }, completion: completion)
    }
}

/// `Export{Logs,Trace,Metrics}ServiceResponse` in protobuf: empty, or with
/// `partial_success` (field 1: rejected count as field 1, error_message as field 2)
/// when processors dropped items on purpose; clients must not retry those.
/// (https://opentelemetry.io/docs/specs/otlp/#partial-success)
func exportResponseProtobuf(rejected: Int, message: String?) -> [UInt8] {
    guard rejected > 0 else { return [] }
    var inner = ProtobufWriter()
    inner.varintField(1, UInt64(rejected))
    inner.stringField(2, message ?? "")
    var outer = ProtobufWriter()
    outer.bytesField(1, inner.bytes)
    return outer.bytes
}

/// The few protobuf fields an answer needs, written by hand.
struct ProtobufWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    mutating func varintField(_ number: UInt64, _ value: UInt64) {
        varint(number << 3)
        varint(value)
    }

    mutating func bytesField(_ number: UInt64, _ value: [UInt8]) {
        varint(number << 3 | 2)
        varint(UInt64(value.count))
        bytes += value
    }

    mutating func stringField(_ number: UInt64, _ value: String) {
        guard !value.isEmpty else { return }
        bytesField(number, Array(value.utf8))
    }

    /// Wire type 1: eight bytes, little-endian (fixed64, double).
    mutating func fixed64Field(_ number: UInt64, _ value: UInt64) {
        varint(number << 3 | 1)
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
}

// libFuzzer target for the OTLP decoders (protobuf and OTLP/JSON, all signals).
// Built by scripts/fuzz.sh together with SluiceCore's sources in one module.
//
// The first input byte picks the decoder; the rest is the body. A body that
// decodes must also survive the way out: packed as protobuf (the same bytes as
// protobuf-c's packer writes) it decodes again to the same bytes, and written as OTLP/JSON it is valid UTF-8 and decodes again.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let selector = Int(data[0])
    let signal = OTLPSignal.allCases[selector % 3]
    let body = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let limits = OTLPDecodeLimits(maxBodyBytes: 1 << 20, maxNestingDepth: 32)
    let decoded: OTLPBatch?
    if selector & 0x80 == 0 {
        decoded = try? OTLPBatch.decode(protobuf: body, signal: signal, limits: limits)
    } else {
        decoded = try? OTLPBatch.decode(json: body, signal: signal, limits: limits)
    }
    guard let batch = decoded else { return 0 }
    _ = batch.itemCount

    let packed = batch.encodeProtobuf()
    // Logs are packed by LogsProtobufWriter, whose bytes must be protobuf-c's.
    guard packed == OTLPBatch.packWithProtobufC(batch.message) else { fatalError("packed bytes differ from protobuf-c's") }
    guard let again = try? OTLPBatch.decode(protobuf: packed, signal: signal, limits: OTLPDecodeLimits(maxBodyBytes: 64 << 20, maxNestingDepth: 32)) else {
        fatalError("packed batch does not decode again")
    }
    guard again.encodeProtobuf() == packed else { fatalError("protobuf round trip changed the bytes") }

    let json = batch.encodeJSON()
    guard String(validating: json, as: UTF8.self) != nil else { fatalError("JSON output is not valid UTF-8") }
    guard (try? OTLPBatch.decode(json: json, signal: signal, limits: OTLPDecodeLimits(maxBodyBytes: 256 << 20, maxNestingDepth: 32))) != nil else {
        fatalError("JSON output does not decode again")
    }
    return 0
}

// SluiceOTLP: the data layer every receiver, processor and exporter stands on.
//
// - `OTLPBatch` owns one decoded OTLP request: protobuf-c's C structs in an arena
//   (`OTLPArena`) that goes away with the batch. OTLP/JSON decodes into the same
//   structs, so everything downstream sees one form.
// - Views (`LogRecordView`, `SpanView`, `AnyValueView`, …) read those structs in
//   place; there is no intermediate tree of Swift objects.
// - `OTLPDecodeLimits` and the checks behind it keep hostile input (deep nesting,
//   huge bodies, compression bombs) from reaching protobuf-c or exhausting memory.
// - `JSONOutput` writes JSON that is always valid UTF-8, whatever the input held.
//
// It depends on nothing but the C libraries, so the fuzzer builds it on its own.

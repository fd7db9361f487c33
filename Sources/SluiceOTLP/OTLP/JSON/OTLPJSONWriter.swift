#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import COTLP

/// Writes any OTLP message as OTLP/JSON, walking protobuf-c's structs with the
/// message's `MessageSchema`.
///
/// OTLP/JSON is proto3's JSON mapping with OTLP's own rules
/// (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding): keys in
/// lowerCamelCase, `traceId`/`spanId`/`parentSpanId` as hex rather than base64,
/// enums as integers, 64-bit integers as decimal strings, default values left out.
struct OTLPJSONWriter {
    var out: JSONOutput

    init(capacity: Int) { out = JSONOutput(reservingCapacity: capacity) }

    mutating func writeMessage(_ message: UnsafeRawPointer, schema: MessageSchema) {
        let table = OTLPSchemas.shared.jsonTable!
        writeMessage(message, row: schema.index, table.rows)
    }

    /// Walks `OTLPSchemas.JSONTable`: plain data, no reference counting per field or
    /// per nested message.
    private mutating func writeMessage(_ message: UnsafeRawPointer, row: Int, _ rows: UnsafeBufferPointer<UnsafeBufferPointer<OTLPSchemas.JSONTable.Field>>) {
        out.append(UInt8(ascii: "{"))
        var first = true
        for field in rows[row] {
            if field.isRepeated {
                let count = message.load(fromByteOffset: field.quantifierOffset, as: Int.self)
                guard count > 0, let array = message.load(fromByteOffset: field.offset, as: UnsafeRawPointer?.self) else { continue }
                key(field, &first)
                out.append(UInt8(ascii: "["))
                let size = field.type.storageSize
                for i in 0..<count {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    writeValue(array + i * size, field, rows)
                }
                out.append(UInt8(ascii: "]"))
                continue
            }
            if field.isOneofMember {
                guard message.load(fromByteOffset: field.quantifierOffset, as: UInt32.self) == field.number else { continue }
            } else if field.hasPresenceFlag {
                guard message.load(fromByteOffset: field.quantifierOffset, as: Int32.self) != 0 else { continue }
            } else if isDefault(message + field.offset, field.type) {
                continue
            }
            key(field, &first)
            writeValue(message + field.offset, field, rows)
        }
        out.append(UInt8(ascii: "}"))
    }

    private mutating func key(_ field: OTLPSchemas.JSONTable.Field, _ first: inout Bool) {
        if !first { out.append(UInt8(ascii: ",")) }
        first = false
        out.append(UInt8(ascii: "\""))
        out.bytes.append(contentsOf: field.jsonName)
        out.append(ascii: "\":")
    }

    private func isDefault(_ p: UnsafeRawPointer, _ type: FieldType) -> Bool {
        switch type {
        case .int32, .sint32, .sfixed32, .uint32, .fixed32, .enumeration, .bool:
            return p.load(as: UInt32.self) == 0
        case .float:
            return p.load(as: UInt32.self) == 0  // +0.0 only; -0.0 is written
        case .int64, .sint64, .sfixed64, .uint64, .fixed64, .double:
            return p.load(as: UInt64.self) == 0
        case .string, .bytes:
            return p.load(as: ProtobufCBinaryData.self).len == 0
        case .message:
            return p.load(as: UnsafeRawPointer?.self) == nil
        }
    }

    /// One value stored at `p` (a struct member or an element of a repeated array).
    private mutating func writeValue(_ p: UnsafeRawPointer, _ field: OTLPSchemas.JSONTable.Field,
                                     _ rows: UnsafeBufferPointer<UnsafeBufferPointer<OTLPSchemas.JSONTable.Field>>) {
        switch field.type {
        case .int32, .sint32, .sfixed32:
            out.appendInt(Int64(p.load(as: Int32.self)))
        case .enumeration:
            out.appendInt(Int64(p.load(as: Int32.self)))
        case .uint32, .fixed32:
            out.appendUInt(UInt64(p.load(as: UInt32.self)))
        case .int64, .sint64, .sfixed64:
            out.append(UInt8(ascii: "\""))
            out.appendInt(p.load(as: Int64.self))
            out.append(UInt8(ascii: "\""))
        case .uint64, .fixed64:
            out.append(UInt8(ascii: "\""))
            out.appendUInt(p.load(as: UInt64.self))
            out.append(UInt8(ascii: "\""))
        case .float:
            out.appendDouble(Double(p.load(as: Float.self)))
        case .double:
            out.appendDouble(p.load(as: Double.self))
        case .bool:
            out.appendBool(p.load(as: Int32.self) != 0)
        case .string:
            let data = p.load(as: ProtobufCBinaryData.self)
            out.appendString(UnsafeBufferPointer(start: data.data, count: data.len))
        case .bytes:
            let data = p.load(as: ProtobufCBinaryData.self)
            let buffer = UnsafeBufferPointer(start: data.data, count: data.len)
            if field.isHexID { out.appendHexString(buffer) } else { out.appendBase64String(buffer) }
        case .message:
            if let child = p.load(as: UnsafeRawPointer?.self), field.child >= 0 {
                writeMessage(child, row: field.child, rows)
            } else {
                out.append(ascii: "{}")
            }
        }
    }
}

extension OTLPBatch {
    /// The request as OTLP/JSON, on one line (the file exporter's line format).
    public func encodeJSON() -> [UInt8] {
        var bytes: [UInt8] = []
        appendJSON(to: &bytes)
        return bytes
    }

    /// Appends the request as OTLP/JSON to `bytes` (the file exporter writes several
    /// requests into one buffer without copying each).
    public func appendJSON(to bytes: inout [UInt8]) {
        var writer = OTLPJSONWriter(capacity: 0)
        swap(&writer.out.bytes, &bytes)
        // About a quarter of the arena; grown by doubling, so that appending several
        // requests never copies the buffer once per request.
        let need = writer.out.bytes.count + arena.usedBytes / 3
        if writer.out.bytes.capacity < need { writer.out.bytes.reserveCapacity(max(need, writer.out.bytes.capacity * 2)) }
        writer.writeMessage(UnsafeRawPointer(message), schema: OTLPSchemas.shared.request(signal))
        swap(&writer.out.bytes, &bytes)
    }
}

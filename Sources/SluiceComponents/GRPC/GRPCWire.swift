// The pieces of gRPC over HTTP/2 that unary calls need on both ends (the OTLP
// receiver and the `otlp` exporter), from the wire spec
// (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
//
//   Length-Prefixed-Message → Compressed-Flag Message-Length Message
//   Compressed-Flag → 0 / 1            ; encoded as 1 byte unsigned integer
//   Message-Length → {length of Message} ; encoded as 4 byte unsigned integer (big endian)
//   Trailers → Status [Status-Message] *Custom-Metadata
//   Status-Message → "grpc-message" Percent-Encoded
//
// and the status codes of https://grpc.github.io/grpc/core/md_doc_statuscodes.html.
import Foundation
import NIOCore
import NIOHTTP1
import SluiceNet

/// A gRPC status: the code and message that go into `grpc-status`/`grpc-message`.
struct GRPCStatus: Error, Sendable, Equatable {
    enum Code: Int, Sendable {
        case ok = 0
        case cancelled = 1
        case unknown = 2
        case invalidArgument = 3
        case deadlineExceeded = 4
        case notFound = 5
        case alreadyExists = 6
        case permissionDenied = 7
        case resourceExhausted = 8
        case failedPrecondition = 9
        case aborted = 10
        case outOfRange = 11
        case unimplemented = 12
        case `internal` = 13
        case unavailable = 14
        case dataLoss = 15
        case unauthenticated = 16

        /// As the specification spells it, with the number: "RESOURCE_EXHAUSTED (8)".
        var name: String {
            let camel = String(describing: self).replacingOccurrences(of: "`", with: "")
            var out = ""
            for character in camel {
                if character.isUppercase { out += "_" }
                out += character.uppercased()
            }
            return "\(out) (\(rawValue))"
        }
    }

    var code: Code
    var message: String
    /// When set, the status carries a google.rpc.RetryInfo: OTLP clients retry
    /// RESOURCE_EXHAUSTED only when it is there, and honour its delay.
    /// (https://opentelemetry.io/docs/specs/otlp/#otlpgrpc-throttling)
    var retryAfter: Duration?

    init(_ code: Code, _ message: String, retryAfter: Duration? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    /// `grpc-status`, `grpc-message` and, with a retry delay, `grpc-status-details-bin`.
    var trailers: HTTPHeaders {
        var trailers = HTTPHeaders([("grpc-status", String(code.rawValue))])
        if !message.isEmpty { trailers.add(name: "grpc-message", value: Self.percentEncoded(message)) }
        if retryAfter != nil { trailers.add(name: "grpc-status-details-bin", value: Self.unpaddedBase64(statusProtobuf)) }
        return trailers
    }

    /// "Trailers-Only": a status with no message, in one HEADERS frame that ends the
    /// stream. HTTP status 200 even for errors, as gRPC clients read the status
    /// from the trailers.
    func trailersOnlyResponse(extraHeaders: HTTPHeaders = HTTPHeaders()) -> HTTPServerResponse {
        var headers = HTTPHeaders([("content-type", "application/grpc")])
        headers.add(contentsOf: extraHeaders)
        return HTTPServerResponse(status: .ok, headers: headers, body: nil, trailers: trailers)
    }

    /// google.rpc.Status { int32 code = 1; string message = 2; repeated Any details = 3 },
    /// with one Any holding google.rpc.RetryInfo { Duration retry_delay = 1 }.
    var statusProtobuf: [UInt8] {
        var status = ProtobufWriter()
        status.varintField(1, UInt64(code.rawValue))
        status.stringField(2, message)
        if let retryAfter {
            let (seconds, attoseconds) = retryAfter.components
            var duration = ProtobufWriter()
            if seconds > 0 { duration.varintField(1, UInt64(seconds)) }
            if attoseconds > 0 { duration.varintField(2, UInt64(attoseconds / 1_000_000_000)) }
            var retryInfo = ProtobufWriter()
            retryInfo.bytesField(1, duration.bytes)
            var any = ProtobufWriter()
            any.stringField(1, "type.googleapis.com/google.rpc.RetryInfo")
            any.bytesField(2, retryInfo.bytes)
            status.bytesField(3, any.bytes)
        }
        return status.bytes
    }

    /// "Percent-Byte-Unencoded → 1*( %x20-%x24 / %x26-%x7E ) ; space and VCHAR,
    /// except %": every other byte of the UTF-8 message is written as %XX.
    static func percentEncoded(_ message: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(message.utf8.count)
        for byte in message.utf8 {
            if (0x20...0x7E).contains(byte) && byte != 0x25 {
                out.append(byte)
            } else {
                out += [0x25, hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The status a server sent: in the trailers, or in the headers of a
    /// Trailers-Only answer; `nil` when neither has `grpc-status`.
    init?(headers: HTTPHeaders, trailers: HTTPHeaders) {
        guard let text = trailers.first(name: "grpc-status") ?? headers.first(name: "grpc-status"), let number = Int(text) else { return nil }
        let fields = trailers.contains(name: "grpc-status") ? trailers : headers
        self.init(Code(rawValue: number) ?? .unknown, Self.percentDecoded(fields.first(name: "grpc-message") ?? ""))
        if let details = fields.first(name: "grpc-status-details-bin") { retryAfter = Self.retryDelay(inStatusDetails: details) }
    }

    static func percentDecoded(_ text: String) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == 0x25, let high = iterator.next(), let low = iterator.next(),
               let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The delay of a google.rpc.RetryInfo among a google.rpc.Status's details
    /// (base64, padded or not).
    static func retryDelay(inStatusDetails base64: String) -> Duration? {
        var text = base64.trimmingCharacters(in: .whitespaces)
        while text.count % 4 != 0 { text += "=" }
        guard let data = Data(base64Encoded: text) else { return nil }
        for any in ProtobufFields(Array(data)).bytes(3) {
            let fields = ProtobufFields(any)
            guard fields.bytes(1).first.map({ String(decoding: $0, as: UTF8.self) }) == "type.googleapis.com/google.rpc.RetryInfo",
                  let retryInfo = fields.bytes(2).first, let duration = ProtobufFields(retryInfo).bytes(1).first else { continue }
            let parts = ProtobufFields(duration)
            return .seconds(Int64(bitPattern: parts.varint(1) ?? 0)) + .nanoseconds(Int64(bitPattern: parts.varint(2) ?? 0))
        }
        return nil
    }

    /// Binary metadata ("-bin" keys) is base64; implementations "SHOULD emit
    /// un-padded values".
    static func unpaddedBase64(_ bytes: [UInt8]) -> String {
        var text = Data(bytes).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }
}

/// The one message of a unary request, cut from the body by its 5-byte prefix.
struct GRPCMessage {
    var compressed: Bool
    var payload: ByteBuffer

    /// Exactly one Length-Prefixed-Message, no more than `maxLength` bytes long.
    static func single(in body: ByteBuffer, maxLength: Int) throws(GRPCStatus) -> GRPCMessage {
        var body = body
        guard body.readableBytes > 0 else {
            throw GRPCStatus(.invalidArgument, "the request has no message; an Export call sends exactly one")
        }
        guard let flag = body.readInteger(as: UInt8.self), let length = body.readInteger(endianness: .big, as: UInt32.self) else {
            throw GRPCStatus(.invalidArgument, "the request ends inside the 5-byte message prefix")
        }
        guard flag <= 1 else {
            throw GRPCStatus(.invalidArgument, "the message's compressed flag is \(flag); it must be 0 or 1")
        }
        guard Int(length) <= maxLength else {
            throw GRPCStatus(.resourceExhausted, "message of \(length) bytes is over max_recv_msg_size_mib (\(maxLength) bytes)")
        }
        guard let payload = body.readSlice(length: Int(length)) else {
            throw GRPCStatus(.invalidArgument, "the message prefix announces \(length) bytes but only \(body.readableBytes) follow")
        }
        guard body.readableBytes == 0 else {
            throw GRPCStatus(.invalidArgument, "the request holds more than one message; an Export call sends exactly one")
        }
        return GRPCMessage(compressed: flag == 1, payload: payload)
    }

    /// The 5-byte prefix and the message, as a request or response body.
    static func framed(_ message: [UInt8], compressed: Bool = false) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(5 + message.count)
        buffer.writeInteger(UInt8(compressed ? 1 : 0))
        buffer.writeInteger(UInt32(message.count), endianness: .big)
        buffer.writeBytes(message)
        return buffer
    }
}

/// Reads the top-level fields of a small protobuf message (statuses, responses):
/// length-delimited ones and varints by number. Malformed input yields what was
/// read before the damage.
struct ProtobufFields {
    private var lengthDelimited: [UInt64: [[UInt8]]] = [:]
    private var varints: [UInt64: UInt64] = [:]

    init(_ bytes: [UInt8]) {
        var index = 0
        func readVarint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while index < bytes.count, shift < 64 {
                let byte = bytes[index]
                index += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while index < bytes.count, let tag = readVarint() {
            let number = tag >> 3
            switch tag & 7 {
            case 0:
                guard let value = readVarint() else { return }
                varints[number] = value
            case 1:
                index += 8
            case 2:
                guard let length = readVarint(), length <= UInt64(bytes.count - index) else { return }
                lengthDelimited[number, default: []].append(Array(bytes[index..<index + Int(length)]))
                index += Int(length)
            case 5:
                index += 4
            default:
                return
            }
        }
    }

    func bytes(_ number: UInt64) -> [[UInt8]] { lengthDelimited[number] ?? [] }
    func varint(_ number: UInt64) -> UInt64? { varints[number] }
}

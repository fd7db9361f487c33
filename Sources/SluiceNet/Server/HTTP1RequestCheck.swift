// What an HTTP/1.1 request head must satisfy before its body is read, as RFC 9112
// says, with no sockets involved (the connection handler acts on the verdict).
import NIOHTTP1

enum HTTP1RequestCheck {
    enum Verdict: Equatable {
        case accept
        /// Answer `status` with `message` and close the connection.
        case refuse(HTTPResponseStatus, String)
    }

    static func check(_ head: HTTPRequestHead, maxBodyBytes: Int) -> Verdict {
        // RFC 9112 §3.2 (https://www.rfc-editor.org/rfc/rfc9112#section-3.2):
        //   "A server MUST respond with a 400 (Bad Request) status code to any
        //    HTTP/1.1 request message that lacks a Host header field and to any
        //    request message that contains more than one Host header field line
        //    or a Host header field with an invalid field value."
        if head.headers["host"].count > 1 {
            return .refuse(.badRequest, "more than one Host header; send exactly one")
        }
        if head.version.major == 1, head.version.minor >= 1, head.headers["host"].isEmpty {
            return .refuse(.badRequest, "no Host header; HTTP/1.1 requests need exactly one")
        }
        // RFC 9112 §6.1 (https://www.rfc-editor.org/rfc/rfc9112#section-6.1):
        //   "If a Transfer-Encoding header field is present in a request and the
        //    chunked transfer coding is not the final encoding, the message body
        //    length cannot be determined reliably; the server MUST respond with the
        //    400 (Bad Request) status code and then close the connection."
        // and §6.1 again: "A server that receives a request message with a transfer
        // coding it does not understand SHOULD respond with 501 (Not Implemented)."
        // Only `chunked` is understood here; a content coding belongs in
        // Content-Encoding.
        let codings = head.headers["transfer-encoding"].flatMap { $0.split(separator: ",") }
            .map { String($0.filter { $0 != " " && $0 != "\t" }).lowercased() }
        if !codings.isEmpty {
            if codings.last != "chunked" {
                return .refuse(.badRequest, "Transfer-Encoding must end with chunked")
            }
            if codings.count > 1 {
                return .refuse(.notImplemented, "Transfer-Encoding \(codings.joined(separator: ", ")) is not supported; send chunked alone and name a compression in Content-Encoding")
            }
        }
        if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > maxBodyBytes {
            return .refuse(.payloadTooLarge, "request body of \(length) bytes is over max_request_body_size (\(maxBodyBytes) bytes)")
        }
        return .accept
    }
}

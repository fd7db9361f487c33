// The server side of one HTTP/2 connection, on nghttp2.
//
// nghttp2 parses frames, runs HPACK, enforces the protocol's rules (stream states,
// SETTINGS_MAX_CONCURRENT_STREAMS, the CONTINUATION and rapid-reset limits) and
// produces the bytes to send; it never touches a socket. Bytes from the network go
// in through `receive` (nghttp2_session_mem_recv), and `drainOutput`
// (nghttp2_session_mem_send) hands back what should go out. The callbacks nghttp2
// makes while parsing fill in the per-stream state below; the NIO handler
// (HTTP2ServerConnectionHandler.swift) collects finished requests with `takeEvents` and
// answers them with `respond`. Everything runs on the connection's event loop.
//
// Flow control (RFC 9113 §5.2, https://www.rfc-editor.org/rfc/rfc9113#section-5.2):
// automatic WINDOW_UPDATE is off. The connection window is returned at once, so one
// slow stream never stalls the others; a stream's window is returned only while the
// bodies held by the connection are under `bufferedBodyLimit` — except for the
// oldest incomplete stream, which always progresses, so the connection cannot
// deadlock. A client that sends faster than the pipelines take data is thereby
// held back by its stream windows instead of filling memory.
import CNGHTTP2
import NIOCore
import NIOHTTP1

/// What the connection handler must act on after bytes were received.
enum HTTP2SessionEvent {
    /// A request is complete (END_STREAM seen) and goes to the responder.
    case request(streamID: Int32, HTTPServerRequest)
    /// A request the server answers itself (body or headers over the limits): the
    /// handler asks the responder for the protocol's error answer.
    case reject(streamID: Int32, status: HTTPResponseStatus, message: String, headers: HTTPHeaders)
}

/// Limits one HTTP/2 connection enforces.
struct HTTP2SessionLimits {
    var maxBodyBytes: Int
    var maxConcurrentStreams: Int
    var maxHeaderListBytes: Int
    /// SETTINGS_INITIAL_WINDOW_SIZE: how far a client may send ahead on one stream.
    /// With 100 streams a connection may have 12.5 MiB in flight beyond what it
    /// holds; on a link with 1 ms round trips one stream still moves ~128 MB/s.
    var streamWindowBytes: Int = 128 << 10
    /// Bodies held by one connection above which stream windows stop being returned.
    var bufferedBodyLimit: Int
    /// Client RST_STREAMs allowed in a burst, and regained per second (rapid reset,
    /// CVE-2023-44487); beyond them nghttp2 sends GOAWAY.
    var resetBurst: UInt64 = 400
    var resetRatePerSecond: UInt64 = 50
}

final class HTTP2ServerSession {
    private struct Stream {
        var method = ""
        var path = ""
        var authority: String?
        var headers = HTTPHeaders()
        var headerBytes = 0
        var body = ByteBuffer()
        /// Received body bytes whose stream window has not been returned yet.
        var unconsumed = 0
        var phase = Phase.receiving
        /// Body bytes read and dropped after an early answer (413, 431).
        var discarded = 0
        /// When its HEADERS began: the request's deadline counts from here.
        var openedAt = NIODeadline.now()

        enum Phase {
            case receiving
            /// Answered early (413, 431): further DATA is read and dropped.
            case rejected
            /// Complete; the responder has it.
            case dispatched
            /// The answer is being sent.
            case responding(body: ByteBuffer, trailers: HTTPHeaders?)
        }
    }

    private var session: OpaquePointer!
    private let limits: HTTP2SessionLimits
    private let allocator: ByteBufferAllocator
    private let remoteAddress: SocketAddress?
    private var streams: [Int32: Stream] = [:]
    private var events: [HTTP2SessionEvent] = []
    /// Body bytes held by every stream of the connection.
    private var bufferedBodyBytes = 0

    /// Stream resets the client sent, and the error the server's GOAWAY carried, for
    /// the log line when an abusive connection is closed.
    private(set) var resetsReceived = 0
    private(set) var goAwayErrorCode: UInt32?
    private(set) var protocolErrors = 0
    /// Frames received whole so far: bytes that complete none are part of a frame
    /// still arriving.
    private(set) var framesReceived = 0

    init(limits: HTTP2SessionLimits, allocator: ByteBufferAllocator, remoteAddress: SocketAddress?) throws(HTTP2SessionError) {
        self.limits = limits
        self.allocator = allocator
        self.remoteAddress = remoteAddress

        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { throw .outOfMemory }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            HTTP2ServerSession.from(userData).beginHeaders(frame!)
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, userData in
            HTTP2ServerSession.from(userData).header(frame!, UnsafeRawBufferPointer(start: name, count: nameLength),
                                                     UnsafeRawBufferPointer(start: value, count: valueLength))
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, userData in
            HTTP2ServerSession.from(userData).dataChunk(streamID, UnsafeRawBufferPointer(start: data, count: length))
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            HTTP2ServerSession.from(userData).frameReceived(frame!)
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, _, userData in
            HTTP2ServerSession.from(userData).streamClosed(streamID)
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks) { _, frame, userData in
            HTTP2ServerSession.from(userData).frameSent(frame!)
        }
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks) { _, _, _, userData in
            HTTP2ServerSession.from(userData).protocolErrors += 1
            return 0
        }

        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0, let option else { throw .outOfMemory }
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_stream_reset_rate_limit(option, limits.resetBurst, limits.resetRatePerSecond)
        // More SETTINGS entries than the protocol has is a flood, not a client.
        nghttp2_option_set_max_settings(option, 32)

        var created: OpaquePointer?
        let userData = Unmanaged.passUnretained(self).toOpaque()
        guard nghttp2_session_server_new2(&created, callbacks, userData, option) == 0, let created else { throw .outOfMemory }
        session = created

        // The server's connection preface: its SETTINGS.
        let settings: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: UInt32(limits.maxConcurrentStreams)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(limits.streamWindowBytes)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(limits.maxHeaderListBytes)),
        ]
        guard nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), settings, settings.count) == 0 else { throw .outOfMemory }
        // Room for many streams' data in flight at once; it is handed back as it arrives.
        _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Int32(16 << 20))
    }

    deinit { nghttp2_session_del(session) }

    private static func from(_ userData: UnsafeMutableRawPointer?) -> HTTP2ServerSession {
        Unmanaged<HTTP2ServerSession>.fromOpaque(userData!).takeUnretainedValue()
    }

    // MARK: Input

    /// Feeds bytes from the network. Throws when the connection is beyond repair
    /// (a protocol violation, a flood): `drainOutput` then yields the GOAWAY, and
    /// the connection should be closed after it is sent.
    func receive(_ bytes: UnsafeRawBufferPointer) throws(HTTP2SessionError) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        let result = nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), bytes.count)
        if result < 0 {
            throw .protocolViolation(String(cString: nghttp2_strerror(Int32(result))))
        }
        returnWindows()
    }

    /// Finished requests and early rejections since the last call.
    func takeEvents() -> [HTTP2SessionEvent] {
        defer { events.removeAll(keepingCapacity: true) }
        return events
    }

    private func beginHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let header = frame.pointee.hd
        guard header.type == UInt8(NGHTTP2_HEADERS.rawValue), frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
        streams[header.stream_id] = Stream()
        return 0
    }

    private func header(_ frame: UnsafePointer<nghttp2_frame>, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Int32 {
        let id = frame.pointee.hd.stream_id
        guard var stream = streams[id] else { return 0 }
        // RFC 9113 §6.5.2: the size of a field is its name and value plus 32.
        stream.headerBytes += name.count + value.count + 32
        if stream.headerBytes > limits.maxHeaderListBytes {
            // The rest of the block is still decoded (HPACK state is shared by the
            // connection) but no longer kept.
            if case .receiving = stream.phase {
                stream.phase = .rejected
                stream.headers = HTTPHeaders()
                streams[id] = stream
                events.append(.reject(streamID: id, status: .requestHeaderFieldsTooLarge,
                                      message: "request headers are over \(limits.maxHeaderListBytes) bytes", headers: HTTPHeaders()))
            }
            return 0
        }
        guard case .receiving = stream.phase else { return 0 }
        let nameText = String(decoding: name, as: UTF8.self)
        let valueText = String(decoding: value, as: UTF8.self)
        // Drop the reference in the dictionary so the mutations below do not copy.
        streams[id] = nil
        switch nameText {
        case ":method": stream.method = valueText
        case ":path": stream.path = valueText
        case ":authority": stream.authority = valueText
        case ":scheme": break
        default: stream.headers.add(name: nameText, value: valueText)
        }
        streams[id] = stream
        return 0
    }

    private func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let header = frame.pointee.hd
        framesReceived += 1
        switch UInt32(header.type) {
        case NGHTTP2_HEADERS.rawValue:
            guard var stream = streams[header.stream_id], case .receiving = stream.phase else { break }
            if frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
                if let length = stream.headers.first(name: "content-length").flatMap(Int.init), length > limits.maxBodyBytes {
                    reject(header.stream_id, &stream, status: .payloadTooLarge,
                           message: "request body of \(length) bytes is over max_request_body_size (\(limits.maxBodyBytes) bytes)")
                    streams[header.stream_id] = stream
                    break
                }
                if let length = stream.headers.first(name: "content-length").flatMap(Int.init), length > 0 {
                    stream.body = allocator.buffer(capacity: length)
                    streams[header.stream_id] = stream
                }
            }
            if header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 { complete(header.stream_id) }
        case NGHTTP2_DATA.rawValue:
            if header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 { complete(header.stream_id) }
        case NGHTTP2_RST_STREAM.rawValue:
            resetsReceived += 1
        default:
            break
        }
        return 0
    }

    private func dataChunk(_ id: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard var stream = streams[id], case .receiving = stream.phase else {
            // Dropped data still counts against the windows: give them back.
            nghttp2_session_consume(session, id, data.count)
            discard(id, data.count)
            return 0
        }
        // The connection's window goes back at once; the stream's waits for room.
        nghttp2_session_consume_connection(session, data.count)
        streams[id] = nil
        if stream.body.readableBytes + data.count > limits.maxBodyBytes {
            nghttp2_session_consume_stream(session, id, data.count + stream.unconsumed)
            stream.unconsumed = 0
            reject(id, &stream, status: .payloadTooLarge, message: "request body is over max_request_body_size (\(limits.maxBodyBytes) bytes)")
        } else {
            stream.body.writeBytes(data)
            stream.unconsumed += data.count
            bufferedBodyBytes += data.count
        }
        streams[id] = stream
        return 0
    }

    /// After an early answer the rest of the body is read and dropped, so clients
    /// that only look at the answer once their upload is done (curl does) see it;
    /// past 8 MiB the client is told to stop with RST_STREAM NO_ERROR, which RFC 9113
    /// §8.1 allows once the answer is complete.
    private func discard(_ id: Int32, _ count: Int) {
        guard var stream = streams[id] else { return }
        if case .receiving = stream.phase { return }
        if case .dispatched = stream.phase { return }
        stream.discarded += count
        streams[id] = stream
        if stream.discarded > 8 << 20, stream.discarded - count <= 8 << 20 {
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, NGHTTP2_NO_ERROR.rawValue)
        }
    }

    private func reject(_ id: Int32, _ stream: inout Stream, status: HTTPResponseStatus, message: String) {
        stream.phase = .rejected
        bufferedBodyBytes -= stream.body.readableBytes
        stream.body = ByteBuffer()
        events.append(.reject(streamID: id, status: status, message: message, headers: stream.headers))
    }

    private func complete(_ id: Int32) {
        guard var stream = streams[id], case .receiving = stream.phase else { return }
        streams[id] = nil
        stream.phase = .dispatched
        let request = HTTPServerRequest(
            method: HTTPMethod(rawValue: stream.method), uri: stream.path, headers: stream.headers, body: stream.body,
            remoteAddress: remoteAddress, version: HTTPVersion(major: 2, minor: 0))
        streams[id] = stream
        events.append(.request(streamID: id, request))
    }

    private func streamClosed(_ id: Int32) -> Int32 {
        if let stream = streams.removeValue(forKey: id) { bufferedBodyBytes -= stream.body.readableBytes }
        return 0
    }

    /// Returns stream windows while the connection's bodies leave room. When they
    /// do not and no request is with the responder (so no answer will free memory),
    /// the oldest stream still receiving gets its window anyway: it completes, and
    /// the connection cannot deadlock.
    private func returnWindows() {
        var oldestReceiving: Int32?
        var awaitingAnswers = false
        for (id, stream) in streams {
            switch stream.phase {
            case .receiving: if oldestReceiving.map({ id < $0 }) ?? true { oldestReceiving = id }
            case .dispatched: awaitingAnswers = true
            case .rejected, .responding: break
            }
        }
        let room = bufferedBodyBytes <= limits.bufferedBodyLimit
        // Collected first: changing `streams` while iterating it would copy it.
        var ready: [(id: Int32, bytes: Int)] = []
        for (id, stream) in streams where stream.unconsumed > 0 && (room || (id == oldestReceiving && !awaitingAnswers)) {
            ready.append((id, stream.unconsumed))
        }
        for (id, bytes) in ready {
            nghttp2_session_consume_stream(session, id, bytes)
            streams[id]!.unconsumed = 0
        }
    }

    // MARK: Output

    /// Sends the answer to a request. Ignored when the client has reset the stream.
    func respond(streamID: Int32, _ response: HTTPServerResponse) {
        guard var stream = streams[streamID] else { return }
        switch stream.phase {
        case .dispatched, .rejected: break
        case .receiving, .responding: return
        }
        bufferedBodyBytes -= stream.body.readableBytes
        stream.body = ByteBuffer()
        var headers: [(String, String)] = [(":status", String(response.status.code))]
        for (name, value) in response.headers where !HTTP2Fields.connectionSpecific.contains(name.lowercased()) {
            headers.append((name.lowercased(), value))
        }
        let body = response.body ?? ByteBuffer()
        if body.readableBytes == 0, let trailers = response.trailers {
            // gRPC's Trailers-Only: one HEADERS frame that ends the stream.
            for (name, value) in trailers { headers.append((name.lowercased(), value)) }
            stream.phase = .responding(body: ByteBuffer(), trailers: nil)
            streams[streamID] = stream
            HTTP2Fields.withNameValues(headers) { nv in _ = nghttp2_submit_response(session, streamID, nv.baseAddress, nv.count, nil) }
        } else {
            headers.append(("content-length", String(body.readableBytes)))
            stream.phase = .responding(body: body, trailers: response.trailers)
            streams[streamID] = stream
            var provider = nghttp2_data_provider()
            provider.read_callback = { _, streamID, buffer, length, flags, _, userData in
                HTTP2ServerSession.from(userData).readBody(streamID, buffer!, length, flags!)
            }
            HTTP2Fields.withNameValues(headers) { nv in _ = nghttp2_submit_response(session, streamID, nv.baseAddress, nv.count, &provider) }
        }
        returnWindows()
    }

    private func frameSent(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let header = frame.pointee.hd
        if header.type == UInt8(NGHTTP2_GOAWAY.rawValue) { goAwayErrorCode = frame.pointee.goaway.error_code }
        return 0
    }

    private func readBody(_ id: Int32, _ buffer: UnsafeMutablePointer<UInt8>, _ length: Int, _ flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard var stream = streams[id], case .responding(var body, let trailers) = stream.phase else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        let (count, finished) = HTTP2Fields.copyBody(&body, into: buffer, length: length)
        if finished {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if let trailers {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                let fields = trailers.map { ($0.name.lowercased(), $0.value) }
                HTTP2Fields.withNameValues(fields) { nv in _ = nghttp2_submit_trailer(session, id, nv.baseAddress, nv.count) }
            }
        }
        stream.phase = .responding(body: body, trailers: trailers)
        streams[id] = stream
        return count
    }

    /// Everything nghttp2 wants sent, or `nil` when nothing is pending.
    func drainOutput() -> ByteBuffer? { HTTP2Fields.drainOutput(session, allocator: allocator) }

    /// Whether the session has anything left to do; false after a GOAWAY went out
    /// and every stream finished, or after a fatal error.
    var isAlive: Bool { nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0 }

    /// Streams received but not yet answered (the connection is not idle).
    var hasOpenStreams: Bool { !streams.isEmpty }

    /// When the oldest request that has not fully arrived began, if any.
    var oldestIncompleteRequestStart: NIODeadline? {
        streams.values.lazy.filter { if case .receiving = $0.phase { true } else { false } }.map(\.openedAt).min()
    }

    /// Tells the client no new streams will be taken; streams in progress finish.
    func goAway(_ error: nghttp2_error_code) {
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session), error.rawValue, nil, 0)
    }
}

enum HTTP2SessionError: Error, CustomStringConvertible {
    case outOfMemory
    case protocolViolation(String)

    var description: String {
        switch self {
        case .outOfMemory: "nghttp2 could not allocate a session"
        case .protocolViolation(let reason): "HTTP/2 protocol violation: \(reason)"
        }
    }
}

// The client side of one HTTP/2 connection, on nghttp2: many requests at once on
// one connection (gRPC exporters, and https destinations that pick h2 by ALPN).
// Requests come down the pipeline as `PendingRequest`s, the same as on HTTP/1.1;
// each becomes a stream, and its promise completes with the status, headers, body
// and trailers. nghttp2 queues streams beyond the server's
// SETTINGS_MAX_CONCURRENT_STREAMS and sends them as earlier ones finish.
import CNGHTTP2
import NIOCore
import NIOHTTP1

final class HTTP2ClientConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = PendingRequest
    typealias OutboundOut = ByteBuffer

    private struct Stream {
        let pending: PendingRequest
        var requestBody: ByteBuffer
        var status: HTTPResponseStatus?
        var headers = HTTPHeaders()
        var trailers = HTTPHeaders()
        var body = ByteBuffer()
    }

    private var session: OpaquePointer?
    private var allocator = ByteBufferAllocator()
    private var streams: [Int32: Stream] = [:]
    private let scheme: String
    private let authority: String
    private let state: ConnectionState
    /// Set while nghttp2 runs callbacks, which need the context to fail promises.
    private var failures: [(PendingRequest, any Error)] = []

    init(scheme: String, authority: String, state: ConnectionState) {
        self.scheme = scheme
        self.authority = authority
        self.state = state
    }

    deinit { if let session { nghttp2_session_del(session) } }

    private static func from(_ userData: UnsafeMutableRawPointer?) -> HTTP2ClientConnectionHandler {
        Unmanaged<HTTP2ClientConnectionHandler>.fromOpaque(userData!).takeUnretainedValue()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        allocator = context.channel.allocator
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else {
            context.close(promise: nil)
            return
        }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, userData in
            HTTP2ClientConnectionHandler.from(userData).header(frame!, UnsafeRawBufferPointer(start: name, count: nameLength),
                                                               UnsafeRawBufferPointer(start: value, count: valueLength))
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { session, _, streamID, data, length, userData in
            HTTP2ClientConnectionHandler.from(userData).dataChunk(streamID, UnsafeRawBufferPointer(start: data, count: length))
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            HTTP2ClientConnectionHandler.from(userData).frameReceived(frame!)
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, errorCode, userData in
            HTTP2ClientConnectionHandler.from(userData).streamClosed(streamID, errorCode)
        }
        var created: OpaquePointer?
        guard nghttp2_session_client_new(&created, callbacks, Unmanaged.passUnretained(self).toOpaque()) == 0, let created else {
            context.close(promise: nil)
            return
        }
        session = created
        let settings: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: 1 << 20),
        ]
        _ = nghttp2_submit_settings(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), settings, settings.count)
        if context.channel.isActive { flushOutput(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        flushOutput(context: context)
        context.fireChannelActive()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let pending = unwrapOutboundIn(data)
        guard let session, nghttp2_session_want_write(session) != 0 || nghttp2_session_want_read(session) != 0 else {
            promise?.fail(HTTPClientError.connectionClosed)
            pending.promise.fail(HTTPClientError.connectionClosed)
            return
        }
        let request = pending.request
        var fields: [(String, String)] = [(":method", request.method.rawValue), (":scheme", scheme),
                                          (":authority", request.headers.first(name: "host") ?? authority), (":path", request.target)]
        for (name, value) in request.headers where !HTTP2Fields.connectionSpecific.contains(name.lowercased()) {
            fields.append((name.lowercased(), value))
        }
        let body = request.body ?? ByteBuffer()
        fields.append(("content-length", String(body.readableBytes)))
        var provider = nghttp2_data_provider()
        provider.read_callback = { _, streamID, buffer, length, flags, _, userData in
            HTTP2ClientConnectionHandler.from(userData).readBody(streamID, buffer!, length, flags!)
        }
        let streamID = HTTP2Fields.withNameValues(fields) { nv in
            nghttp2_submit_request(session, nil, nv.baseAddress, nv.count, &provider, nil)
        }
        guard streamID > 0 else {
            // NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE: the connection has used up its stream ids.
            promise?.fail(HTTPClientError.connectionClosed)
            pending.promise.fail(HTTPClientError.connectionClosed)
            state.markDraining()
            return
        }
        streams[streamID] = Stream(pending: pending, requestBody: body)
        promise?.succeed()
    }

    func flush(context: ChannelHandlerContext) {
        flushOutput(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session else { return }
        let bytes = unwrapInboundIn(data)
        let result = bytes.withUnsafeReadableBytes { raw -> Int in
            guard let base = raw.baseAddress, !raw.isEmpty else { return 0 }
            return nghttp2_session_mem_recv(session, base.assumingMemoryBound(to: UInt8.self), raw.count)
        }
        if result < 0 {
            let reason = String(cString: nghttp2_strerror(Int32(result)))
            failAll(HTTPClientError.connect("HTTP/2 protocol error from the server: \(reason)"))
            flushOutput(context: context)
            context.close(promise: nil)
            return
        }
        flushOutput(context: context)
    }

    private func flushOutput(context: ChannelHandlerContext) {
        guard let session else { return }
        if let output = HTTP2Fields.drainOutput(session, allocator: allocator) {
            context.writeAndFlush(wrapOutboundOut(output), promise: nil)
        }
        for (pending, error) in failures { pending.promise.fail(error) }
        failures.removeAll()
        // After the server's GOAWAY, the connection closes once its streams are done.
        if nghttp2_session_want_read(session) == 0, nghttp2_session_want_write(session) == 0, context.channel.isActive {
            state.markDraining()
            context.close(promise: nil)
        }
    }

    // MARK: Callbacks

    private func header(_ frame: UnsafePointer<nghttp2_frame>, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Int32 {
        let id = frame.pointee.hd.stream_id
        guard var stream = streams[id] else { return 0 }
        let nameText = String(decoding: name, as: UTF8.self)
        let valueText = String(decoding: value, as: UTF8.self)
        if nameText == ":status" {
            if let code = Int(valueText) { stream.status = HTTPResponseStatus(statusCode: code) }
        } else if frame.pointee.headers.cat == NGHTTP2_HCAT_HEADERS, stream.status.map({ $0.code >= 200 }) ?? false {
            stream.trailers.add(name: nameText, value: valueText)
        } else {
            stream.headers.add(name: nameText, value: valueText)
        }
        streams[id] = stream
        return 0
    }

    private func dataChunk(_ id: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard var stream = streams[id] else { return 0 }
        streams[id] = nil
        if stream.body.readableBytes + data.count > stream.pending.maxResponseBytes {
            failures.append((stream.pending, HTTPClientError.responseTooLarge(stream.pending.maxResponseBytes)))
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, NGHTTP2_CANCEL.rawValue)
            return 0
        }
        stream.body.writeBytes(data)
        streams[id] = stream
        return 0
    }

    private func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let header = frame.pointee.hd
        switch UInt32(header.type) {
        case NGHTTP2_GOAWAY.rawValue:
            // No new streams on this connection; the pool opens another.
            state.markDraining()
        case NGHTTP2_HEADERS.rawValue, NGHTTP2_DATA.rawValue:
            guard header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0, let stream = streams.removeValue(forKey: header.stream_id) else { break }
            // An interim (1xx) answer is followed by the real one; only a final status completes.
            guard let status = stream.status, status.code >= 200 else {
                failures.append((stream.pending, HTTPClientError.connectionClosed))
                break
            }
            stream.pending.promise.succeed(HTTPClientResponse(status: status, headers: stream.headers, body: stream.body, trailers: stream.trailers))
        default:
            break
        }
        return 0
    }

    private func streamClosed(_ id: Int32, _ errorCode: UInt32) -> Int32 {
        guard let stream = streams.removeValue(forKey: id) else { return 0 }
        // Closed without a complete answer: reset by the server (REFUSED_STREAM after
        // a GOAWAY means it was never processed) or the connection ended.
        let reason = String(cString: nghttp2_http2_strerror(errorCode))
        failures.append((stream.pending, HTTPClientError.streamReset(reason)))
        return 0
    }

    private func readBody(_ id: Int32, _ buffer: UnsafeMutablePointer<UInt8>, _ length: Int, _ flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard var stream = streams[id] else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        streams[id] = nil
        let (count, finished) = HTTP2Fields.copyBody(&stream.requestBody, into: buffer, length: length)
        if finished { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
        streams[id] = stream
        return count
    }

    // MARK: Ending

    private func failAll(_ error: any Error) {
        let open = streams.values
        streams.removeAll()
        for stream in open { failures.append((stream.pending, error)) }
        for (pending, error) in failures { pending.promise.fail(error) }
        failures.removeAll()
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.markDraining()
        failAll(state.error ?? HTTPClientError.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        state.markDraining()
        failAll(error)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension HTTP2ClientConnectionHandler: Sendable {}

// One libzmq socket: options, bind/connect, multipart send and receive (zero-copy both ways
// for large buffers), polling, CURVE.
import CZeroMQ

/// A libzmq socket.
///
/// Concurrency: not Sendable. libzmq sockets are not thread-safe: a socket belongs to the one
/// thread (or actor) that created it. Blocking calls honour the receive/send timeouts, so no
/// call waits forever; run them on a thread you own, not on the cooperative pool.
public final class ZMQSocket {
    let raw: UnsafeMutableRawPointer
    public let kind: SocketKind
    /// Keeps the context alive while the socket exists.
    private let context: ZMQContext

    /// A socket of `kind`. Linger defaults to 100 ms so closing never hangs on unsent messages.
    public init(_ context: ZMQContext, kind: SocketKind, lingerMilliseconds: Int = 100) throws(TransportError) {
        guard let raw = zmq_socket(context.raw, kind.rawValue) else { throw .last("zmq_socket") }
        self.raw = raw
        self.kind = kind
        self.context = context
        try setOption(ZMQ_LINGER, Int32(lingerMilliseconds), name: "ZMQ_LINGER")
    }

    deinit { zmq_close(raw) }

    // MARK: Options

    /// Milliseconds a receive waits before `timedOut` (-1: forever); `setReceiveTimeout` sets it.
    public private(set) var receiveTimeoutMilliseconds: Int = -1

    /// Milliseconds a send waits before `timedOut` (-1: forever); `setSendTimeout` sets it.
    public private(set) var sendTimeoutMilliseconds: Int = -1

    /// Sets how long a receive waits before `timedOut` (-1: forever; at most Int32.max).
    public func setReceiveTimeout(_ milliseconds: Int) throws(TransportError) {
        try setOption(ZMQ_RCVTIMEO, Int32(clamping: milliseconds), name: "ZMQ_RCVTIMEO")
        receiveTimeoutMilliseconds = milliseconds
    }

    /// Sets how long a send waits before `timedOut` (-1: forever; at most Int32.max).
    public func setSendTimeout(_ milliseconds: Int) throws(TransportError) {
        try setOption(ZMQ_SNDTIMEO, Int32(clamping: milliseconds), name: "ZMQ_SNDTIMEO")
        sendTimeoutMilliseconds = milliseconds
    }

    /// Queue messages only on completed connections (sends fail fast while no peer is there).
    public func setImmediate(_ on: Bool) throws(TransportError) {
        try setOption(ZMQ_IMMEDIATE, on ? 1 : 0, name: "ZMQ_IMMEDIATE")
    }

    /// Messages queued per peer before sends block or drop, each way (0: no limit; memory is
    /// then bounded by what the caller sends).
    public func setHighWaterMarks(_ messages: Int) throws(TransportError) {
        try setOption(ZMQ_SNDHWM, Int32(messages), name: "ZMQ_SNDHWM")
        try setOption(ZMQ_RCVHWM, Int32(messages), name: "ZMQ_RCVHWM")
    }

    /// The largest inbound message accepted, in bytes (-1: no limit); larger ones drop the peer.
    public func setMaximumMessageSize(_ bytes: Int64) throws(TransportError) {
        var value = bytes
        guard zmq_setsockopt(raw, ZMQ_MAXMSGSIZE, &value, MemoryLayout<Int64>.size) == 0 else {
            throw .last("zmq_setsockopt(ZMQ_MAXMSGSIZE)")
        }
    }

    /// The identity a ROUTER peer sees for this socket.
    public func setIdentity(_ identity: [UInt8]) throws(TransportError) {
        guard zmq_setsockopt(raw, ZMQ_ROUTING_ID, identity, identity.count) == 0 else {
            throw .last("zmq_setsockopt(ZMQ_ROUTING_ID)")
        }
    }

    /// Makes this socket a CURVE server holding the cluster's secret key: a client must hold
    /// the cluster key pair (its context's ZAP handler checks the client's public key) to
    /// complete a handshake.
    public func makeCurveServer(_ key: ClusterKey) throws(TransportError) {
        try context.admitOnlyHoldersOf(key)
        try setOption(ZMQ_CURVE_SERVER, 1, name: "ZMQ_CURVE_SERVER")
        try setString(ZMQ_CURVE_SECRETKEY, key.secretKey, name: "ZMQ_CURVE_SECRETKEY")
    }

    /// Makes this socket a CURVE client of a server holding `key`, proving it holds `key` too.
    public func makeCurveClient(_ key: ClusterKey) throws(TransportError) {
        try makeCurveClient(of: key, holding: key)
    }

    /// A CURVE client of a server holding `server`, with the key pair `client` (tests make one
    /// that knows the cluster's public key and nothing more).
    func makeCurveClient(of server: ClusterKey, holding client: ClusterKey) throws(TransportError) {
        try setString(ZMQ_CURVE_SERVERKEY, server.publicKey, name: "ZMQ_CURVE_SERVERKEY")
        try setString(ZMQ_CURVE_PUBLICKEY, client.publicKey, name: "ZMQ_CURVE_PUBLICKEY")
        try setString(ZMQ_CURVE_SECRETKEY, client.secretKey, name: "ZMQ_CURVE_SECRETKEY")
    }

    private func setOption(_ option: Int32, _ value: Int32, name: String) throws(TransportError) {
        var value = value
        guard zmq_setsockopt(raw, option, &value, MemoryLayout<Int32>.size) == 0 else {
            throw .last("zmq_setsockopt(\(name))")
        }
    }

    private func setString(_ option: Int32, _ value: String, name: String) throws(TransportError) {
        let bytes = Array(value.utf8)
        guard zmq_setsockopt(raw, option, bytes, bytes.count) == 0 else { throw .last("zmq_setsockopt(\(name))") }
    }

    // MARK: Endpoints

    /// Binds to `endpoint` (`tcp://127.0.0.1:*` picks a free port) and returns the endpoint
    /// actually bound, which peers can connect to.
    @discardableResult
    public func bind(_ endpoint: String) throws(TransportError) -> String {
        guard zmq_bind(raw, endpoint) == 0 else { throw .last("zmq_bind(\(endpoint))") }
        var buffer = [CChar](repeating: 0, count: 512)
        var length = buffer.count
        guard zmq_getsockopt(raw, ZMQ_LAST_ENDPOINT, &buffer, &length) == 0 else { throw .last("zmq_getsockopt(ZMQ_LAST_ENDPOINT)") }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Connects to `endpoint`; the connection completes in the background.
    public func connect(_ endpoint: String) throws(TransportError) {
        guard zmq_connect(raw, endpoint) == 0 else { throw .last("zmq_connect(\(endpoint))") }
    }

    // MARK: Sending

    /// Sends `frames` as one multipart message (copies them).
    public func send(_ frames: [[UInt8]]) throws(TransportError) {
        for (index, frame) in frames.enumerated() {
            try send(frame, more: index < frames.count - 1)
        }
    }

    /// Sends one frame (a copy of `frame`); `more` marks further frames of the same message.
    public func send(_ frame: [UInt8], more: Bool) throws(TransportError) {
        // withUnsafeBytes only rethrows untyped errors: carry the typed one out by hand.
        var failure: TransportError?
        frame.withUnsafeBytes { bytes in
            do throws(TransportError) {
                try sendFrame(bytes, flags: more ? ZMQ_SNDMORE : 0)
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    /// Sends one frame that copies `bytes`; `more` marks further frames of the same message.
    public func send(_ bytes: UnsafeRawBufferPointer, more: Bool) throws(TransportError) {
        try sendFrame(bytes, flags: more ? ZMQ_SNDMORE : 0)
    }

    /// Sends `count` bytes at `pointer` without copying them: libzmq reads the memory directly
    /// and `owner` is kept alive until it has. The caller must not change the bytes until the
    /// owner is released (a libzmq I/O thread releases it after the send completes).
    public func sendWithoutCopy(_ pointer: UnsafeRawPointer, count: Int, owner: AnyObject, more: Bool) throws(TransportError) {
        let message = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        defer { message.deallocate() }
        let hint = Unmanaged.passRetained(owner).toOpaque()
        guard zmq_msg_init_data(message, UnsafeMutableRawPointer(mutating: pointer), count, releaseOwner, hint) == 0 else {
            Unmanaged<AnyObject>.fromOpaque(hint).release()
            throw .last("zmq_msg_init_data")
        }
        while zmq_msg_send(message, raw, more ? ZMQ_SNDMORE : 0) < 0 {
            let error = zmq_errno()
            if error == EINTR { continue }
            zmq_msg_close(message)  // releases the owner
            if error == EAGAIN { throw .timedOut(operation: "send", milliseconds: sendTimeoutMilliseconds) }
            throw .callFailed(call: "zmq_msg_send", errno: error)
        }
    }

    private func sendFrame(_ bytes: UnsafeRawBufferPointer, flags: Int32) throws(TransportError) {
        while zmq_send(raw, bytes.baseAddress, bytes.count, flags) < 0 {
            let error = zmq_errno()
            if error == EINTR { continue }
            if error == EAGAIN { throw .timedOut(operation: "send", milliseconds: sendTimeoutMilliseconds) }
            throw .callFailed(call: "zmq_send", errno: error)
        }
    }

    // MARK: Receiving

    /// Receives one whole multipart message, frame by frame, without copying the payloads.
    public func receiveMessage() throws(TransportError) -> [ZMQMessage] {
        var frames = [ZMQMessage]()
        repeat {
            let frame = ZMQMessage()
            while zmq_msg_recv(frame.raw, raw, 0) < 0 {
                let error = zmq_errno()
                if error == EINTR { continue }
                if error == EAGAIN { throw .timedOut(operation: "receive", milliseconds: receiveTimeoutMilliseconds) }
                throw .callFailed(call: "zmq_msg_recv", errno: error)
            }
            frames.append(frame)
        } while frames.last?.hasMore == true
        return frames
    }

    /// Receives one whole multipart message if one is waiting; nil at once otherwise.
    public func receiveMessageIfReady() throws(TransportError) -> [ZMQMessage]? {
        let first = ZMQMessage()
        while zmq_msg_recv(first.raw, raw, ZMQ_DONTWAIT) < 0 {
            let error = zmq_errno()
            if error == EINTR { continue }
            if error == EAGAIN { return nil }
            throw .callFailed(call: "zmq_msg_recv", errno: error)
        }
        // The rest of a multipart message arrives with its first frame.
        var frames = [first]
        while frames.last?.hasMore == true {
            let frame = ZMQMessage()
            while zmq_msg_recv(frame.raw, raw, 0) < 0 {
                let error = zmq_errno()
                if error == EINTR { continue }
                throw .callFailed(call: "zmq_msg_recv", errno: error)
            }
            frames.append(frame)
        }
        return frames
    }

    /// Receives one whole multipart message as byte arrays.
    public func receive() throws(TransportError) -> [[UInt8]] {
        try receiveMessage().map(\.array)
    }

    // MARK: Polling

    /// Waits up to `milliseconds` (-1: forever) for any of `sockets` to have a message to read;
    /// returns the indices of those that do.
    public static func pollReadable(_ sockets: [ZMQSocket], milliseconds: Int) throws(TransportError) -> [Int] {
        var items = sockets.map { zmq_pollitem_t(socket: $0.raw, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0) }
        while zmq_poll(&items, Int32(items.count), milliseconds) < 0 {
            let error = zmq_errno()
            if error == EINTR { continue }
            throw .callFailed(call: "zmq_poll", errno: error)
        }
        return items.indices.filter { items[$0].revents & Int16(ZMQ_POLLIN) != 0 }
    }
}

/// libzmq calls this on one of its I/O threads when a zero-copy send no longer needs the
/// memory: it drops the retain taken in `sendWithoutCopy`. Releasing is thread-safe; the
/// owner's deinit (if this was the last reference) runs on that I/O thread.
private func releaseOwner(_ data: UnsafeMutableRawPointer?, _ hint: UnsafeMutableRawPointer?) {
    guard let hint else { return }
    Unmanaged<AnyObject>.fromOpaque(hint).release()
}

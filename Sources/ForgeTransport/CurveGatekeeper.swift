// libzmq's CURVE proves a server to its clients, but a CURVE server accepts any client that
// knows the server's public key, whatever key pair the client itself holds, unless a ZAP
// handler (ZeroMQ's authentication protocol, RFC 27) says otherwise. Every member of a Forge
// cluster holds the one cluster key pair and uses it as its client key too, so this handler
// admits a CURVE client only when its public key is the cluster's: proof that it holds the
// cluster's secret key, not just the public key `forge keygen` prints.
import CZeroMQ
import Foundation

/// The ZAP handler of one context: a thread answering libzmq's authentication requests.
///
/// Concurrency: `@unchecked Sendable`. The admitted keys are guarded by `lock`; the REP socket
/// is made and bound by the starting thread, then used only by the handler thread (libzmq
/// allows a socket to move between threads with a full barrier, which starting a thread is).
/// The thread ends when the context terminates (its receive fails with ETERM) and closes the
/// socket, so `zmq_ctx_term` can finish.
final class CurveGatekeeper: @unchecked Sendable {
    private let lock = NSLock()
    private var admitted: Set<[UInt8]> = []

    /// Binds the context's ZAP endpoint and starts answering.
    init(context: UnsafeMutableRawPointer) throws(TransportError) {
        guard let socket = zmq_socket(context, ZMQ_REP) else { throw .last("zmq_socket(ZMQ_REP) for ZAP") }
        var linger: Int32 = 0
        zmq_setsockopt(socket, ZMQ_LINGER, &linger, MemoryLayout<Int32>.size)
        guard zmq_bind(socket, "inproc://zeromq.zap.01") == 0 else {
            let error = TransportError.last("zmq_bind(inproc://zeromq.zap.01)")
            zmq_close(socket)
            throw error
        }
        let handed = SocketHandoff(socket)
        let thread = Thread { [self] in serve(handed.socket) }
        thread.name = "forge-zap"
        thread.start()
    }

    /// Admits CURVE clients holding `key` (its public key, as 32 bytes).
    func admit(_ key: ClusterKey) throws(TransportError) {
        var binary = [UInt8](repeating: 0, count: 32)
        guard zmq_z85_decode(&binary, key.publicKey) != nil else { throw .badKey(path: "-", reason: "the public key is not Z85") }
        lock.lock()
        admitted.insert(binary)
        lock.unlock()
    }

    /// Whether a CURVE client whose public key is `clientKey` may connect.
    func admits(_ clientKey: [UInt8]) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return admitted.contains(clientKey)
    }

    /// Answers requests until the context terminates.
    private func serve(_ socket: UnsafeMutableRawPointer) {
        defer { zmq_close(socket) }
        while true {
            guard let request = CurveGatekeeper.receive(socket) else { return }
            // version, request id, domain, address, routing id, mechanism, credentials…
            guard request.count >= 6, request[0] == Array("1.0".utf8) else {
                // Not a request this handler understands: refuse it (libzmq treats a malformed
                // reply as a failed handshake too).
                if !CurveGatekeeper.reply(socket, id: request.count > 1 ? request[1] : [], status: "500", text: "malformed ZAP request") { return }
                continue
            }
            let mechanism = String(decoding: request[5], as: UTF8.self)
            // Only CURVE carries a key; NULL and PLAIN sockets never meet this cluster's servers.
            let allowed = mechanism == "CURVE" && request.count >= 7 && admits(request[6])
            let sent = allowed ? CurveGatekeeper.reply(socket, id: request[1], status: "200", text: "OK")
                : CurveGatekeeper.reply(socket, id: request[1], status: "400", text: "not this cluster's key")
            if !sent { return }
        }
    }

    /// One multipart message's frames; nil once the context terminates.
    private static func receive(_ socket: UnsafeMutableRawPointer) -> [[UInt8]]? {
        var frames: [[UInt8]] = []
        while true {
            var message = zmq_msg_t()
            zmq_msg_init(&message)
            defer { zmq_msg_close(&message) }
            while zmq_msg_recv(&message, socket, 0) < 0 {
                if zmq_errno() != EINTR { return nil }
            }
            let size = zmq_msg_size(&message)
            let data = zmq_msg_data(&message)
            frames.append(size == 0 || data == nil ? [] : Array(UnsafeRawBufferPointer(start: data, count: size)))
            if zmq_msg_more(&message) == 0 { return frames }
        }
    }

    /// Sends a ZAP reply (version, request id, status code and text, user id, metadata); false
    /// once the context terminates.
    private static func reply(_ socket: UnsafeMutableRawPointer, id: [UInt8], status: String, text: String) -> Bool {
        let frames = [Array("1.0".utf8), id, Array(status.utf8), Array(text.utf8), [], []]
        for (index, frame) in frames.enumerated() {
            let flags = index < frames.count - 1 ? ZMQ_SNDMORE : 0
            while frame.withUnsafeBytes({ zmq_send(socket, $0.baseAddress, $0.count, flags) }) < 0 {
                if zmq_errno() != EINTR { return false }
            }
        }
        return true
    }

    /// Hands the raw socket to the handler thread.
    private struct SocketHandoff: @unchecked Sendable {
        let socket: UnsafeMutableRawPointer
        init(_ socket: UnsafeMutableRawPointer) { self.socket = socket }
    }
}

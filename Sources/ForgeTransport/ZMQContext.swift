// The libzmq context: I/O threads and the sockets' shared state.
import CZeroMQ
import Foundation

/// One libzmq context.
///
/// Concurrency: Sendable; libzmq contexts are thread-safe. Every socket keeps its context
/// alive, so `zmq_ctx_term` in `deinit` runs after the last socket has closed (sockets set a
/// bounded linger, so termination never waits on unsent messages forever).
public final class ZMQContext: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer

    /// A context with `ioThreads` I/O threads.
    /// A context with `ioThreads` I/O threads and room for `maxSockets` sockets (libzmq's
    /// default is 1023; the process also needs a file-descriptor limit to match).
    public init(ioThreads: Int = 1, maxSockets: Int? = nil) throws(TransportError) {
        guard let raw = zmq_ctx_new() else { throw .last("zmq_ctx_new") }
        self.raw = raw
        guard zmq_ctx_set(raw, ZMQ_IO_THREADS, Int32(ioThreads)) == 0 else {
            zmq_ctx_term(raw)
            throw .last("zmq_ctx_set(ZMQ_IO_THREADS)")
        }
        if let maxSockets, zmq_ctx_set(raw, ZMQ_MAX_SOCKETS, Int32(maxSockets)) != 0 {
            zmq_ctx_term(raw)
            throw .last("zmq_ctx_set(ZMQ_MAX_SOCKETS)")
        }
    }

    deinit { zmq_ctx_term(raw) }

    private let gatekeeperLock = NSLock()
    private var gatekeeper: CurveGatekeeper?

    /// Makes this context's CURVE servers admit only clients holding `key` (a ZAP handler,
    /// started on first use): without it, libzmq lets in any client that knows the server's
    /// public key. Call before a server socket takes connections.
    public func admitOnlyHoldersOf(_ key: ClusterKey) throws(TransportError) {
        gatekeeperLock.lock()
        defer { gatekeeperLock.unlock() }
        if gatekeeper == nil { gatekeeper = try CurveGatekeeper(context: raw) }
        try gatekeeper?.admit(key)
    }

    /// libzmq's version, e.g. "4.3.4".
    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }

    /// True when this libzmq can do CURVE.
    public static var hasCurve: Bool { zmq_has("curve") == 1 }
}

// Errors of the ZeroMQ layer: every libzmq failure names the call and its errno.
import CZeroMQ

/// Why a transport operation failed.
public enum TransportError: Error, Equatable, CustomStringConvertible {
    /// A libzmq call failed; `errno` is `zmq_errno()` right after it.
    case callFailed(call: String, errno: Int32)
    /// Nothing arrived (or could be sent) within the socket's timeout. With CURVE this is also
    /// how a peer holding the wrong key shows up: its handshake fails silently.
    case timedOut(operation: String, milliseconds: Int)
    /// A cluster key file that cannot be used.
    case badKey(path: String, reason: String)

    public var description: String {
        switch self {
        case .callFailed(let call, let errno):
            return "\(call) failed: \(String(cString: zmq_strerror(errno))) (errno \(errno))"
        case .timedOut(let operation, let milliseconds):
            return "\(operation) timed out after \(milliseconds) ms (peer gone, or a cluster key that does not match?)"
        case .badKey(let path, let reason):
            return "cluster key \(path): \(reason) (make one with `forge keygen --out FILE`)"
        }
    }

    /// The error for the libzmq call that just failed.
    static func last(_ call: String) -> TransportError {
        .callFailed(call: call, errno: zmq_errno())
    }
}

// Errors of collective operations: each names the peer and what went wrong. After one, the
// group is broken; recovery is a new rendezvous, not a retry.

/// Why a collective operation failed.
public enum CollectiveError: Error, Equatable, CustomStringConvertible {
    /// Nothing arrived from `peer` within the timeout (a dead or silent rank).
    case timedOut(peer: Int, milliseconds: Int)
    /// `peer` sent something the protocol did not expect at this point.
    case protocolViolation(peer: Int, reason: String)
    /// The transport failed talking to `peer`.
    case transport(peer: Int, reason: String)
    /// `peer` is gone: it closed its connection or its process has exited. `reason` says so
    /// and names it.
    case peerLost(peer: Int, reason: String)
    /// The arguments cannot work (bad peer index, buffers of different sizes across ranks).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .timedOut(let peer, let milliseconds):
            return "no data from rank \(peer) within \(milliseconds) ms (is that rank alive?)"
        case .protocolViolation(let peer, let reason):
            return "rank \(peer) broke the protocol: \(reason)"
        case .transport(let peer, let reason):
            return "transport to rank \(peer) failed: \(reason)"
        case .peerLost(_, let reason):
            return reason
        case .invalidArgument(let reason):
            return "invalid collective call: \(reason)"
        }
    }
}

extension CollectiveError {
    /// True when another rank failed first: it is gone, or nothing came from it in time. A
    /// launcher or coordinator seeing ranks fail names the one that did not fail this way.
    public var peerFailedFirst: Bool {
        switch self {
        case .peerLost, .timedOut: return true
        case .protocolViolation, .transport, .invalidArgument: return false
        }
    }

    /// Whether this error ends the connection to `peer` (others may still be read from).
    func endsConnection(to peer: Int) -> Bool {
        switch self {
        case .transport(let failed, _), .peerLost(let failed, _): return failed == peer
        case .timedOut, .protocolViolation, .invalidArgument: return false
        }
    }
}

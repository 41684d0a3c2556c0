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
        case .invalidArgument(let reason):
            return "invalid collective call: \(reason)"
        }
    }
}

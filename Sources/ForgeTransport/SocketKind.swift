// The socket patterns Forge uses.
import CZeroMQ

/// A libzmq socket type.
public enum SocketKind: Sendable, Hashable, CaseIterable {
    case pair, push, pull, dealer, router, request, reply, publish, subscribe

    var rawValue: Int32 {
        switch self {
        case .pair: ZMQ_PAIR
        case .push: ZMQ_PUSH
        case .pull: ZMQ_PULL
        case .dealer: ZMQ_DEALER
        case .router: ZMQ_ROUTER
        case .request: ZMQ_REQ
        case .reply: ZMQ_REP
        case .publish: ZMQ_PUB
        case .subscribe: ZMQ_SUB
        }
    }
}

// One received frame, owned by libzmq until this value dies: reading it copies nothing.
import CZeroMQ

/// A message frame received from a socket.
///
/// Concurrency: not Sendable; read it on the thread that received it. `bytes` is valid for
/// the life of the message.
public final class ZMQMessage {
    let raw: UnsafeMutablePointer<zmq_msg_t>

    init() {
        raw = .allocate(capacity: 1)
        zmq_msg_init(raw)
    }

    deinit {
        zmq_msg_close(raw)
        raw.deallocate()
    }

    /// The frame's bytes, without a copy.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: zmq_msg_data(raw), count: zmq_msg_size(raw))
    }

    /// The frame's bytes, copied into an array.
    public var array: [UInt8] { [UInt8](bytes) }

    /// True when more frames of the same multipart message follow.
    public var hasMore: Bool { zmq_msg_more(raw) == 1 }
}

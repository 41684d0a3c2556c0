// Device memory owned by one reference, freed exactly once.

/// A block of float32 elements on a device. Tensors are views into a storage.
///
/// Concurrency: not Sendable. A storage and the tensors over it belong to the one thread that
/// trains with them; kernels the device runs on its own threads only touch it during a call.
public final class Storage {
    /// The device that owns the memory.
    public let device: any Device
    /// Elements (float32).
    public let count: Int
    /// The device address. On host-visible devices it is a host pointer to `count` floats.
    public let address: UnsafeMutableRawPointer
    private let release: @Sendable (UnsafeMutableRawPointer) -> Void

    /// Wraps memory that `release` frees when the storage dies.
    public init(device: any Device, count: Int, address: UnsafeMutableRawPointer,
                release: @escaping @Sendable (UnsafeMutableRawPointer) -> Void) {
        self.device = device
        self.count = count
        self.address = address
        self.release = release
    }

    deinit { release(address) }

    /// The memory as host floats. Only for host-visible devices.
    public var floats: UnsafeMutablePointer<Float> {
        precondition(device.capabilities.hostVisibleMemory, "\(device.name) memory is not host-visible")
        return address.assumingMemoryBound(to: Float.self)
    }
}

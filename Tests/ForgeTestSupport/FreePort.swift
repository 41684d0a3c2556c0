// Loopback TCP sockets for tests: a free port, a listener, a raw connection.
import Foundation

/// A TCP port on 127.0.0.1 that the kernel says is free right now (another process may still
/// take it before the caller binds it; tests accept that small race).
public func freeLoopbackPort() -> Int {
    let (descriptor, port) = loopbackSocket(listening: false)
    close(descriptor)
    return port
}

/// A TCP socket bound to 127.0.0.1 at a port the kernel picks (listening, when asked), and
/// that port; the caller closes it.
public func loopbackSocket(listening: Bool) -> (descriptor: Int32, port: Int) {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
    if listening { _ = listen(descriptor, 16) }
    return (descriptor, Int(UInt16(bigEndian: address.sin_port)))
}

/// A raw TCP connection to 127.0.0.1 at the port of `endpoint` (`tcp://HOST:PORT` or just the
/// port), playing a peer by hand; nil when the connection is refused.
public func loopbackConnection(to endpoint: String) -> Int32? {
    let port = UInt16(endpoint.split(separator: ":").last.flatMap { Int($0) } ?? 0)
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(descriptor)
        return nil
    }
    return descriptor
}

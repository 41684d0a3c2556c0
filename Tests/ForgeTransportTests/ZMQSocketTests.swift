// Real libzmq sockets over tcp:// and ipc://: multipart messages, zero-copy sends, timeouts,
// polling, CURVE with the right and the wrong cluster key, and errors that name their call.
import ForgeTestSupport
@testable import ForgeTransport
import Foundation
import Testing

@Suite struct ZMQSocketTests {
    let context: ZMQContext

    init() throws {
        context = try ZMQContext()
    }

    /// A bound and a connected PAIR socket, both with a 5 s receive timeout.
    private func pair(_ endpoint: String, server: ClusterKey? = nil, client: ClusterKey? = nil) throws -> (ZMQSocket, ZMQSocket) {
        let a = try ZMQSocket(context, kind: .pair)
        if let server { try a.makeCurveServer(server) }
        let bound = try a.bind(endpoint)
        let b = try ZMQSocket(context, kind: .pair)
        if let client { try b.makeCurveClient(client) }
        try b.connect(bound)
        try a.setReceiveTimeout(5000)
        try b.setReceiveTimeout(5000)
        return (a, b)
    }

    @Test func multipartOverTCP() throws {
        let (a, b) = try pair("tcp://127.0.0.1:*")
        try b.send([Array("header".utf8), [], [1, 2, 3]])
        #expect(try a.receive() == [Array("header".utf8), [], [1, 2, 3]])
        try a.send([[9]])
        #expect(try b.receive() == [[9]])
    }

    @Test func multipartOverIPC() throws {
        let directory = try TemporaryDirectory()
        let path = directory.file("s.ipc")
        try #require(path.utf8.count < 100, "ipc paths must stay under the sun_path limit")
        let (a, b) = try pair("ipc://" + path)
        try b.send([[1], [2]])
        #expect(try a.receive() == [[1], [2]])
    }

    /// The owner of a zero-copy buffer stays alive until libzmq has sent it, then is released.
    final class Buffer {
        let bytes: UnsafeMutableRawBufferPointer
        init(count: Int) {
            bytes = .allocate(byteCount: count, alignment: 64)
            for i in 0..<count { bytes[i] = UInt8(truncatingIfNeeded: i &* 31) }
        }
        deinit { bytes.deallocate() }
    }

    @Test func zeroCopySendKeepsTheOwnerUntilSent() throws {
        let (a, b) = try pair("tcp://127.0.0.1:*")
        weak var watched: Buffer?
        let expected: [UInt8]
        do {
            let buffer = Buffer(count: 4 << 20)
            watched = buffer
            expected = [UInt8](UnsafeRawBufferPointer(buffer.bytes))
            try b.send(UnsafeRawBufferPointer(start: nil, count: 0), more: true)
            try b.sendWithoutCopy(UnsafeRawPointer(buffer.bytes.baseAddress!), count: buffer.bytes.count, owner: buffer, more: false)
        }
        let frames = try a.receiveMessage()
        #expect(frames.count == 2)
        #expect(frames[0].bytes.isEmpty)
        #expect(frames[1].bytes.elementsEqual(expected))
        // libzmq releases the owner on its I/O thread shortly after the send completes.
        let deadline = Date().addingTimeInterval(5)
        while watched != nil && Date() < deadline { usleep(1000) }
        #expect(watched == nil, "the zero-copy owner was never released")
    }

    @Test func receiveTimesOutWithAClearError() throws {
        let (a, _) = try pair("tcp://127.0.0.1:*")
        try a.setReceiveTimeout(50)
        #expect(throws: TransportError.timedOut(operation: "receive", milliseconds: 50)) { try a.receive() }
    }

    @Test func pollReportsTheReadableSocket() throws {
        let (a, b) = try pair("tcp://127.0.0.1:*")
        let (c, _) = try pair("tcp://127.0.0.1:*")
        #expect(try ZMQSocket.pollReadable([a, c], milliseconds: 0) == [])
        try b.send([[7]])
        #expect(try ZMQSocket.pollReadable([a, c], milliseconds: 5000) == [0])
    }

    @Test func curveWithTheClusterKeyTalks() throws {
        #expect(ZMQContext.hasCurve)
        let key = try ClusterKey.generate()
        let (a, b) = try pair("tcp://127.0.0.1:*", server: key, client: key)
        try b.send([Array("secret".utf8)])
        #expect(try a.receive() == [Array("secret".utf8)])
        try a.send([[1]])
        #expect(try b.receive() == [[1]])
    }

    @Test func peersWithoutTheClusterKeyAreRefused() throws {
        let key = try ClusterKey.generate()
        let other = try ClusterKey.generate()
        // A client holding another cluster's key, and a client with no key at all: the
        // handshake fails, so nothing they send is ever delivered.
        for client in [other, nil] as [ClusterKey?] {
            let (a, b) = try pair("tcp://127.0.0.1:*", server: key, client: client)
            try a.setReceiveTimeout(300)
            try b.setSendTimeout(300)
            try? b.send([Array("intruder".utf8)])
            #expect(throws: TransportError.timedOut(operation: "receive", milliseconds: 300)) { try a.receive() }
        }
    }

    @Test func aClientThatKnowsOnlyThePublicKeyIsRefused() throws {
        // The public key is no secret (forge keygen prints it): a client that uses it as the
        // server's key, with a key pair of its own, completes CURVE's encryption, but the
        // context's ZAP handler refuses it; the same context still admits a cluster member,
        // and a plain (NULL) pair beside them is untouched.
        let key = try ClusterKey.generate()
        let outsider = try ClusterKey.generate()
        let server = try ZMQSocket(context, kind: .pair)
        try server.makeCurveServer(key)
        let bound = try server.bind("tcp://127.0.0.1:*")
        try server.setReceiveTimeout(500)
        let client = try ZMQSocket(context, kind: .pair)
        try client.makeCurveClient(of: key, holding: outsider)
        try client.connect(bound)
        try client.setSendTimeout(300)
        try? client.send([Array("intruder".utf8)])
        #expect(throws: TransportError.timedOut(operation: "receive", milliseconds: 500)) { try server.receive() }
        let (a, b) = try pair("tcp://127.0.0.1:*", server: key, client: key)
        try b.send([Array("member".utf8)])
        #expect(try a.receive() == [Array("member".utf8)])
        let (c, d) = try pair("tcp://127.0.0.1:*")
        try d.send([[7]])
        #expect(try c.receive() == [[7]])
    }

    @Test func errorsNameTheCallAndErrno() throws {
        let socket = try ZMQSocket(context, kind: .pair)
        do {
            try socket.bind("nonsense://here")
            Issue.record("bind to a bad endpoint succeeded")
        } catch {
            guard case .callFailed(let call, let errno) = error else { Issue.record("unexpected \(error)"); return }
            #expect(call == "zmq_bind(nonsense://here)")
            #expect(errno != 0)
            #expect(error.description.contains("zmq_bind(nonsense://here) failed"))
        }
    }
}

// `forge bench allreduce`: run as a rank under `forge launch`, all-reduce buffers of several
// sizes, check the result against the closed form, and print nccl-tests columns.
import ArgumentParser
import ForgeCollectives
import ForgeTransport
import Foundation

struct AllReduceBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "All-reduce float32 buffers across the ranks of `forge launch` and print time, algbw and busbw."
    )

    @Option(help: "Buffer sizes in bytes, comma-separated.") var sizes = "4096,1048576,16777216"
    @Option(help: "Timed batches per size (the median batch's time per call is reported).") var iterations = 5
    @Option(help: "Seconds a timed batch lasts at least (calls per batch double until it does).") var minimumSeconds = 0.05
    @Option(help: "Data plane: tcp (plain TCP connections each rank polls itself; ZeroMQ with a cluster key), zmq (ZeroMQ over tcp), ipc (ZeroMQ over ipc), or shm (shared memory between ranks on one host, tcp to the others).")
    var transport = "tcp"
    @Option(help: "Bytes per chunk on the wire (the ring's pipelining unit).") var chunkBytes = 1 << 18
    @Option(help: "All-reduces of at most this many bytes use recursive doubling, larger ones the ring (default: 64 KiB in shared memory, 256 KiB over sockets).")
    var smallBytes: Int?
    @Option(help: "On 4, 8, … ranks: all-reduces above the recursive-doubling size and up to this many bytes use recursive halving and doubling, larger ones the ring; 0: never (default: every size over sockets, never in shared memory).")
    var halvingBytes: Int?
    @Option(help: "With shm and every peer on this host: all-reduces above this many bytes go through a shared scratch region, each rank reducing its segment in place (default: the group's).")
    var directBytes: Int?
    @Flag(help: "With shm and every peer on this host: the buffers live in a region every rank maps (as a trainer's gradients do), reduced in place without copies.")
    var sharedBuffer = false
    @Option(help: "Seconds a rank waits for a peer before failing.") var timeout = 30
    @Option(help: "For tests: this rank exits with status 3 after its first all-reduce (each size's checked call), at once, as a crash would.") var failRank: Int?

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let rank = environment["RANK"].flatMap(Int.init), let worldSize = environment["WORLD_SIZE"].flatMap(Int.init),
              let address = environment["MASTER_ADDR"], let port = environment["MASTER_PORT"] else {
            throw ValidationError("run me under forge launch (RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT are not set)")
        }
        guard ["tcp", "zmq", "ipc", "shm"].contains(transport) else {
            throw ValidationError("--transport must be tcp, zmq, ipc or shm, not \(transport)")
        }
        do {
            let key = try environment["FORGE_CLUSTER_KEY"].map { path throws(TransportError) in try ClusterKey.load(path: path) }
            // On one node ranks listen on loopback; across nodes on every interface, advertised
            // under the node's address.
            let nodeAddress = environment["FORGE_NODE_ADDR"] ?? "127.0.0.1"
            let local = nodeAddress == "127.0.0.1"
            let bind = transport == "ipc"
                ? "ipc://\(NSTemporaryDirectory())forge-\(port)-\(rank).ipc"
                : (local ? "tcp://127.0.0.1:*" : "tcp://*:*")
            let configuration = RendezvousConfiguration(rank: rank, worldSize: worldSize, master: "tcp://\(address):\(port)",
                                                        timeoutMilliseconds: timeout * 1000)
            let group = try ProcessGroup.join(configuration, bind: bind, advertisedHost: local || transport == "ipc" ? nil : nodeAddress,
                                              key: key, timeoutMilliseconds: timeout * 1000, sharedMemory: transport == "shm",
                                              plainSockets: transport != "zmq",
                                              chunkElements: max(1, chunkBytes / 4), smallAllReduceBytes: smallBytes)
            if rank == 0 {
                let keyed = group.route(of: SocketTransport.self)?.sealed == true ? " sealed (AES-256-GCM)"
                    : group.route(of: ZMQTransport.self) != nil ? " with CURVE" : " (rendezvous under CURVE)"
                print("all-reduce (sum, float32), \(worldSize) ranks over \(transport)\(key == nil ? "" : keyed)"
                      + (transport == "shm" ? " (\(group.sharedMemoryPeers) of \(worldSize - 1) peers through shared memory)" : ""))
                print("     bytes      time(us)   algbw(GB/s)   busbw(GB/s)")
            }
            if let directBytes { group.directAllReduceBytes = directBytes }
            if let halvingBytes { group.halvingDoublingBytes = halvingBytes > 0 ? halvingBytes : nil }
            let sizeList = sizes.split(separator: ",").compactMap { Int($0) }
            let largest = max(1, (sizeList.max() ?? 4) / 4)
            let shared = sharedBuffer ? try group.sharedBuffer(count: largest) : nil
            if sharedBuffer && shared == nil && rank == 0 { print("(no shared buffer: not every peer is in shared memory)") }
            let owned = UnsafeMutableBufferPointer<Float>.allocate(capacity: shared == nil ? largest : 0)
            defer { owned.deallocate() }
            // One float all ranks agree on: the slowest rank's seconds.
            let slowest = UnsafeMutableBufferPointer<Float>.allocate(capacity: 1)
            defer { slowest.deallocate() }
            func maxOverRanks(_ seconds: Double) throws -> Double {
                slowest[0] = Float(seconds)
                try group.allReduce(slowest, op: .max)
                return Double(slowest[0])
            }
            func batch(_ values: UnsafeMutableBufferPointer<Float>, _ calls: Int) throws -> Double {
                try group.barrier()
                let start = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<calls { try group.allReduce(values, op: .sum) }
                return try maxOverRanks(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            for bytes in sizeList {
                let count = max(1, bytes / 4)
                let values = UnsafeMutableBufferPointer(rebasing: (shared ?? owned)[0..<count])
                // Checked once with values whose sum has a closed form…
                for i in 0..<count { values[i] = Float(rank + 1) * Float(i % 7 + 1) }
                try group.allReduce(values, op: .sum)
                if failRank == rank {
                    // As a crash would: no unwinding, its sockets close as the process ends.
                    FileHandle.standardError.write(Data("rank \(rank): exiting on purpose (--fail-rank)\n".utf8))
                    Foundation.exit(3)
                }
                let rankSum = Float(worldSize * (worldSize + 1) / 2)
                guard values.indices.allSatisfy({ values[$0] == rankSum * Float($0 % 7 + 1) }) else {
                    FileHandle.standardError.write(Data("error: rank \(rank): wrong all-reduce result at \(bytes) bytes\n".utf8))
                    throw ExitCode.failure
                }
                // …then timed as the MPI anchor times: after a barrier, a batch of back-to-back
                // calls long enough to time (zeros, so in-place sums stay finite), the slowest
                // rank's time per call; the median over `iterations` batches.
                for i in 0..<count { values[i] = 0 }
                var calls = 1
                while try batch(values, calls) < minimumSeconds && calls < 1 << 16 { calls *= 2 }
                var times = [Double]()
                for _ in 0..<iterations { times.append(try batch(values, calls) / Double(calls)) }
                let median = times.sorted()[times.count / 2]
                let algbw = Double(count * 4) / median / 1e9
                let busbw = algbw * 2 * Double(worldSize - 1) / Double(worldSize)
                if rank == 0 {
                    print(String(format: "%10d  %12.1f  %12.3f  %12.3f", count * 4, median * 1e6, algbw, busbw))
                    emit(["kind": "allreduce", "bytes": count * 4, "ranks": worldSize, "transport": shared == nil ? transport : transport + "+shared",
                          "seconds": median, "algbw": algbw, "busbw": busbw, "calls_per_batch": calls])
                }
            }
            print("rank \(rank): verified")
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("error: rank \(rank): \(error)\n".utf8))
            throw RankEnvironment.failureStatus(error)
        }
    }
}

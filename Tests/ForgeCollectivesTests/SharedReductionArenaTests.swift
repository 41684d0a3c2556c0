// The direct all-reduce of co-located ranks (SharedReductionArena): buffers inside a shared
// region reduced in place, any buffer through a scratch region in pieces, on 2–5 rank threads
// over real /dev/shm mailboxes; every result has a closed form and every rank ends with the
// same bits. Groups that are not all co-located get no region, and a silent peer is a timeout.
import ForgeCollectives
import ForgeTestSupport
import Foundation
import Testing

@Suite struct SharedReductionArenaTests {
    /// Rank r's element i.
    private static func input(_ rank: Int, _ i: Int, round: Int) -> Float { Float((rank + 1) * (i % 11 + 1) + round) }

    private static func expected(_ op: ReduceOp, _ worldSize: Int, _ i: Int, round: Int) -> Float {
        let values = (0..<worldSize).map { input($0, i, round: round) }
        switch op {
        case .sum: return values.reduce(0, +)
        case .mean: return values.reduce(0, +) * (1 / Float(worldSize))
        case .max: return values.max() ?? 0
        }
    }

    /// Runs `body` on every rank's group over shared-memory mailboxes (every peer attached).
    private func run<T: Sendable>(_ worldSize: Int, timeoutMilliseconds: Int = 10_000,
                                  _ body: @escaping @Sendable (ProcessGroup) throws -> T) throws -> [T] {
        let transports = Handed(value: try TransportKind.sharedMemory.make(worldSize, timeoutMilliseconds: timeoutMilliseconds))
        let outcomes = onRanks(worldSize) { rank -> Result<T, CollectiveError> in
            let group = ProcessGroup(transport: transports.value[rank], chunkElements: 7)
            do {
                return .success(try body(group))
            } catch let error as CollectiveError {
                return .failure(error)
            } catch {
                return .failure(.invalidArgument("\(error)"))
            }
        }
        return try outcomes.map { try $0.get() }
    }

    @Test(arguments: [2, 3, 4, 5])
    func buffersInASharedRegionReduceInPlace(worldSize: Int) throws {
        // Counts below the world size, counts that do not divide, an offset into the region, and
        // several calls in a row (the handshakes carry on from one call to the next).
        let results = try run(worldSize) { group -> [[UInt32]] in
            let region = try #require(try group.sharedBuffer(count: 4200))
            var seen: [[UInt32]] = []
            for (round, (count, op)) in [(1, ReduceOp.sum), (3, .max), (13, .mean), (4099, .sum), (4099, .max), (2, .sum)].enumerated() {
                let buffer = UnsafeMutableBufferPointer(rebasing: region[5..<(5 + count)])
                for i in 0..<count { buffer[i] = Self.input(group.rank, i, round: round) }
                try group.allReduce(buffer, op: op)
                for i in 0..<count {
                    #expect(buffer[i] == Self.expected(op, worldSize, i, round: round), "\(worldSize) ranks, \(op) of \(count), element \(i)")
                }
                seen.append(buffer.map(\.bitPattern))
            }
            return seen
        }
        for result in results { #expect(result == results[0]) }
    }

    @Test(arguments: [2, 3, 4, 5])
    func reduceScatterAndAllGatherWorkInPlaceInARegion(worldSize: Int) throws {
        // ZeRO's pair: reduce-scatter leaves each rank the reduction of its segment (and its own
        // input elsewhere); all-gather then hands every rank every segment.
        let results = try run(worldSize) { group -> [UInt32] in
            let region = try #require(try group.sharedBuffer(count: 40))
            var last: [UInt32] = []
            for (round, count) in [3, 13, 40].enumerated() {
                let buffer = UnsafeMutableBufferPointer(rebasing: region[0..<count])
                for i in 0..<count { buffer[i] = Self.input(group.rank, i, round: round) }
                try group.reduceScatter(buffer, op: .sum)
                let own = group.segment(of: count)
                for i in 0..<count {
                    let expected = own.contains(i) ? Self.expected(.sum, worldSize, i, round: round) : Self.input(group.rank, i, round: round)
                    #expect(buffer[i] == expected, "\(worldSize) ranks, reduce-scatter of \(count), element \(i)")
                }
                // Each rank marks its segment, then gathers everyone's.
                for i in own { buffer[i] = Float(group.rank * 100 + i) }
                try group.allGather(buffer)
                for i in 0..<count {
                    let owner = (0..<worldSize).first { RingAllReduce.segment($0, of: count, ranks: worldSize).contains(i) } ?? -1
                    #expect(buffer[i] == Float(owner * 100 + i), "\(worldSize) ranks, all-gather of \(count), element \(i)")
                }
                last = buffer.map(\.bitPattern)
            }
            return last
        }
        for result in results { #expect(result == results[0]) }
    }

    @Test(arguments: [2, 3, 4, 5])
    func aShardedStepReducesUpdatesAndGathersInOnePass(worldSize: Int) throws {
        // ZeRO's step in one call: each rank's segment of the gradients is reduced, the update
        // sees exactly that segment reduced (and the step's scalars not yet summed), writes the
        // same segment of the values, and every rank ends with every segment and the summed
        // scalars. In a region, and (with the buffers outside one) by the separate collectives.
        for inRegion in [true, false] {
            let results = try run(worldSize) { group -> [UInt32] in
                let region = inRegion ? try group.sharedBuffer(count: 16 + 2 * 48) : nil
                #expect(region != nil || !inRegion)
                var plain = [Float](repeating: 0, count: 16 + 2 * 48)
                var last: [UInt32] = []
                try plain.withUnsafeMutableBufferPointer { fallback in
                    let memory = region ?? fallback
                    for (round, count) in [1, 3, 13, 48].enumerated() {
                        let scalars = UnsafeMutableBufferPointer(rebasing: memory[0..<2])
                        let values = UnsafeMutableBufferPointer(rebasing: memory[16..<(16 + count)])
                        let gradients = UnsafeMutableBufferPointer(rebasing: memory[(16 + 48)..<(16 + 48 + count)])
                        for i in 0..<count { gradients[i] = Self.input(group.rank, i, round: round) }
                        scalars[0] = Float(group.rank + 1)
                        scalars[1] = group.rank == worldSize - 1 ? 1 : 0
                        let own = group.segment(of: count)
                        var updated = false
                        try group.reduceScatterUpdateGather(gradients: gradients, values: values, scalars: scalars) {
                            for i in own {
                                #expect(gradients[i] == Self.expected(.sum, worldSize, i, round: round), "\(worldSize) ranks, gradient \(i)")
                                values[i] = gradients[i] * 2 + Float(group.rank * 1000)
                            }
                            updated = true
                        }
                        #expect(updated)
                        for i in 0..<count {
                            let owner = (0..<worldSize).first { RingAllReduce.segment($0, of: count, ranks: worldSize).contains(i) } ?? -1
                            #expect(values[i] == Self.expected(.sum, worldSize, i, round: round) * 2 + Float(owner * 1000),
                                    "\(worldSize) ranks, \(count) values, element \(i), in a region: \(inRegion)")
                        }
                        #expect(scalars[0] == Float(worldSize * (worldSize + 1) / 2))
                        #expect(scalars[1] == 1)
                        last = values.map(\.bitPattern) + scalars.map(\.bitPattern)
                    }
                }
                return last
            }
            for result in results { #expect(result == results[0]) }
        }
    }

    @Test(arguments: [2, 3, 4, 5])
    func shardedStepsOverOneSharedCopyOfTheValuesGatherNothing(worldSize: Int) throws {
        // The trainer's loop over values all ranks share (rank 0's region, after the header and
        // the gradients, a tail only rank 0 gives memory): each round every rank writes
        // gradients computed from the values it reads, then each updates its segment in place.
        // Two handshakes a step and no copy: a rank that read a value before every update
        // landed, or wrote gradients a peer was still reducing, would drift from the closed form
        // (integers, exact in floats) computed here. The values' count spans several pages,
        // whose memory must be rank 0's alone, before and after the steps.
        let count = 3000, line = 16, padded = 3008, rounds = 300
        let results = try run(worldSize) { group -> [UInt32] in
            let region = try #require(try group.sharedBuffer(count: line + padded + count, rankZeroOnlyTail: count))
            let gradients = UnsafeMutableBufferPointer(rebasing: region[line..<(line + count)])
            let own = UnsafeMutableBufferPointer(rebasing: region[(line + padded)...])
            let values = try #require(group.sharedCounterpart(of: own, on: 0))
            #expect(values.baseAddress != own.baseAddress || group.rank == 0)
            let tailPages = Self.residentPages(own)
            #expect(tailPages.total >= 2)
            if Self.smallShmemPages {
                #expect(tailPages.resident == (group.rank == 0 ? tailPages.total : 0), "rank \(group.rank): \(tailPages) of the values' pages take memory")
            }
            let scalars = UnsafeMutableBufferPointer(rebasing: region[0..<2])
            var expected = [Int](repeating: 0, count: count)
            let mine = group.segment(of: count)
            for round in 0..<rounds {
                for i in 0..<count { gradients[i] = values[i] + Self.input(group.rank, i, round: round) }
                scalars[0] = Float(group.rank + round)
                scalars[1] = 0
                try group.reduceScatterUpdate(gradients: gradients, scalars: scalars) {
                    for i in mine { values[i] = gradients[i].truncatingRemainder(dividingBy: 997) }
                }
                for i in 0..<count {
                    let sum = (0..<worldSize).reduce(0) { $0 + expected[i] + Int(Self.input($1, i, round: round)) }
                    expected[i] = sum % 997
                }
                #expect(scalars[0] == Float((0..<worldSize).reduce(0) { $0 + $1 + round }), "round \(round)")
            }
            for i in 0..<count {
                #expect(values[i] == Float(expected[i]), "\(worldSize) ranks, value \(i) after \(rounds) rounds")
            }
            if Self.smallShmemPages {
                #expect(Self.residentPages(own).resident == (group.rank == 0 ? tailPages.total : 0), "rank \(group.rank) touched its own copy")
            }
            return values.map(\.bitPattern)
        }
        for result in results { #expect(result == results[0]) }
    }

    /// Whether /dev/shm hands out 4 KiB pages (no huge pages forced on it or mounted with
    /// huge=), so that mincore sees one page per 4 KiB touched.
    private static let smallShmemPages: Bool = {
        let policy = (try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/shmem_enabled", encoding: .utf8)) ?? ""
        let mount = ((try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? "").split(separator: "\n")
            .first { $0.split(separator: " ").dropFirst().first == "/dev/shm" } ?? ""
        return !policy.contains("[force]") && (!mount.contains("huge=") || mount.contains("huge=never"))
    }()

    /// Of the whole pages inside `buffer` (a shared mapping), how many have memory (mincore).
    private static func residentPages(_ buffer: UnsafeMutableBufferPointer<Float>) -> (resident: Int, total: Int) {
        let page = 4096
        guard let start = buffer.baseAddress else { return (0, 0) }
        let first = (Int(bitPattern: start) + page - 1) / page * page
        let end = (Int(bitPattern: start + buffer.count)) / page * page
        guard end > first else { return (0, 0) }
        var vector = [UInt8](repeating: 0, count: (end - first) / page)
        guard mincore(UnsafeMutableRawPointer(bitPattern: first), end - first, &vector) == 0 else { return (-1, vector.count) }
        return (vector.filter { $0 & 1 != 0 }.count, vector.count)
    }

    @Test(arguments: [2, 3, 4, 5])
    func anyBufferReducesThroughAScratchRegionInPieces(worldSize: Int) throws {
        // A scratch region of 8 floats: halves of 4, so a buffer of 37 takes 10 pieces and both
        // halves are used in turn.
        let results = try run(worldSize) { group -> [[UInt32]] in
            group.scratchFloats = 8
            group.directAllReduceBytes = 0
            var seen: [[UInt32]] = []
            for (round, (count, op)) in [(1, ReduceOp.sum), (5, .mean), (37, .max), (37, .sum), (3, .sum)].enumerated() {
                var values = (0..<count).map { Self.input(group.rank, $0, round: round) }
                try values.withUnsafeMutableBufferPointer { try group.allReduce($0, op: op) }
                for i in 0..<count {
                    #expect(values[i] == Self.expected(op, worldSize, i, round: round), "\(worldSize) ranks, \(op) of \(count), element \(i)")
                }
                seen.append(values.map(\.bitPattern))
            }
            return seen
        }
        for result in results { #expect(result == results[0]) }
    }

    @Test func ranksThatDoNotAllShareMemoryGetNoRegion() throws {
        // Mixed: ranks 0–1 and 2–3 share memory in pairs, the pairs talk over tcp. Nobody gets a
        // region, and the scratch threshold falls back to the message algorithms.
        let transports = Handed(value: try TransportKind.mixed.make(4, timeoutMilliseconds: 10_000))
        let results = onRanks(4) { rank -> Result<(Bool, [Float]), CollectiveError> in
            let group = ProcessGroup(transport: transports.value[rank])
            group.directAllReduceBytes = 0
            do {
                let region = try group.sharedBuffer(count: 16)
                var values: [Float] = [Float(rank), 1]
                try values.withUnsafeMutableBufferPointer { try group.allReduce($0, op: .sum) }
                return .success((region == nil, values))
            } catch let error as CollectiveError {
                return .failure(error)
            } catch {
                return .failure(.invalidArgument("\(error)"))
            }
        }
        for result in results {
            let (noRegion, values) = try result.get()
            #expect(noRegion)
            #expect(values == [6, 4])
        }
    }

    @Test func aPeerThatNeverArrivesIsATimeoutNamingIt() throws {
        // Rank 1 makes the region with rank 0, then never reduces: rank 0 gives up within its
        // timeout, naming rank 1.
        let results = try run(2, timeoutMilliseconds: 300) { group -> CollectiveError? in
            let region = try #require(try group.sharedBuffer(count: 64))
            guard group.rank == 0 else { return nil }
            let started = Date()
            do throws(CollectiveError) {
                try group.allReduce(UnsafeMutableBufferPointer(rebasing: region[0..<64]), op: .sum)
                return nil
            } catch {
                #expect(Date().timeIntervalSince(started) < 5)
                return error
            }
        }
        #expect(results[0] == .timedOut(peer: 1, milliseconds: 300))
    }
}

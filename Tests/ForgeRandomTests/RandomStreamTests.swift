import ForgeRandom
import Testing

@Suite struct RandomStreamTests {
    @Test func sameSeedSameSequence() {
        var a = RandomStream(seed: 42), b = RandomStream(seed: 42), c = RandomStream(seed: 43)
        let xa = (0..<8).map { _ in a.next() }, xb = (0..<8).map { _ in b.next() }
        let xc = (0..<8).map { _ in c.next() }
        #expect(xa == xb)
        #expect(xa != xc)
    }

    @Test func stateRestoresTheStream() throws {
        var a = RandomStream(seed: 7)
        _ = (0..<5).map { _ in a.next() }
        var b = try #require(RandomStream(state: a.state))
        #expect((0..<10).map { _ in a.next() } == (0..<10).map { _ in b.next() })
        #expect(RandomStream(state: [0, 0, 0, 0]) == nil)
    }

    @Test func permutationIsAPermutation() {
        var r = RandomStream(seed: 1)
        let p = r.permutation(1000)
        #expect(Set(p).count == 1000)
        #expect(p != Array(0..<1000))
    }

    @Test func unitAndNormalMoments() {
        var r = RandomStream(seed: 3)
        let n = 100_000
        var sum = 0.0, sumSq = 0.0, unitSum = 0.0
        for _ in 0..<n {
            let z = Double(r.nextNormal())
            sum += z; sumSq += z * z
            let u = r.nextUnit()
            #expect(u >= 0 && u < 1)
            unitSum += Double(u)
        }
        #expect(abs(sum / Double(n)) < 0.02)
        #expect(abs(sumSq / Double(n) - 1) < 0.02)
        #expect(abs(unitSum / Double(n) - 0.5) < 0.01)
    }

    @Test func counterRandomIsAPureFunctionOfItsKey() {
        let r = CounterRandom(seed: 9)
        #expect(r.bits(1, 2, 3) == CounterRandom(seed: 9).bits(1, 2, 3))
        #expect(r.bits(1, 2, 3) != r.bits(1, 2, 4))
        #expect(r.bits(1, 2, 3) != CounterRandom(seed: 10).bits(1, 2, 3))
        let u = r.unit(5)
        #expect(u >= 0 && u < 1)
    }

    @Test func nextIntStaysInRange() {
        var r = RandomStream(seed: 11)
        var seen = Set<Int>()
        for _ in 0..<1000 {
            let v = r.nextInt(below: 7)
            #expect((0..<7).contains(v))
            seen.insert(v)
        }
        #expect(seen.count == 7)
    }
}

// Seeded randomness that reproduces bit for bit on every machine: a counter-based hash for
// values keyed by coordinates (dropout masks, per-epoch shuffles) and a small stream
// generator whose whole state fits in a checkpoint.

/// SplitMix64's finaliser: a bijective 64-bit mix with full avalanche.
@inline(__always)
public func mix64(_ value: UInt64) -> UInt64 {
    var z = value &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// A pure function from a key (seed and coordinates) to 64 random bits. Any layout that asks
/// for the same key gets the same bits, so randomness never depends on who computes it.
public struct CounterRandom: Sendable, Hashable {
    public let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// 64 random bits for the coordinates (a, b, c).
    @inline(__always)
    public func bits(_ a: UInt64, _ b: UInt64 = 0, _ c: UInt64 = 0) -> UInt64 {
        mix64(mix64(mix64(seed ^ 0x5851_F42D_4C95_7F2D &+ a) ^ b) &+ c)
    }

    /// A float uniform in [0, 1) with 24 random bits.
    @inline(__always)
    public func unit(_ a: UInt64, _ b: UInt64 = 0, _ c: UInt64 = 0) -> Float {
        Float(bits(a, b, c) >> 40) * (1.0 / 16_777_216.0)
    }

    /// An independent stream for the key (a, b), e.g. (purpose, epoch).
    public func stream(_ a: UInt64, _ b: UInt64 = 0) -> RandomStream {
        RandomStream(seed: bits(a, b, 0x57))
    }
}

/// xoshiro256** seeded through SplitMix64. A value type: copy it to fork, store `state` to
/// checkpoint, restore with `init(state:)`.
public struct RandomStream: RandomNumberGenerator, Sendable, Hashable {
    public private(set) var state: [UInt64]

    public init(seed: UInt64) {
        var s = seed
        var words = [UInt64]()
        for _ in 0..<4 {
            s = s &+ 0x9E37_79B9_7F4A_7C15
            words.append(mix64(s &- 0x9E37_79B9_7F4A_7C15))
        }
        if words.allSatisfy({ $0 == 0 }) { words[0] = 1 }
        state = words
    }

    /// Restores a stream from `state` (four words, not all zero).
    public init?(state: [UInt64]) {
        guard state.count == 4, state.contains(where: { $0 != 0 }) else { return nil }
        self.state = state
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]
        state[3] ^= state[1]
        state[1] ^= state[2]
        state[0] ^= state[3]
        state[2] ^= t
        state[3] = rotl(state[3], 45)
        return result
    }

    /// A float uniform in [0, 1).
    public mutating func nextUnit() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// A standard normal sample (Box–Muller, computed in Double for portability of the bits).
    public mutating func nextNormal() -> Float {
        let u1 = (Double(next() >> 11) + 1) * (1.0 / 9_007_199_254_740_993.0)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }

    /// A uniform integer in 0..<bound without modulo bias (Lemire's method).
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "bound must be positive")
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = next().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// A Fisher–Yates permutation of 0..<count.
    public mutating func permutation(_ count: Int) -> [Int] {
        var order = Array(0..<count)
        if count < 2 { return order }
        for i in stride(from: count - 1, to: 0, by: -1) {
            order.swapAt(i, nextInt(below: i + 1))
        }
        return order
    }

    @inline(__always)
    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

// Portable libm: the same bits on every platform this builds for (glibc's log and cos are
// correctly rounded enough for Box-Muller; we only need determinism per machine image).
#if canImport(Glibc)
import Glibc
@inline(__always) private func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#elseif canImport(Darwin)
import Darwin
@inline(__always) private func _log(_ x: Double) -> Double { Darwin.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Darwin.cos(x) }
#endif

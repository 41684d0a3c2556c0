// SplitMix64: the seeded generator behind every test fixture and fuzz case.

/// SplitMix64 (Steele, Lea and Flood): a tiny seeded generator, so fixtures are reproducible
/// from their seed and do not depend on the code under test. The same seed gives the same
/// sequence on every platform.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator whose sequence is fixed by `seed`.
    public init(seed: UInt64) {
        state = seed
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `0..<bound` (by remainder: the bias is negligible for the small bounds tests use).
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0, "below(\(bound)): the bound must be positive")
        return Int(next() % UInt64(bound))
    }

    /// Uniform in [0, 1), from the top bits of `next()`: as many as `Value`'s significand holds
    /// (24 for `Float`, 53 for `Double`), so every result is exact.
    public mutating func unit<Value: BinaryFloatingPoint>() -> Value {
        let bits = min(64, Value.significandBitCount + 1)
        return Value(next() >> (64 - bits)) * Value(sign: .plus, exponent: Value.Exponent(-bits), significand: 1)
    }

    /// Uniform in [-1, 1), one `unit()` draw.
    public mutating func signed<Value: BinaryFloatingPoint>() -> Value {
        2 * unit() - 1
    }
}

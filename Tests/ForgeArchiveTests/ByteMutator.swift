// Seeded random mutations of valid encodings, and the fuzz loop every decoder test shares.
import Foundation
import ForgeArchive

/// SplitMix64: a tiny seeded generator, so every fuzz case is reproducible from its seed.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Mutates byte strings the way real corruption does: bit flips, bytes set to boundary or
/// syntax values, truncation, insertion, deletion and duplication.
enum ByteMutator {
    /// Bytes that hit parser edges: zero, sign bits, octal/decimal digits, JSON and path syntax.
    private static let interesting: [UInt8] = Array("\0\u{7f} 079/.\"{}[],:-e\\".utf8) + [0x80, 0xff]

    /// `bytes` with one to three random mutations applied.
    static func mutate(_ bytes: [UInt8], using rng: inout SplitMix64) -> [UInt8] {
        var result = bytes
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            let position = result.isEmpty ? 0 : Int.random(in: 0..<result.count, using: &rng)
            switch Int.random(in: 0..<7, using: &rng) {
            case 0 where !result.isEmpty:
                result[position] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
            case 1 where !result.isEmpty:
                result[position] = UInt8.random(in: 0...255, using: &rng)
            case 2 where !result.isEmpty:
                result[position] = interesting.randomElement(using: &rng) ?? 0
            case 3:
                result.removeSubrange(Int.random(in: 0...result.count, using: &rng)...)
            case 4:
                let inserted = (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                result.insert(contentsOf: inserted, at: position)
            case 5 where !result.isEmpty:
                result.removeSubrange(position..<min(result.count, position + Int.random(in: 1...64, using: &rng)))
            case 6 where !result.isEmpty:
                let chunk = result[position..<min(result.count, position + Int.random(in: 1...32, using: &rng))]
                result.insert(contentsOf: chunk, at: Int.random(in: 0...result.count, using: &rng))
            default:
                break
            }
        }
        return result
    }

    /// Decodes `iterations` mutations of `valid`, seeds `0..<iterations`. `decode` either
    /// returns (and may check invariants of what it decoded, naming the seed) or throws
    /// `ArchiveError`; a crash or hang fails the run. With `FORGE_FUZZ_TRACE` set, each seed is
    /// written to stderr before it runs, so a crash names its seed.
    /// Returns how many mutations decoded and how many were rejected.
    static func fuzz(
        _ label: String,
        valid: [UInt8],
        iterations: Int,
        adjust: (inout [UInt8], inout SplitMix64) -> Void = { _, _ in },
        decode: (_ seed: UInt64, _ bytes: [UInt8]) throws(ArchiveError) -> Void
    ) -> (decoded: Int, rejected: Int) {
        let trace = ProcessInfo.processInfo.environment["FORGE_FUZZ_TRACE"] != nil
        var decoded = 0
        var rejected = 0
        for seed in UInt64(0)..<UInt64(iterations) {
            if trace { FileHandle.standardError.write(Data("fuzz \(label) seed \(seed)\n".utf8)) }
            var rng = SplitMix64(seed: seed)
            var input = mutate(valid, using: &rng)
            adjust(&input, &rng)
            do {
                try decode(seed, input)
                decoded += 1
            } catch {
                rejected += 1
            }
        }
        return (decoded, rejected)
    }
}

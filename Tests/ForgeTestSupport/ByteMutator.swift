// Seeded random mutations of valid encodings, and the fuzz loop the decoder tests share.
import Foundation

/// Mutates byte strings the way real corruption does: bit flips, bytes overwritten with random
/// or `interesting` values, truncation, insertion, deletion and duplication. Every choice is
/// drawn from the caller's `SplitMix64`, so each mutated input is reproducible from its seed.
public struct ByteMutator: Sendable {
    /// Bytes that hit the edges of binary container parsers: zero, sign bits, octal and decimal
    /// digits, JSON and path syntax.
    public static let containerSyntax: [UInt8] = Array("\0\u{7f} 079/.\"{}[],:-e\\".utf8) + [0x80, 0xff]

    /// Bytes that mean something to text readers of numbers: digits, separators, signs,
    /// exponents, comments, line ends, the letters of `nan`/`inf`/`0x`, and the gzip magic.
    public static let numericText: [UInt8] = Array("0123456789,.:-+eE #\n\r\t nNaIiFx".utf8) + [0, 0xFF, 0x1F, 0x8B, 0x08]

    /// Both lists, each byte once: the default for a decoder that is neither kind.
    public static let parserEdges: [UInt8] = {
        var seen = Set<UInt8>()
        return (containerSyntax + numericText).filter { seen.insert($0).inserted }
    }()

    /// Bytes favoured over uniform random ones when a byte is overwritten or inserted.
    public let interesting: [UInt8]

    /// A mutator that favours `interesting` bytes (at least one).
    public init(interesting: [UInt8] = ByteMutator.parserEdges) {
        precondition(!interesting.isEmpty, "ByteMutator needs at least one interesting byte")
        self.interesting = interesting
    }

    /// `bytes` with one to three random mutations applied.
    public func mutate(_ bytes: [UInt8], using random: inout SplitMix64) -> [UInt8] {
        var result = bytes
        for _ in 0..<Int.random(in: 1...3, using: &random) {
            let position = result.isEmpty ? 0 : Int.random(in: 0..<result.count, using: &random)
            switch Int.random(in: 0..<7, using: &random) {
            case 0 where !result.isEmpty:
                result[position] ^= 1 << UInt8.random(in: 0..<8, using: &random)
            case 1 where !result.isEmpty:
                result[position] = UInt8.random(in: 0...255, using: &random)
            case 2 where !result.isEmpty:
                result[position] = interesting[Int.random(in: 0..<interesting.count, using: &random)]
            case 3:
                result.removeSubrange(Int.random(in: 0...result.count, using: &random)...)
            case 4:
                let inserted = (0..<Int.random(in: 1...16, using: &random)).map { _ in byte(using: &random) }
                result.insert(contentsOf: inserted, at: Int.random(in: 0...result.count, using: &random))
            case 5 where !result.isEmpty:
                result.removeSubrange(position..<min(result.count, position + Int.random(in: 1...64, using: &random)))
            case 6 where !result.isEmpty:
                let chunk = result[position..<min(result.count, position + Int.random(in: 1...32, using: &random))]
                result.insert(contentsOf: chunk, at: Int.random(in: 0...result.count, using: &random))
            default:
                break
            }
        }
        return result
    }

    /// An interesting byte or a uniform random one, with equal odds.
    private func byte(using random: inout SplitMix64) -> UInt8 {
        Bool.random(using: &random)
            ? interesting[Int.random(in: 0..<interesting.count, using: &random)]
            : UInt8.random(in: 0...255, using: &random)
    }

    /// Decodes `iterations` mutations of `valid`, one per seed in `0..<iterations`, each from a
    /// fresh `SplitMix64(seed:)`. `adjust` may touch the mutated bytes up (say, repair a checksum)
    /// with the same generator. `decode` either returns (and may check invariants of what it
    /// decoded, naming the seed) or throws `Failure`; a crash or hang fails the run. With
    /// `FORGE_FUZZ_TRACE` set, each seed is written to stderr before it runs, so a crash names
    /// its seed. Returns how many mutations decoded and how many were rejected.
    public func fuzz<Failure: Error>(
        _ label: String,
        valid: [UInt8],
        iterations: Int,
        adjust: (inout [UInt8], inout SplitMix64) -> Void = { _, _ in },
        decode: (_ seed: UInt64, _ bytes: [UInt8]) throws(Failure) -> Void
    ) -> (decoded: Int, rejected: Int) {
        let trace = ProcessInfo.processInfo.environment["FORGE_FUZZ_TRACE"] != nil
        var decoded = 0
        var rejected = 0
        for seed in UInt64(0)..<UInt64(iterations) {
            if trace { FileHandle.standardError.write(Data("fuzz \(label) seed \(seed)\n".utf8)) }
            var random = SplitMix64(seed: seed)
            var input = mutate(valid, using: &random)
            adjust(&input, &random)
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

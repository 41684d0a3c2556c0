// Test support: seeded random byte mutations of valid inputs, for fuzzing the decoders.

/// Applies 1–3 random edits (overwrite, insert, delete, duplicate a run, truncate) to a byte
/// string, drawing from a SplitMix64 sequence so every run is reproducible from its seed.
struct ByteMutator {
    /// Bytes that mean something to the decoders, favoured over uniform random bytes.
    static let interesting: [UInt8] = Array("0123456789,.:-+eE #\n\r\t nNaIiFx".utf8) + [0, 0xFF, 0x1F, 0x8B, 0x08]

    private(set) var state: UInt64

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

    mutating func below(_ bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }

    mutating func byte() -> UInt8 {
        below(2) == 0 ? Self.interesting[below(Self.interesting.count)] : UInt8(truncatingIfNeeded: next())
    }

    /// `input` with 1–3 random edits.
    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var bytes = input
        for _ in 0 ..< 1 + below(3) {
            let position = below(bytes.count + 1)
            switch below(6) {
            case 0 where position < bytes.count:
                bytes[position] = byte()
            case 1:
                bytes.insert(byte(), at: position)
            case 2 where position < bytes.count:
                bytes.remove(at: position)
            case 3 where position < bytes.count:
                let end = min(bytes.count, position + 1 + below(8))
                bytes.insert(contentsOf: bytes[position..<end], at: position)
            case 4:
                bytes.removeSubrange(position...)
            default:
                if !bytes.isEmpty { bytes[below(bytes.count)] ^= UInt8(1 << below(8)) }
            }
        }
        return bytes
    }
}

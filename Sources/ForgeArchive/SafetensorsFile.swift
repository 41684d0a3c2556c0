// The safetensors file format: encoding and total, checked decoding.

/// A safetensors file: named tensors plus string metadata.
///
/// Layout: an 8-byte little-endian `UInt64` header length N, N bytes of UTF-8 JSON, then the
/// data buffer. The header maps each tensor name to `{"dtype", "shape", "data_offsets":
/// [begin, end]}` (byte offsets into the data buffer) and may hold `"__metadata__"`, an object
/// of strings. The writer lays tensors out in the order given and pads the header with spaces
/// so the buffer starts at a multiple of 8 bytes.
///
/// Decoding is total: any byte string either decodes or throws `corruptSafetensors`. Tensors
/// come back ordered by their offsets, which is the order they were written in.
public struct SafetensorsFile: Sendable, Equatable {
    /// Largest header accepted when decoding, in bytes (the reference implementation's limit).
    public static let maxHeaderByteCount = 100_000_000
    /// The header key reserved for metadata; no tensor name may start with it.
    public static let metadataKey = "__metadata__"

    /// The tensors, in data-buffer order.
    public var tensors: [SafeTensor]
    /// Free-form string metadata (`"__metadata__"` in the header).
    public var metadata: [String: String]

    /// Makes a file from tensors (written in this order) and metadata.
    public init(tensors: [SafeTensor] = [], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// The tensor called `name`, or nil.
    public subscript(name: String) -> SafeTensor? {
        tensors.first { $0.name == name }
    }

    /// The tensor called `name`; throws `missing` when there is none.
    public func tensor(named name: String) throws(ArchiveError) -> SafeTensor {
        guard let tensor = self[name] else { throw .missing(name) }
        return tensor
    }

    // MARK: - Encoding

    /// The file's bytes. Throws `invalidTensor` for an empty, duplicate or reserved name, a
    /// negative dimension, or a byte count that does not match `shape` and `dtype`.
    public func encoded() throws(ArchiveError) -> [UInt8] {
        var names: Set<String> = []
        var entries: [String] = []
        if !metadata.isEmpty {
            let members = metadata.sorted { $0.key < $1.key }
                .map { JSONValue.quoted($0.key) + ":" + JSONValue.quoted($0.value) }
            entries.append(JSONValue.quoted(Self.metadataKey) + ":{" + members.joined(separator: ",") + "}")
        }
        var offset = 0
        for tensor in tensors {
            try Self.validate(tensor)
            guard names.insert(tensor.name).inserted else {
                throw .invalidTensor(name: tensor.name, reason: "the name appears twice")
            }
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            let end = offset + tensor.bytes.count
            entries.append(
                JSONValue.quoted(tensor.name) + ":{\"dtype\":\"\(tensor.dtype.rawValue)\",\"shape\":[\(shape)],"
                    + "\"data_offsets\":[\(offset),\(end)]}"
            )
            offset = end
        }
        var header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        // Spaces after the JSON put the data buffer on an 8-byte boundary.
        header += repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8)
        var output: [UInt8] = []
        output.reserveCapacity(8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { output += $0 }
        output += header
        for tensor in tensors { output += tensor.bytes }
        return output
    }

    private static func validate(_ tensor: SafeTensor) throws(ArchiveError) {
        guard !tensor.name.isEmpty else { throw .invalidTensor(name: tensor.name, reason: "the name is empty") }
        guard !tensor.name.hasPrefix(metadataKey) else {
            throw .invalidTensor(name: tensor.name, reason: "names starting with \(metadataKey) are reserved")
        }
        guard let count = tensor.elementCount else {
            throw .invalidTensor(name: tensor.name, reason: "shape \(tensor.shape) has a negative dimension or overflows")
        }
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: tensor.dtype.byteCount)
        guard !overflow, byteCount == tensor.bytes.count else {
            throw .invalidTensor(
                name: tensor.name,
                reason: "shape \(tensor.shape) of \(tensor.dtype.rawValue) needs \(count) elements, "
                    + "but there are \(tensor.bytes.count) bytes"
            )
        }
    }

    // MARK: - Decoding

    /// Decodes a safetensors file, checking the header length against the file, the JSON,
    /// every entry's dtype, shape and offsets, and that the tensors tile the data buffer
    /// exactly (no overlap, no hole, nothing left over). Throws `corruptSafetensors`.
    public init(decoding bytes: [UInt8]) throws(ArchiveError) {
        guard bytes.count >= 8 else {
            throw .corruptSafetensors(reason: "file is \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        let headerLength = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard headerLength <= UInt64(Self.maxHeaderByteCount) else {
            throw .corruptSafetensors(reason: "header length \(headerLength) exceeds the \(Self.maxHeaderByteCount)-byte limit")
        }
        let dataStart = 8 + Int(headerLength)
        guard dataStart <= bytes.count else {
            throw .corruptSafetensors(reason: "header length \(headerLength) runs past the end of the \(bytes.count)-byte file")
        }
        guard case .object(let members) = try JSONParser.parse(bytes[8..<dataStart]) else {
            throw .corruptSafetensors(reason: "header is not a JSON object")
        }
        let bufferCount = bytes.count - dataStart
        var metadata: [String: String] = [:]
        var layout: [(entry: Entry, order: Int)] = []
        for (order, member) in members.enumerated() {
            if member.key == Self.metadataKey {
                metadata = try Self.metadata(from: member.value)
            } else {
                layout.append((try Entry(name: member.key, json: member.value, bufferCount: bufferCount), order))
            }
        }
        // Ties (zero-byte tensors) keep header order, which is the writer's order.
        layout.sort { ($0.entry.begin, $0.entry.end, $0.order) < ($1.entry.begin, $1.entry.end, $1.order) }
        var cursor = 0
        for (entry, _) in layout {
            guard entry.begin == cursor else {
                let problem = entry.begin < cursor ? "overlaps the tensor before it" : "leaves a hole before it"
                throw .corruptSafetensors(reason: "tensor '\(entry.name)' at byte \(entry.begin) \(problem) (expected \(cursor))")
            }
            cursor = entry.end
        }
        guard cursor == bufferCount else {
            throw .corruptSafetensors(reason: "\(bufferCount - cursor) bytes at the end of the data buffer belong to no tensor")
        }
        self.metadata = metadata
        self.tensors = layout.map { entry, _ in
            SafeTensor(
                name: entry.name,
                dtype: entry.dtype,
                shape: entry.shape,
                bytes: Array(bytes[(dataStart + entry.begin)..<(dataStart + entry.end)])
            )
        }
    }

    private static func metadata(from json: JSONValue) throws(ArchiveError) -> [String: String] {
        guard case .object(let members) = json else {
            throw .corruptSafetensors(reason: "\(metadataKey) is not a JSON object")
        }
        var metadata: [String: String] = [:]
        for (key, value) in members {
            guard case .string(let text) = value else {
                throw .corruptSafetensors(reason: "\(metadataKey) value for \(JSONValue.quoted(key)) is not a string")
            }
            metadata[key] = text
        }
        return metadata
    }

    /// One checked header entry: its dtype, shape and byte range in the data buffer.
    private struct Entry {
        let name: String
        let dtype: SafeTensorDType
        let shape: [Int]
        let begin: Int
        let end: Int

        init(name: String, json: JSONValue, bufferCount: Int) throws(ArchiveError) {
            func failure(_ what: String) -> ArchiveError {
                .corruptSafetensors(reason: "tensor \(JSONValue.quoted(name)): \(what)")
            }
            guard !name.isEmpty, !name.hasPrefix(SafetensorsFile.metadataKey) else {
                throw failure("empty or reserved tensor name")
            }
            guard case .object(let members) = json else { throw failure("entry is not a JSON object") }
            let fields = Dictionary(members.map { ($0.key, $0.value) }) { first, _ in first }
            guard case .string(let dtypeText)? = fields["dtype"] else { throw failure("missing or non-string dtype") }
            guard let dtype = SafeTensorDType(rawValue: dtypeText) else { throw failure("unknown dtype '\(dtypeText)'") }
            guard case .array(let dimensions)? = fields["shape"] else { throw failure("missing or non-array shape") }
            let shape = dimensions.compactMap(\.nonNegativeInteger)
            guard shape.count == dimensions.count else {
                throw failure("shape has a dimension that is not a non-negative integer")
            }
            guard case .array(let offsets)? = fields["data_offsets"], offsets.count == 2,
                  let begin = offsets[0].nonNegativeInteger, let end = offsets[1].nonNegativeInteger else {
                throw failure("data_offsets is not a pair of non-negative integers")
            }
            guard begin <= end, end <= bufferCount else {
                throw failure("data_offsets [\(begin), \(end)] lie outside the \(bufferCount)-byte data buffer")
            }
            guard let count = SafeTensor.elementCount(of: shape) else { throw failure("shape \(shape) overflows") }
            let (byteCount, overflow) = count.multipliedReportingOverflow(by: dtype.byteCount)
            guard !overflow, byteCount == end - begin else {
                throw failure(
                    "shape \(shape) of \(dtype.rawValue) needs \(count) elements, but data_offsets span \(end - begin) bytes"
                )
            }
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.begin = begin
            self.end = end
        }
    }
}

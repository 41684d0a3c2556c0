// The one rule for which tar entry names are safe, shared by the writer, reader and extractor.

/// Checks and normalises tar entry names so that no entry can land outside an extraction root.
///
/// A safe name is relative (no leading `/`), has no `..` component and no NUL byte. Empty and
/// `.` components are dropped, so `./a//b/` becomes `a/b`.
enum TarPath {
    /// The components of `raw` after dropping empty and `.` ones; empty for `.` or `./`.
    /// Throws `badEntryName` for an empty, absolute, `..`-containing or NUL-containing name.
    static func components(of raw: String) throws(ArchiveError) -> [Substring] {
        guard !raw.isEmpty, !raw.hasPrefix("/"), !raw.utf8.contains(0) else {
            throw .badEntryName(raw)
        }
        let parts = raw.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        guard !parts.contains("..") else { throw .badEntryName(raw) }
        return parts
    }

    /// `raw` normalised to `a/b/c`; throws `badEntryName` when it is unsafe or names the root.
    static func normalized(_ raw: String) throws(ArchiveError) -> String {
        let parts = try components(of: raw)
        guard !parts.isEmpty else { throw .badEntryName(raw) }
        return parts.joined(separator: "/")
    }
}

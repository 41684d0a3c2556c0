// What a path names on disk (following symbolic links), for walking channel folders.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The kind of file a path names, with symbolic links followed.
enum FileKind: Equatable {
    case missing
    case regular
    /// A folder, with its identity (device, inode) so a walk can notice link cycles.
    case folder(device: UInt64, inode: UInt64)
    /// A device, socket, pipe or anything else that holds no data set.
    case other

    /// The kind of `path`.
    static func of(_ path: String) -> FileKind {
        var info = stat()
        guard stat(path, &info) == 0 else { return .missing }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return .regular
        case S_IFDIR:
            return .folder(device: UInt64(truncatingIfNeeded: info.st_dev), inode: UInt64(truncatingIfNeeded: info.st_ino))
        default: return .other
        }
    }
}

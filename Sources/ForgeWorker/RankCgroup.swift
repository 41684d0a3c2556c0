// A cgroup (v2) of a rank's own, where the host lets Forge make one: the last word on what a
// rank leaves running. A process can leave its rank's process group (setsid) and clear its
// environment (and with it FORGE_RANK_TAG), but it cannot leave its cgroup without write access
// to another, so `cgroup.kill` ends everything the rank started, as a container's end does.
// The rank enters the cgroup before it runs anything: it is started as a shell that moves itself
// in and then execs the rank's program (same pid), so not even a process forked in the rank's
// first microsecond is outside. Hosts without a writable cgroup2 hierarchy (not root, a
// read-only /sys/fs/cgroup) get no cgroup; Leftovers' process groups and tags still apply.
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One rank's cgroup: a child of the cgroup this process runs in.
///
/// Concurrency: a value (a path); its methods touch only the cgroup's files.
public struct RankCgroup: Sendable {
    /// The cgroup's directory in the cgroup2 hierarchy.
    public let path: String

    /// The cgroup2 directory of this process's own cgroup, when cgroup2 is mounted (its mount
    /// point from /proc/self/mountinfo, the path from /proc/self/cgroup's "0::" line).
    static func ownCgroup() -> String? {
        guard let mountinfo = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8),
              let membership = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        // "id parent major:minor root mountpoint options … - fstype source superoptions"
        let mount = mountinfo.split(separator: "\n").lazy.compactMap { line -> Substring? in
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2, halves[1].hasPrefix("cgroup2 ") else { return nil }
            let fields = halves[0].split(separator: " ")
            return fields.count > 4 && fields[3] == "/" ? fields[4] : nil
        }.first
        guard let mount, let line = membership.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else { return nil }
        let own = line.dropFirst(3)
        return own == "/" ? String(mount) : String(mount) + own
    }

    /// Makes a cgroup for one rank under this process's own, named `forge-<this pid>-` and then
    /// `name` (letters, digits, `.`, `-` and `_` kept, the rest `_`); nil where the host does not
    /// let this process make one (no cgroup2, no permission) or one of that name exists.
    public static func make(named name: String) -> RankCgroup? {
        guard let parent = usableParent else { return nil }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
        let safe = String(name.map { allowed.contains($0) ? $0 : "_" }.prefix(200))
        let path = "\(parent)/\(ownedName(safe))"
        sweep(parent)
        guard mkdir(path, 0o755) == 0 else { return nil }
        // A kernel before 5.14 has no cgroup.kill: `destroy` then signals each member.
        return RankCgroup(path: path)
    }

    /// Whether this host lets this process give its ranks cgroups (`usableParent`).
    public static var available: Bool { usableParent != nil }

    /// This process's own cgroup, when a process can be made, moved into a cgroup below it and
    /// removed again (tried once, with a shell that moves itself in): mkdir alone may succeed
    /// where the move does not (not root; a cgroup whose controllers forbid members below it).
    static let usableParent: String? = {
        guard let parent = ownCgroup() else { return nil }
        let probe = RankCgroup(path: "\(parent)/\(ownedName("probe-\(UInt32.random(in: 0...UInt32.max))"))")
        guard mkdir(probe.path, 0o755) == 0 else { return nil }
        defer { probe.destroy() }
        let arguments = ["/bin/sh", "-c", #"echo 0 > "$0/cgroup.procs""#, probe.path]
        var pointers = arguments.map { strdup($0) } + [nil]
        defer { for pointer in pointers { free(pointer) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, "/bin/sh", nil, nil, &pointers, environ) == 0 else { return nil }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status == 0 ? parent : nil
    }()

    /// The name of a cgroup this process makes: `forge-<pid>-rest`, so that `sweep` can tell
    /// whose it is.
    static func ownedName(_ rest: String) -> String { "forge-\(getpid())-\(rest)" }

    /// The pid in a name `ownedName` made; nil for any other name.
    static func owner(ofCgroupNamed name: String) -> pid_t? {
        guard name.hasPrefix("forge-") else { return nil }
        let digits = name.dropFirst(6).prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, name.dropFirst(6 + digits.count).first == "-" else { return nil }
        return pid_t(digits)
    }

    /// Removes the empty rank cgroups in `parent` whose maker (the pid in their name) no longer
    /// runs and that were made over a minute ago: those of a worker or launcher killed before it
    /// could remove them. Cgroups named otherwise, another program's, are left alone. (A rank's
    /// cgroup is empty only between its making and the rank's first instruction, and between
    /// the rank's end and `destroy`; the minute covers a maker in another pid namespace.)
    static func sweep(_ parent: String) {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []
        let now = Date()
        for name in entries {
            guard let maker = owner(ofCgroupNamed: name), kill(maker, 0) != 0, errno == ESRCH else { continue }
            let path = "\(parent)/\(name)"
            guard let made = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                  now.timeIntervalSince(made) > 60,
                  (try? String(contentsOfFile: "\(path)/cgroup.events", encoding: .utf8))?.contains("populated 0") == true else { continue }
            _ = rmdir(path)
        }
    }

    /// What to start instead of `executable` `arguments` run with `environment`: a shell that
    /// moves itself into this cgroup and then execs them (the same pid) through `env`, which
    /// takes out the `_` and `SHLVL` the shell adds and puts back the values `environment` had,
    /// so the rank sees `environment` as it is. `executable` must be a path that means the same
    /// in the shell (absolute, not /proc/self/exe) and one `canWrap` accepts; a failed move
    /// leaves the rank where its parent is.
    public func wrap(executable: String, arguments: [String], environment: [String: String]) -> (executable: String, arguments: [String]) {
        let enter = #"{ echo 0 > "$1/cgroup.procs"; } 2>/dev/null || echo "forge: could not enter cgroup $1; what this rank leaves running may outlive it" >&2; "#
        // env reads NAME=VALUE words up to the first that is not one: `canWrap` keeps `=` out of
        // `executable`, so it is the program.
        let restore = ["SHLVL", "_"].compactMap { name in environment[name].map { "\(name)=\($0)" } }
        return (RankCgroup.shell, ["-c", enter + #"shift; exec "$@""#, "forge-rank", path,
                                   RankCgroup.env, "-u", "_", "-u", "SHLVL"] + restore + [executable] + arguments)
    }

    /// Whether a rank running `program` may be started through `wrap`: the file is executable
    /// and execve would run it. Callers ask before making the cgroup. The shell's `exec` differs
    /// from execve on the rest: it turns a missing program into an exit with status 127, and runs
    /// a file the kernel refuses (no ELF header, no `#!` line) as a shell script; started as
    /// they are, both fail to start with the same error they would without a cgroup. A path
    /// with `=` in it would read as an assignment to `env`, and is started unwrapped too.
    public static func canWrap(_ program: String) -> Bool {
        program.hasPrefix("/") && !program.contains("=") && FileManager.default.isExecutableFile(atPath: env)
            && FileManager.default.isExecutableFile(atPath: program) && kernelCouldRun(program)
    }

    /// The `env` that restores the rank's environment after the shell (`wrap`).
    static let env = "/usr/bin/env"

    /// Whether execve would run `path` as it starts: an ELF binary, a `#!` script, or (with any
    /// binfmt_misc handler registered: jar, wine, …) possibly anything; true as well when it
    /// cannot be read (an execute-only file).
    static func kernelCouldRun(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return true }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 4) else { return true }
        return head.starts(with: [0x7F, 0x45, 0x4C, 0x46]) || head.starts(with: [0x23, 0x21]) || binfmtHandlersRegistered
    }

    /// Whether the kernel has binfmt_misc enabled with a handler registered.
    static let binfmtHandlersRegistered: Bool = {
        let root = "/proc/sys/fs/binfmt_misc"
        guard (try? String(contentsOfFile: "\(root)/status", encoding: .utf8))?.hasPrefix("enabled") == true else { return false }
        return ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).contains { $0 != "status" && $0 != "register" }
    }()

    /// bash where there is one: it passes on environment variables whose names are not shell
    /// identifiers (dash drops them).
    static let shell = FileManager.default.isExecutableFile(atPath: "/bin/bash") ? "/bin/bash" : "/bin/sh"

    /// The processes in the cgroup and the cgroups below it now.
    public var members: [pid_t] { RankCgroup.members(of: path) }

    static func members(of path: String) -> [pid_t] {
        let own = ((try? String(contentsOfFile: "\(path)/cgroup.procs", encoding: .utf8)) ?? "")
            .split(separator: "\n").compactMap { pid_t($0) }
        return own + subcgroups(of: path).flatMap { members(of: $0) }
    }

    /// The cgroups directly below `path` (its subdirectories: the rest are control files).
    static func subcgroups(of path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).map { "\(path)/\($0)" }.filter {
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: $0, isDirectory: &isDirectory) && isDirectory.boolValue
        }
    }

    /// Kills every process in the cgroup and below it, waits (up to a second) until none is
    /// left, and removes the cgroups; returns how many processes there were. Only once the rank
    /// itself has ended: the rank is a member too.
    @discardableResult
    public func destroy() -> Int {
        let found = members
        // cgroup.kill (Linux 5.14) takes the whole subtree at once, forks included.
        if !found.isEmpty, (try? "1".write(toFile: "\(path)/cgroup.kill", atomically: false, encoding: .utf8)) == nil {
            for pid in found { kill(pid, SIGKILL) }
        }
        var tries = 0
        while !RankCgroup.remove(path), errno == EBUSY, tries < 100 {
            // A member that forked as it was killed (no cgroup.kill) is signalled too.
            for pid in members { kill(pid, SIGKILL) }
            usleep(10_000)
            tries += 1
        }
        return found.count
    }

    /// Removes the cgroup at `path` and the ones below it (a rank that ran `forge launch` made
    /// its ranks' there), deepest first; false (with errno) when one cannot go yet.
    static func remove(_ path: String) -> Bool {
        for below in subcgroups(of: path) { _ = remove(below) }
        return rmdir(path) == 0
    }
}

/// What a rank's program file is, as execve would see it.
public enum ProgramFile {
    /// Why execve would refuse `path`, in words a user can act on, or nil when it looks runnable
    /// (Foundation's own error for a failed start names no reason).
    public static func refusal(_ path: String) -> String? {
        let files = FileManager.default
        var directory: ObjCBool = false
        if !files.fileExists(atPath: path, isDirectory: &directory) { return "no such file" }
        if directory.boolValue { return "a directory, not a program" }
        if !files.isExecutableFile(atPath: path) { return "not executable (chmod +x it, or name its interpreter first; or its file system is mounted noexec)" }
        if !RankCgroup.kernelCouldRun(path) { return "exec format error: neither an ELF binary nor a script with a #! line" }
        return nil
    }
}

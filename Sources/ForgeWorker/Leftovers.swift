// What a rank leaves running when it ends. Killing its process group ends what stayed in it;
// a program that moved to a session or group of its own (a daemon, `setsid`) still carries the
// FORGE_RANK_TAG its rank was given, and, orphaned, becomes the worker's child (the worker is a
// subreaper), so it is found, killed and reaped, as a container's processes end with it.
// `forge launch` does the same for its ranks.
import Foundation

public enum Leftovers {
    /// The variable each rank (and whatever it starts) carries: the worker's id and the
    /// assignment's, which no other worker on the host (of this cluster or another) shares.
    public static let variable = "FORGE_RANK_TAG"

    public static func tag(worker: String, assignment: String) -> String { "\(worker) \(assignment)" }

    /// Live processes other than this one whose environment carries `tag`.
    public static func processes(tagged tag: String) -> [pid_t] {
        let wanted = Array("\(variable)=\(tag)".utf8)
        let own = getpid()
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard pid != own, let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
            return environment.split(separator: 0).contains { $0.elementsEqual(wanted) }
        }
    }

    /// Kills every process `processes(tagged:)` finds, twice over (one found the first time
    /// may have started another before the signal landed).
    public static func kill(tagged tag: String) -> Int {
        var killed = Set<pid_t>()
        for _ in 0..<2 {
            for pid in processes(tagged: tag) where Foundation.kill(pid, SIGKILL) == 0 { killed.insert(pid) }
        }
        return killed.count
    }

    /// This process's children, from every thread's list (an orphan is handed to one of them);
    /// on a kernel without those lists, from every process's parent in /proc.
    public static func children() -> [pid_t] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        if let first = tasks.first, FileManager.default.fileExists(atPath: "/proc/self/task/\(first)/children") {
            return tasks.flatMap { task -> [pid_t] in
                let list = (try? String(contentsOfFile: "/proc/self/task/\(task)/children", encoding: .utf8)) ?? ""
                return list.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
        }
        let own = getpid()
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            // "pid (comm) state ppid …": the fields after the last ")".
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && pid_t(fields[1]) == own
        }
    }

    /// Reaps the children that are not `known` (processes Foundation started and will reap):
    /// orphans handed to this subreaper. Live ones are left alone (WNOHANG).
    public static func reapAdopted(known: Set<pid_t>) {
        for pid in children() where !known.contains(pid) {
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
        }
    }
}

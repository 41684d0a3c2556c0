// What a rank leaves running when it ends. Killing its process group ends what stayed in it;
// a program that moved to a session or group of its own (a daemon, `setsid`) still carries the
// FORGE_ASSIGNMENT its rank was given, and, orphaned, becomes the worker's child (the worker is
// a subreaper), so it is found, killed and reaped, as a container's processes end with it.
import Foundation

enum Leftovers {
    /// The variable each rank (and whatever it starts) carries: its assignment id.
    static let variable = "FORGE_ASSIGNMENT"

    /// Live processes other than this one whose environment names `assignment`.
    static func processes(of assignment: String) -> [pid_t] {
        let wanted = Array("\(variable)=\(assignment)".utf8)
        let own = getpid()
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { pid_t($0) }.filter { pid in
            guard pid != own, let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
            return environment.split(separator: 0).contains { $0.elementsEqual(wanted) }
        }
    }

    /// Kills every process `processes(of:)` finds, twice over (one found the first time may
    /// have started another before the signal landed).
    static func kill(of assignment: String) -> Int {
        var killed = Set<pid_t>()
        for _ in 0..<2 {
            for pid in processes(of: assignment) where Foundation.kill(pid, SIGKILL) == 0 { killed.insert(pid) }
        }
        return killed.count
    }

    /// This process's children, from every thread's list (an orphan is handed to one of them).
    static func children() -> [pid_t] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.flatMap { task -> [pid_t] in
            let list = (try? String(contentsOfFile: "/proc/self/task/\(task)/children", encoding: .utf8)) ?? ""
            return list.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    /// Reaps the children that are not `known` (processes Foundation started and will reap):
    /// orphans handed to this subreaper. Live ones are left alone (WNOHANG).
    static func reapAdopted(known: Set<pid_t>) {
        for pid in children() where !known.contains(pid) {
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
        }
    }
}

// How a child process ended, read without reaping it: Foundation's `Process` reaps its children
// itself, late (only once every copy of a descriptor it gave the child is closed, which a child
// the process left running can put off indefinitely) and in no particular order. The worker and
// `forge launch` both judge their ranks by this.
import CForgeSystem
import ForgeWire
import Foundation

/// How a child process ended: its exit status, or the signal that killed it.
public struct ProcessEnding: Equatable, Sendable, CustomStringConvertible {
    public var status: Int32
    public var signaled: Bool

    public init(status: Int32, signaled: Bool) {
        self.status = status
        self.signaled = signaled
    }

    /// How `process` ended, or nil while it runs. waitid(WNOWAIT) reads a zombie without
    /// reaping it (Foundation still does that); once Foundation has reaped it, Foundation knows.
    public init?(of process: Process) {
        var status: Int32 = 0, signaled: Int32 = 0
        switch forge_peek_exit(process.processIdentifier, &status, &signaled) {
        case 1: self.init(status: status, signaled: signaled != 0)
        case 0: return nil
        default:
            guard !process.isRunning else { return nil }
            self.init(status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal)
        }
    }

    public var succeeded: Bool { !signaled && status == 0 }
    /// A rank's exit after another rank failed first (RankExit.peerFailedStatus).
    public var peerFailedFirst: Bool { RankExit.peerFailedFirst(status: status, signaled: signaled) }
    public var description: String { RankExit.summary(status: status, signaled: signaled) }
}

// Pipeline schedules as values: each micro-batch forwarded then backwarded once per stage, the
// in-flight bounds of GPipe and 1F1B, and a simulation of P stages exchanging messages that
// shows every schedule runs to the end without deadlock.
import ForgeTraining
import Testing

@Suite struct PipelineScheduleTests {
    static let kinds = PipelineScheduleKind.allCases

    @Test(arguments: kinds)
    func everyMicroBatchForwardsThenBackwardsOncePerStage(kind: PipelineScheduleKind) {
        for stages in 1...4 {
            for microBatches in 1...8 {
                for stage in 0..<stages {
                    let actions = PipelineSchedule(kind: kind, stage: stage, stages: stages, microBatches: microBatches).actions
                    let forwards = actions.compactMap { if case .forward(let m) = $0 { m } else { nil } }
                    let backwards = actions.compactMap { if case .backward(let m) = $0 { m } else { nil } }
                    let where_ = "\(kind) P=\(stages) M=\(microBatches) s=\(stage)"
                    #expect(forwards == Array(0..<microBatches), "\(where_): \(actions)")
                    #expect(backwards == Array(0..<microBatches), "\(where_): \(actions)")
                    for m in 0..<microBatches {
                        let f = actions.firstIndex(of: .forward(m)) ?? .max, b = actions.firstIndex(of: .backward(m)) ?? -1
                        #expect(f < b, "\(where_): micro-batch \(m) backwarded before its forward")
                    }
                }
            }
        }
    }

    @Test func oneForwardOneBackwardBoundsTheStash() {
        for stages in 1...4 {
            for microBatches in 1...8 {
                for stage in 0..<stages {
                    let schedule = PipelineSchedule(kind: .oneForwardOneBackward, stage: stage, stages: stages, microBatches: microBatches)
                    #expect(schedule.maxInFlight <= stages - stage)
                    #expect(schedule.maxInFlight == min(stages - stage, microBatches), "P=\(stages) M=\(microBatches) s=\(stage)")
                }
            }
        }
    }

    @Test func gpipeStashesEveryMicroBatch() {
        for stages in 1...4 {
            for microBatches in 1...8 {
                for stage in 0..<stages {
                    #expect(PipelineSchedule(kind: .gpipe, stage: stage, stages: stages, microBatches: microBatches).maxInFlight == microBatches)
                }
            }
        }
    }

    @Test func oneForwardOneBackwardIsTheStandardOrder() {
        // PipeDream-flush, P = 4, M = 6, stage 1: two warm-up forwards, steady pairs, cool-down.
        let actions = PipelineSchedule(kind: .oneForwardOneBackward, stage: 1, stages: 4, microBatches: 6).actions
        #expect(actions.map(\.description).joined(separator: " ") == "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5")
        let last = PipelineSchedule(kind: .oneForwardOneBackward, stage: 3, stages: 4, microBatches: 3).actions
        #expect(last.map(\.description).joined(separator: " ") == "F0 B0 F1 B1 F2 B2")
    }

    @Test(arguments: kinds)
    func schedulesAreDeadlockFree(kind: PipelineScheduleKind) {
        for stages in 1...4 {
            for microBatches in 1...8 {
                let (finished, ticks) = Self.simulate(kind: kind, stages: stages, microBatches: microBatches)
                #expect(finished, "\(kind) P=\(stages) M=\(microBatches) deadlocked")
                // Unit-time actions: no schedule needs more than 2(M + P − 1) ticks.
                #expect(ticks <= 2 * (microBatches + stages - 1), "\(kind) P=\(stages) M=\(microBatches): \(ticks) ticks")
            }
        }
    }

    @Test func idealBubble() {
        #expect(PipelineSchedule.idealBubbleFraction(stages: 4, microBatches: 8) == 3.0 / 11.0)
        #expect(PipelineSchedule.idealBubbleFraction(stages: 1, microBatches: 8) == 0)
    }

    /// Runs every stage's actions in lock-step ticks of unit time. Sends never wait (as the
    /// transports queue); a forward on stage s > 0 waits for stage s − 1's forward of the same
    /// micro-batch in an earlier tick, a backward on stage s < P − 1 for stage s + 1's backward.
    /// Returns whether every stage finished, and after how many ticks.
    static func simulate(kind: PipelineScheduleKind, stages: Int, microBatches: Int) -> (finished: Bool, ticks: Int) {
        let schedules = (0..<stages).map { PipelineSchedule(kind: kind, stage: $0, stages: stages, microBatches: microBatches).actions }
        var next = Array(repeating: 0, count: stages)
        var done = Set<[Int]>()   // [stage, 0 forward / 1 backward, m]
        var ticks = 0
        while next.enumerated().contains(where: { $0.element < schedules[$0.offset].count }) {
            var finishedThisTick = [[Int]]()
            for stage in 0..<stages where next[stage] < schedules[stage].count {
                let ready: Bool, key: [Int]
                switch schedules[stage][next[stage]] {
                case .forward(let m):
                    ready = stage == 0 || done.contains([stage - 1, 0, m])
                    key = [stage, 0, m]
                case .backward(let m):
                    ready = stage == stages - 1 || done.contains([stage + 1, 1, m])
                    key = [stage, 1, m]
                }
                if ready { finishedThisTick.append(key) }
            }
            guard !finishedThisTick.isEmpty else { return (false, ticks) }
            for key in finishedThisTick {
                done.insert(key)
                next[key[0]] += 1
            }
            ticks += 1
        }
        return (true, ticks)
    }
}

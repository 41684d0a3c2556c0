// Pipeline schedules as values: the ordered forwards and backwards one stage runs in a step,
// testable without sockets.

/// Which pipeline schedule a stage follows (`--schedule`, `forge_pipeline_schedule`).
public enum PipelineScheduleKind: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// GPipe: every micro-batch forward, then every micro-batch backward. A stage stashes the
    /// activations of all M micro-batches.
    case gpipe
    /// 1F1B (PipeDream-flush, non-interleaved): a warm-up of forwards, then one forward and one
    /// backward alternating, then the remaining backwards. Stage s stashes at most P − s
    /// micro-batches.
    case oneForwardOneBackward = "1f1b"

    public var description: String { rawValue }
}

/// One unit of a stage's work in a step.
public enum PipelineAction: Sendable, Hashable, CustomStringConvertible {
    /// Forward of micro-batch m (receive its activations unless first, send them on unless last).
    case forward(Int)
    /// Backward of micro-batch m (receive its output gradient unless last, send the input
    /// gradient back unless first).
    case backward(Int)

    public var description: String {
        switch self {
        case .forward(let m): return "F\(m)"
        case .backward(let m): return "B\(m)"
        }
    }
}

/// The actions stage `stage` of `stages` runs, in order, for one step of `microBatches`.
///
/// Both schedules forward and backward micro-batches in increasing order on every stage, so the
/// messages between two neighbours travel in the order they are awaited, and any transport
/// that keeps per-peer order (every `CollectiveTransport` does) needs no reordering.
///
/// With P stages, M micro-batches and forward/backward times f and b the same on every stage,
/// both schedules idle for (P − 1)(f + b) of a step lasting (M + P − 1)(f + b): the bubble
/// fraction (P − 1)/(M + P − 1). 1F1B does not shrink the bubble; it bounds the stash at P − s
/// micro-batches instead of M (docs/pipeline.md).
///
/// Concurrency: a Sendable value.
public struct PipelineSchedule: Sendable, Hashable {
    public let kind: PipelineScheduleKind
    public let stage: Int
    public let stages: Int
    public let microBatches: Int
    /// The stage's actions in order: each micro-batch forwarded once, then backwarded once.
    public let actions: [PipelineAction]

    public init(kind: PipelineScheduleKind, stage: Int, stages: Int, microBatches: Int) {
        precondition(stages >= 1 && stage >= 0 && stage < stages, "stage \(stage) outside 0..<\(stages)")
        precondition(microBatches >= 1, "a step needs at least one micro-batch")
        self.kind = kind
        self.stage = stage
        self.stages = stages
        self.microBatches = microBatches
        switch kind {
        case .gpipe:
            actions = (0..<microBatches).map(PipelineAction.forward) + (0..<microBatches).map(PipelineAction.backward)
        case .oneForwardOneBackward:
            // Stage s must forward P − s − 1 micro-batches before the first gradient can have
            // come back from the last stage; after that each backward frees a slot the next
            // forward takes.
            let warmUp = min(stages - stage - 1, microBatches)
            var order = (0..<warmUp).map(PipelineAction.forward)
            for m in 0..<(microBatches - warmUp) {
                order.append(.forward(warmUp + m))
                order.append(.backward(m))
            }
            order += (microBatches - warmUp..<microBatches).map(PipelineAction.backward)
            actions = order
        }
    }

    /// The most micro-batches forwarded but not yet backwarded at any point: the activation
    /// slots this stage needs (M for GPipe, min(P − s, M) for 1F1B).
    public var maxInFlight: Int {
        var live = 0, peak = 0
        for action in actions {
            switch action {
            case .forward: live += 1
            case .backward: live -= 1
            }
            peak = max(peak, live)
        }
        return peak
    }

    /// The theoretical bubble fraction (P − 1)/(M + P − 1) of either schedule.
    public static func idealBubbleFraction(stages: Int, microBatches: Int) -> Double {
        Double(stages - 1) / Double(microBatches + stages - 1)
    }
}

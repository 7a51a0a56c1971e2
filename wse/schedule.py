"""The 1F1B pipeline schedule, simulated op by op (for the timeline picture and to check the step-time formula).

Stage s of S runs min(S - s - 1, M) warm-up forwards, then alternates one forward and one backward, then drains
its backwards. A forward waits for the previous stage's forward of the same microbatch, a backward for the next
stage's backward (the last stage's for its own forward). Every start time is a max of sums of durations, so the
makespan never decreases when any duration grows; with all stages equal it is exactly (M + S - 1) * (f + b), the
formula the planner uses with the slowest stage (an upper bound when stages differ).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Op:
    stage: int
    kind: str  # "F" or "B"
    microbatch: int
    start: float
    end: float


def stage_order(stage: int, n_stages: int, microbatches: int) -> list[tuple[str, int]]:
    warmup = min(n_stages - stage - 1, microbatches)
    order = [("F", m) for m in range(warmup)]
    for m in range(microbatches - warmup):
        order += [("F", warmup + m), ("B", m)]
    order += [("B", m) for m in range(microbatches - warmup, microbatches)]
    return order


def one_f_one_b(forward: list[float], backward: list[float], microbatches: int) -> list[Op]:
    """Simulate 1F1B for per-stage forward and backward times; returns every op with its start and end."""
    S = len(forward)
    orders = [stage_order(s, S, microbatches) for s in range(S)]
    done: dict[tuple[str, int, int], float] = {}
    ops: list[Op] = []
    nxt = [0] * S
    free = [0.0] * S
    remaining = sum(len(o) for o in orders)
    while remaining:
        progressed = False
        for s in range(S):
            while nxt[s] < len(orders[s]):
                kind, m = orders[s][nxt[s]]
                if kind == "F":
                    dep = done.get(("F", s - 1, m)) if s > 0 else 0.0
                else:
                    dep = done.get(("B", s + 1, m)) if s < S - 1 else done.get(("F", s, m))
                if dep is None:
                    break
                start = max(free[s], dep)
                end = start + (forward[s] if kind == "F" else backward[s])
                done[(kind, s, m)] = end
                ops.append(Op(s, kind, m, start, end))
                free[s] = end
                nxt[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:  # pragma: no cover - the order above is deadlock-free
            raise RuntimeError("1F1B schedule deadlocked")
    return ops


def makespan(ops: list[Op]) -> float:
    return max(op.end for op in ops)


def lockstep_ticks(n_stages: int, microbatches: int) -> list[list[tuple[str, int] | None]]:
    """The 1F1B schedule as the runtime runs it, in lockstep ticks: ``[tick][stage]`` -> ("F" or "B", microbatch) or
    None (idle), 2 (M + S - 1) ticks. The op order is ``one_f_one_b`` with unit durations; the last stage's forward is
    idle, since its backward recomputes it together with the head and the loss (runtime/execution/pipelined.py)."""
    S, M = n_stages, microbatches
    ticks: list[list[tuple[str, int] | None]] = [[None] * S for _ in range(2 * (M + S - 1))]
    for op in one_f_one_b([1.0] * S, [1.0] * S, M):
        if not (op.kind == "F" and op.stage == S - 1):
            ticks[int(op.start)][op.stage] = (op.kind, op.microbatch)
    return ticks

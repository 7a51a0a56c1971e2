"""Optimal contiguous partition of a layer sequence onto S pipeline stages (one device each).

This is what runtime uses to put layers on the ``stage`` axis of a JAX mesh: minimise the slowest stage (the
pipeline's steady-state period) subject to each stage's memory fitting its device. Dynamic programming over
(stages used, layers covered) is exact, not greedy; tests check it against brute force.
"""

from __future__ import annotations

from typing import Sequence

from wse.errors import PlanError


def partition_layers(
    costs: Sequence[float],
    n_stages: int,
    memory: Sequence[float] | None = None,
    capacity: float | None = None,
) -> list[tuple[int, int]]:
    """Split layers ``0..L-1`` into ``n_stages`` contiguous stages minimising the largest per-stage cost sum.

    Returns ``[(first, last), ...]`` inclusive layer indices, one pair per stage, in order. Every stage is non-empty
    when ``L >= n_stages``; with fewer layers than stages, each layer gets its own stage and the trailing stages are
    empty, written ``(L, L - 1)`` (first > last, like an empty ``range``). With ``memory`` and ``capacity``, no
    stage's memory sum exceeds ``capacity``; if none can, PlanError says which layer or why. Among optimal
    partitions the one found first (earliest cuts) is returned, so the result is deterministic.
    """
    n = len(costs)
    check_inputs(costs, n_stages, memory, capacity)
    if n <= n_stages:
        return [(i, i) for i in range(n)] + [(n, n - 1)] * (n_stages - n)

    cost_prefix = [0.0]
    for c in costs:
        cost_prefix.append(cost_prefix[-1] + c)
    mem_prefix = [0.0]
    for m in memory or [0.0] * n:
        mem_prefix.append(mem_prefix[-1] + m)

    inf = float("inf")
    # best[s][e]: smallest possible slowest-stage cost covering layers 0..e-1 with s non-empty stages
    best = [[inf] * (n + 1) for _ in range(n_stages + 1)]
    cut = [[-1] * (n + 1) for _ in range(n_stages + 1)]
    best[0][0] = 0.0
    for s in range(1, n_stages + 1):
        for e in range(s, n - (n_stages - s) + 1):
            for i in range(s - 1, e):
                if best[s - 1][i] == inf:
                    continue
                if capacity is not None and mem_prefix[e] - mem_prefix[i] > capacity:
                    continue
                value = max(best[s - 1][i], cost_prefix[e] - cost_prefix[i])
                if value < best[s][e]:
                    best[s][e], cut[s][e] = value, i
    if best[n_stages][n] == inf:
        raise PlanError(f"{n} layers needing {mem_prefix[n]:.4g} bytes do not fit in {n_stages} stages of "
                        f"{capacity:.4g} bytes each; use more stages or devices with more memory")
    stages, e = [], n
    for s in range(n_stages, 0, -1):
        i = cut[s][e]
        stages.append((i, e - 1))
        e = i
    return stages[::-1]


def check_inputs(costs: Sequence[float], n_stages: int, memory: Sequence[float] | None, capacity: float | None) -> None:
    """Refuse a partition problem that makes no sense, or a layer that alone overflows a stage."""
    n = len(costs)
    if n_stages < 1:
        raise PlanError(f"need at least one pipeline stage, got {n_stages}")
    if n == 0:
        raise PlanError("nothing to partition: the layer list is empty")
    if any(c < 0 for c in costs):
        raise PlanError("layer costs must not be negative")
    if (memory is None) != (capacity is None):
        raise PlanError("give both memory (per layer) and capacity (per stage), or neither")
    if memory is not None and len(memory) != n:
        raise PlanError(f"memory has {len(memory)} entries for {n} layers")
    if memory is not None:
        for i, m in enumerate(memory):
            if m > capacity:
                raise PlanError(f"layer {i} alone needs {m:.4g} bytes but a stage holds {capacity:.4g}; "
                                "use devices with more memory or split the layer")


def bottleneck(costs: Sequence[float], stages: Sequence[tuple[int, int]]) -> float:
    """The slowest stage's cost sum for a partition (0 for empty stages)."""
    return max((sum(costs[a:b + 1]) for a, b in stages if b >= a), default=0.0)

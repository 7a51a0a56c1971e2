"""Layer-pipelined planning: every layer resident on the grid, contiguous stages on rectangular regions.

Layout. The grid is cut into ``k`` vertical lanes of width ``w``; stages fill lane 0 top to bottom, lane 1 bottom to
top, and so on (a snake), each stage a band of whole rows of one lane. Consecutive stages therefore share an edge:
within a lane along ``w`` links, across lanes because the last stage of a lane owns the rows to the lane's end.

Time of a stage per microbatch (forward + backward), on ``A`` cells:
    c0 + Q + max(P / A, F / sqrt(A))       (P alone when A = 1: a single cell sends nothing to itself)
P is the stage's training FLOPs at the stated efficiency of one cell, F its fabric traffic (each cell of a region
mapped with the matrix's aspect ratio moves ~sqrt(K*N/A) values per token per matmul, compute and routing overlap),
Q the kernel switches (each layer's forward and backward kernels), c0 the hand-off to the next stage over ``w`` links
plus a wavefront's hops across the region. The max() is why pipelining pays on a wafer: a small layer spread over the
whole wafer is fabric-bound, while its own region keeps the cores busy.

Memory of a stage per cell: weights, gradients and optimizer state of its layers, plus the activations of the
microbatches in flight (1F1B: stage s of S holds min(M, S - s)), over its cells; never above the cell's capacity.

Partition. For a given stage count S and lane count k, the smallest bottleneck is found by bisection on it: for a
candidate bottleneck each contiguous group of layers needs a least number of rows (closed form from the two formulas
above), and a DP over (stages placed, layers covered) keeps the earliest snake position, which is exact because an
earlier position can always continue as a later one could. The plan takes the S (and its lane count) with the
smallest step time (M + S - 1) * bottleneck. Tests check the DP against brute force on small grids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wse.assumptions import PlanOptions
from wse.costs import Layer, model_layers, parameters, training_flops_per_token
from wse.errors import PlanError
from wse.grid import Grid, Region
from wse.plans import Plan, ScalingPoint, Stage

REL_TOL = 1e-5


@dataclass(frozen=True)
class RegionCosts:
    """Per-layer costs of one microbatch, forward and backward, in the units of the stage-time formula."""

    compute: np.ndarray  # P: seconds on one cell
    fabric: np.ndarray  # F: seconds x sqrt(cells)
    switch: np.ndarray  # Q: seconds
    static_bytes: np.ndarray  # weights + gradients + optimizer state (int64)
    stash_bytes: np.ndarray  # activations of one microbatch kept for backward (int64)


def region_costs(layers: list[Layer], grid: Grid, options: PlanOptions, tokens: int) -> RegionCosts:
    rate = grid.flops_per_cell * options.compute_efficiency
    link_values_per_s = grid.link_bytes_per_s / options.activation_bytes
    flops = np.array([layer.flops_per_token for layer in layers])
    fabric = np.array([layer.fabric_values_per_token for layer in layers])
    static = [layer.params * options.resident_bytes_per_param +
              layer.replica_params * (options.weight_bytes + options.grad_bytes) for layer in layers]
    stash = [int(math.ceil(layer.stash_values_per_token * tokens * options.activation_bytes)) for layer in layers]
    return RegionCosts(
        compute=3.0 * flops * tokens / rate,
        fabric=3.0 * fabric * tokens / link_values_per_s,
        switch=np.full(len(layers), 2.0 * grid.layer_switch_s),
        static_bytes=np.array(static, dtype=np.int64),
        stash_bytes=np.array(stash, dtype=np.int64),
    )


def stage_time(compute: float, fabric: float, switch: float, c0: float, cells: int) -> float:
    """The stage-time formula of the module docstring (sums over the stage's layers already taken)."""
    if cells == 1:
        return c0 + switch + compute
    return c0 + switch + max(compute / cells, fabric / math.sqrt(cells))


def handoff_time(grid: Grid, lane_width: int, values_per_token: int, tokens: int, options: PlanOptions) -> float:
    """c0: activations out and their gradients back over ``lane_width`` links, plus a wavefront crossing a region."""
    transfer = 2.0 * tokens * values_per_token * options.activation_bytes / (lane_width * grid.link_bytes_per_s)
    return transfer + 2.0 * (grid.rows + lane_width) * grid.hop_latency_s


@dataclass
class Solution:
    bottleneck: float
    bounds: list[tuple[int, int]]  # (first, last) inclusive per stage
    heights: list[int]  # rows allotted per stage
    starts: list[int]  # snake position (lane * rows + offset) of each stage's first row


class RegionSolver:
    """Exact min-bottleneck partition of layers into S stages on a snake of k lanes of width w (see module doc)."""

    def __init__(self, costs: RegionCosts, c0: float, capacity: int, rows: int, lane_width: int, lanes: int,
                 n_stages: int, microbatches: int):
        self.R, self.w, self.k, self.S = rows, lane_width, lanes, n_stages
        self.c0 = c0
        self.big = lanes * rows + 1
        n = len(costs.compute)
        self.n = n

        def group(values, dtype=float):
            prefix = np.concatenate([[0], np.cumsum(values)]).astype(dtype)
            return prefix[None, :] - prefix[:, None]  # [i, e] = sum of layers i..e-1

        self.P, self.F, self.Q = group(costs.compute), group(costs.fabric), group(costs.switch)
        self.valid = np.triu(np.ones((n + 1, n + 1), dtype=bool), k=1)
        W, A = group(costs.static_bytes, np.int64), group(costs.stash_bytes, np.int64)
        per_row = lane_width * capacity
        self.in_flight = [min(microbatches, n_stages - s) for s in range(n_stages)]
        need = W[None] + np.array(self.in_flight, dtype=np.int64)[:, None, None] * A[None]
        self.mem_rows = np.maximum((need + per_row - 1) // per_row, 1)  # [stage, i, e]
        self.cols = np.arange(n + 1)

    def rows_needed(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """Least rows for the time bound, per group [i, e] (big where impossible), and the time slack left."""
        slack = tau - self.c0 - self.Q
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            area = np.maximum(self.P / slack, (self.F / slack) ** 2)
            rows = np.ceil(area / self.w)
        free = (self.P == 0) & (self.F == 0) & (slack >= 0)  # nothing to compute or send: any region will do
        rows = np.where(free, 1, np.where((slack > 0) & np.isfinite(rows), np.maximum(rows, 1), self.big))
        return np.minimum(rows, self.big).astype(np.int64), slack

    def heights(self, tau: float) -> np.ndarray:
        """Rows each group needs as stage s, [s, i, e]: the larger of the time and memory needs (big if impossible)."""
        time_rows, slack = self.rows_needed(tau)
        h = np.maximum(time_rows[None], self.mem_rows)
        if self.w == 1:
            single = ((self.P <= slack) & (slack >= 0))[None] & (self.mem_rows == 1)  # one cell: no fabric term
            h = np.where(single, 1, np.maximum(h, 2))
        return np.where(self.valid[None] & (h <= self.R), h, self.big)

    def run(self, tau: float, keep: bool = False):
        """Whether bottleneck ``tau`` is feasible: DP keeping the earliest snake position per (stages, layers)."""
        H_all = self.heights(tau)
        R, big, limit = self.R, self.big, self.k * self.R
        f = np.full(self.n + 1, big, dtype=np.int64)
        f[0] = 0
        trace = []
        for s in range(self.S):
            rows = np.flatnonzero(f < big)  # only reachable (stages, layers) states extend
            if rows.size == 0:
                return (False, trace) if keep else False
            pos = f[rows]
            used = pos % R
            H = H_all[s][rows]
            end = np.where(used[:, None] + H <= R, pos[:, None], (pos - used + R)[:, None]) + H
            end[end > limit] = big
            arg = end.argmin(axis=0)
            f = end[arg, self.cols]
            if keep:
                trace.append((rows[arg], H_all[s]))
        ok = f[self.n] <= limit
        return (ok, trace) if keep else ok

    def lower_bound(self) -> float:
        """A bottleneck no partition can beat: the averages of switch, compute and fabric over S stages on all lanes."""
        cells = self.R * self.w * self.k
        # sum over stages of F_s / sqrt(A_s) <= S * bottleneck and sum sqrt(A_s) <= sqrt(S * cells); not with w = 1,
        # where a one-cell stage has no fabric term at all
        fabric = float(self.F[0, -1]) / math.sqrt(self.S * cells) if self.w > 1 else 0.0
        return self.c0 + max(float(np.max(np.diag(self.Q, 1))), float(self.Q[0, -1]) / self.S,
                             float(self.P[0, -1]) / cells, fabric)

    def solve(self) -> Solution | None:
        """Smallest feasible bottleneck (to REL_TOL) and its partition, or None if memory rules S stages out.

        Bisection on the bottleneck, except that a feasible probe moves the upper end down to the bottleneck its
        partition actually achieves (never above the probe), which usually lands on the optimum in a few steps.
        """
        upper = (self.c0 + float(self.Q[0, -1] + self.P[0, -1] + self.F[0, -1])) * (1 + 1e-6) + 1e-300
        best = self._attempt(upper)
        if best is None:
            return None
        lower = self.lower_bound()
        if lower <= 0:  # zero-cost layers: no positive bound to bisect from
            lower = best.bottleneck * 1e-12
            if lower <= 0:  # the best found is (denormally close to) zero: nothing can beat it meaningfully
                return best
        for factor in (1.02, 1.1):  # well-balanced plans land just above the bound: try there first
            if lower * factor < best.bottleneck:
                found = self._attempt(lower * factor)
                if found is None:
                    lower = lower * factor
                else:
                    best = found
                    break
        for _ in range(200):  # geometric bisection: ~30 rounds even from a 1e300 ratio; the cap is a guard
            if best.bottleneck <= lower * (1 + REL_TOL):
                break
            mid = lower * math.sqrt(best.bottleneck / lower)  # geometric mean without underflow
            found = self._attempt(mid)
            if found is None:
                lower = mid
            else:
                best = found
        return best

    def _attempt(self, tau: float) -> Solution | None:
        ok, trace = self.run(tau, keep=True)
        if not ok:
            return None
        bounds, heights, e = [], [], self.n
        for s in range(self.S - 1, -1, -1):
            arg, H = trace[s]
            i = int(arg[e])
            bounds.append((i, e - 1))
            heights.append(int(H[i, e]))
            e = i
        bounds, heights = bounds[::-1], heights[::-1]
        starts, pos = [], 0
        for h in heights:  # replay the placement rule to get each stage's start
            start = pos if pos % self.R + h <= self.R else (pos // self.R + 1) * self.R
            starts.append(start)
            pos = start + h
        actual = max(stage_time(*self.group_costs(a, b), self.c0, h * self.w) for (a, b), h in zip(bounds, heights))
        return Solution(min(actual, tau), bounds, heights, starts)

    def group_costs(self, first: int, last: int) -> tuple[float, float, float]:
        return float(self.P[first, last + 1]), float(self.F[first, last + 1]), float(self.Q[first, last + 1])


def snake_regions(starts: list[int], heights: list[int], rows: int, lane_width: int) -> list[Region]:
    """Rectangles for the stages: lane = start // rows, even lanes run down, odd lanes up; the last stage of a lane
    (but not of the plan) extends to the lane's end so that the next lane's first stage touches it."""
    regions = []
    for s, (start, h) in enumerate(zip(starts, heights)):
        lane, offset = divmod(start, rows)
        if s + 1 < len(starts) and starts[s + 1] // rows != lane:
            h = rows - offset
        row = offset if lane % 2 == 0 else rows - offset - h
        regions.append(Region(row=row, col=lane * lane_width, rows=h, cols=lane_width))
    return regions


def stage_counts(n_layers: int, cells: int) -> list[int]:
    """Candidate stage counts: a geometric ladder up to one layer per stage (the step time is flat near its optimum)."""
    ladder = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]
    top = min(n_layers, cells)
    return sorted({s for s in ladder if s <= top} | {top})


def lane_count(n_stages: int, rows: int, cols: int) -> int:
    """Lanes that make an average region about square: k lanes of S/k stages, each (rows*k/S) x (cols/k)."""
    k = round(math.sqrt(n_stages * cols / rows)) if n_stages > 1 else 1
    return max(1, min(k, n_stages, cols))


def static_memory_error(model: str, layers, costs: RegionCosts, grid: Grid, system_name: str) -> PlanError:
    static = int(costs.static_bytes.sum())
    stash = int(costs.stash_bytes.sum())
    need = static + stash
    have = grid.memory_bytes
    return PlanError(
        f"{model} needs {need / 1e9:.1f} GB to run layer-pipelined ({static / 1e9:.1f} GB of weights, gradients and "
        f"optimizer state + {stash / 1e9:.2f} GB of activations for one microbatch) but {system_name} holds "
        f"{have / 1e9:.1f} GB; use --mode streaming",
        needed_bytes=need, available_bytes=have,
    )


def best_partition(costs: RegionCosts, grid: Grid, d_model: int, tokens: int, options: PlanOptions, M: int,
                   n_layers: int) -> tuple | None:
    """The fastest (step, S, k, w, c0, solver, solution, stage times) over the candidate stage counts, or None when
    memory rules every count out. Candidates are tried in order of their lower bound, so the search stops early."""
    candidates = []
    for S in stage_counts(n_layers, grid.cells):
        k = lane_count(S, grid.rows, grid.cols)
        w = grid.cols // k
        c0 = handoff_time(grid, w, d_model, tokens, options)
        solver = RegionSolver(costs, c0, grid.memory_bytes_per_cell, grid.rows, w, k, S, M)
        candidates.append(((M + S - 1) * solver.lower_bound(), S, k, w, c0, solver))
    best = None
    for bound, S, k, w, c0, solver in sorted(candidates, key=lambda c: (c[0], c[1])):
        if best is not None and bound >= best[0]:
            break  # candidates are in order of their lower bound: none of the rest can beat the best so far
        sol = solver.solve()
        if sol is None:
            continue
        times = [stage_time(*solver.group_costs(a, b), c0, h * w) for (a, b), h in zip(sol.bounds, sol.heights)]
        step = (M + S - 1) * max(times)
        if best is None or (step, S) < (best[0], best[1]):
            best = (step, S, k, w, c0, solver, sol, times)
    return best


def build_stages(layers, costs: RegionCosts, solver: RegionSolver, sol: Solution, times: list[float], rows: int,
                 lane_width: int) -> tuple[list[Stage], int]:
    """The plan's stages on their snake regions, and the activation bytes they hold in all."""
    regions = snake_regions(sol.starts, sol.heights, rows, lane_width)
    stages, activations = [], 0
    for s, ((a, b), h, region, t) in enumerate(zip(sol.bounds, sol.heights, regions, times)):
        in_flight = solver.in_flight[s]
        stash = int(costs.stash_bytes[a:b + 1].sum()) * in_flight
        activations += stash
        mem = (int(costs.static_bytes[a:b + 1].sum()) + stash) / (h * lane_width)
        stages.append(Stage(layers=(a, b), names=(layers[a].name, layers[b].name), region=region,
                            active_cells=h * lane_width, memory_bytes_per_core=mem, time_s=t, in_flight=in_flight))
    return stages, activations


def pipelined_memory(layers, stages: list[Stage], activations: int, grid: Grid, options: PlanOptions) -> dict:
    """The memory summary of a pipelined plan (bytes; per core where it says so)."""
    weights = sum(l.weight_params for l in layers)
    return {
        "capacity_bytes_per_core": grid.memory_bytes_per_cell,
        "peak_bytes_per_core": max(st.memory_bytes_per_core for st in stages),
        "weights_bytes": weights * options.weight_bytes,
        "gradients_bytes": weights * options.grad_bytes,
        "optimizer_bytes": parameters(layers) * options.optimizer_bytes,
        "activations_bytes": activations,
        "total_bytes": grid.memory_bytes,
    }


def plan_assumptions(grid: Grid, options: PlanOptions, chip_assumptions: dict | None) -> dict:
    """The unpublished figures a pipelined plan used: the chip's, the planner's, and a device grid's as given."""
    assumptions = dict(chip_assumptions or {})
    assumptions.update(options.assumptions("pipelined"))
    if grid.kind == "devices":
        assumptions.update({f"grid.{name}": {"value": getattr(grid, name), "reason": "device grid as given by the caller"}
                            for name in ("flops_per_cell", "memory_bytes_per_cell", "link_bytes_per_s",
                                         "hop_latency_s", "layer_switch_s")})
    return assumptions


def plan_pipelined(
    shape,
    grid: Grid,
    *,
    batch_size: int,
    seq_len: int,
    options: PlanOptions | None = None,
    model_name: str | None = None,
    system_name: str | None = None,
    chip_assumptions: dict | None = None,
) -> Plan:
    """The best layer-pipelined plan of a model on one grid (a wafer, or a device mesh), or PlanError if none fits."""
    options = options or PlanOptions()
    model = model_name or getattr(shape, "name", "model")
    system_name = system_name or grid.name
    if batch_size < 1:
        raise PlanError(f"batch size must be at least 1 sequence, got {batch_size}")
    layers = model_layers(shape, seq_len, attention_probs_stashed=options.attention_probs_stashed)
    micro = min(options.microbatch_seqs, batch_size)
    tokens = micro * seq_len
    M = math.ceil(batch_size / micro)
    costs = region_costs(layers, grid, options, tokens)
    if int(costs.static_bytes.sum() + costs.stash_bytes.sum()) > grid.memory_bytes:
        raise static_memory_error(model, layers, costs, grid, system_name)

    best = best_partition(costs, grid, shape.d_model, tokens, options, M, len(layers))
    if best is None:
        raise static_memory_error(model, layers, costs, grid, system_name)
    step, S, k, w, c0, solver, sol, times = best

    stages, activations = build_stages(layers, costs, solver, sol, times, grid.rows, w)
    n_params = parameters(layers)
    train_tokens = 20 * n_params
    tokens_per_step = batch_size * seq_len
    tokens_per_s = tokens_per_step / step
    model_flops = training_flops_per_token(layers) * tokens_per_step
    assumptions = plan_assumptions(grid, options, chip_assumptions)
    return Plan(
        model=model, system=system_name, systems=1, mode="pipelined", fits=True, grid=grid.to_dict(),
        batch_size=batch_size, seq_len=seq_len, step_time_s=step, tokens_per_s=tokens_per_s,
        utilization=model_flops / (step * grid.peak_flops), time_to_train_s=train_tokens / tokens_per_s,
        memory=pipelined_memory(layers, stages, activations, grid, options),
        stages=stages,
        layers=[{"name": l.name, "stage": next(s for s, st in enumerate(stages) if st.layers[0] <= i <= st.layers[1]),
                 "params": l.params, "forward_flops_per_token": l.flops_per_token} for i, l in enumerate(layers)],
        scaling=[ScalingPoint(systems=1, systems_used=1, tokens_per_s=tokens_per_s, efficiency=1.0)],
        assumptions=assumptions,
        details={
            "n_stages": S, "lanes": k, "lane_width": w, "microbatches": M, "microbatch_seqs": micro,
            "bottleneck_s": max(times), "handoff_s": c0, "bubble_fraction": (S - 1) / (M + S - 1),
            "parameters": n_params, "train_tokens": train_tokens, "peak_flops": grid.peak_flops,
            "model_flops_per_step": model_flops,
            "forward_fraction": 1.0 / 3.0,
        },
    )

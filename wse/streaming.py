"""Weight-streaming planning: one layer at a time on the whole wafer, weights streamed from MemoryX.

Per micro-batch of ``x`` tokens on one system, each layer's forward takes max(x * t_f, w_in) and its backward
max(x * t_b, w_in, g_out): t_f is the layer's time per token on the full grid (compute at the stated efficiency, or
the fabric when that is slower), w_in streams its 16-bit weights in over the system's stream bandwidth while the
previous layer computes (prefetch), g_out streams its gradients back (the other direction of the full-duplex links),
plus a kernel switch per layer per pass. The wafer keeps the activations of the micro-batch (all layers' stashes, or
with recomputation only each layer's input plus one layer's internals), the current and next layer's weights and
the current gradient; the per-system batch is split into the fewest micro-batches that fit.

Across N systems (pure data parallelism through SwarmX), each system takes ceil(B / N) sequences; the weight
broadcast and the gradient reduction run at line rate through the tree, so they cost bandwidth once and latency per
tree level: a step pays the tree's latency down and up once (the embedding's update is on the critical path:
its gradient arrives last and the next step needs it first), plus the optimizer's tail in MemoryX.

A data-parallel job never has to use all its systems: the plan for N systems uses the n <= N that gives the most
tokens/s and reports it (``systems_used``); with a fixed global batch, extra systems stop helping once every layer
is streaming-bound, and would only add tree latency.
"""

from __future__ import annotations

import math

import numpy as np

from wse.costs import model_layers, parameters, training_flops_per_token
from wse.errors import PlanError
from wse.hardware import System, unpublished
from wse.options import PlanOptions
from wse.result import LayerTiming, Plan, ScalingPoint

SCALING_SYSTEMS = (1, 2, 4, 8, 16)


class StreamingModel:
    """The per-layer timing and memory arrays of one (model, system, seq_len, options)."""

    def __init__(self, shape, system: System, seq_len: int, options: PlanOptions):
        self.layers = model_layers(shape, seq_len, attention_probs_stashed=options.attention_probs_stashed)
        self.system, self.options, self.seq_len = system, options, seq_len
        grid = system.grid()
        self.grid = grid
        self.bandwidth = system.stream_bandwidth_bytes_per_s()
        rate = grid.flops_per_cell * options.compute_efficiency
        link_values = grid.link_bytes_per_s / options.activation_bytes
        L = self.layers
        compute = np.array([l.flops_per_token for l in L]) / (grid.cells * rate)
        fabric = np.array([l.fabric_values_per_token for l in L]) / (math.sqrt(grid.cells) * link_values)
        self.per_token_fwd = np.maximum(compute, fabric)
        self.fabric_bound = fabric > compute
        self.recomputable = np.array([l.recomputable for l in L])
        weights = np.array([l.weight_params for l in L], dtype=float)
        self.stream_in = weights * options.weight_bytes / self.bandwidth
        self.stream_out = weights * options.grad_bytes / self.bandwidth
        self.switch = grid.layer_switch_s
        self.parameters = parameters(L)
        # wafer memory: two layers of weights (current + prefetched), one layer of gradients, then activations
        biggest = max(l.weight_params for l in L)
        self.buffer_bytes = 2 * biggest * options.weight_bytes + biggest * options.grad_bytes
        act = options.activation_bytes * seq_len
        stash = [l.stash_values_per_token for l in L]
        kept = [l.input_values_per_token if l.recomputable else l.stash_values_per_token for l in L]
        working = max((l.stash_values_per_token for l in L if l.recomputable), default=0.0)
        self.seq_bytes = {False: sum(stash) * act, True: (sum(kept) + working) * act}
        self.layer_seq_bytes = {False: np.array(stash) * act, True: np.array(kept) * act}
        self.weight_bytes = weights * options.weight_bytes
        free = grid.memory_bytes - self.buffer_bytes
        self.max_seqs = {rc: int(free // self.seq_bytes[rc]) if free > 0 else 0 for rc in (False, True)}
        self._cache: dict = {}

    def recompute_choices(self) -> list[bool]:
        return {"never": [False], "always": [True], "auto": [False, True]}[self.options.recompute]

    def passes(self, tokens: float, recompute: bool) -> tuple[np.ndarray, np.ndarray]:
        """Per-layer forward and backward times for one micro-batch of ``tokens`` tokens."""
        fwd_work = self.per_token_fwd * tokens
        bwd_work = 2 * fwd_work + (fwd_work * self.recomputable if recompute else 0)
        fwd = np.maximum(fwd_work, self.stream_in) + self.switch
        bwd = np.maximum(bwd_work, np.maximum(self.stream_in, self.stream_out)) + self.switch
        return fwd, bwd

    def micro_time(self, seqs: int, recompute: bool) -> tuple[float, float]:
        """(whole micro-batch time, its backward time) for ``seqs`` sequences."""
        key = (seqs, recompute)
        if key not in self._cache:
            fwd, bwd = self.passes(seqs * self.seq_len, recompute)
            self._cache[key] = (float(fwd.sum() + bwd.sum()), float(bwd.sum()))
        return self._cache[key]

    def step(self, per_system_seqs: int, n_systems: int) -> dict | None:
        """The fastest way to run ``per_system_seqs`` on each of ``n_systems``: recompute or not, fewest micro-batches."""
        mx, swx = self.system.memoryx, self.system.swarmx
        best = None
        for recompute in self.recompute_choices():
            fit = self.max_seqs[recompute]
            if fit < 1:
                continue
            n_micro = math.ceil(per_system_seqs / fit)
            q, r = divmod(per_system_seqs, n_micro)
            big, big_bwd = self.micro_time(q + 1, recompute) if r else (0.0, 0.0)
            small, small_bwd = self.micro_time(q, recompute)
            compute = r * big + (n_micro - r) * small
            last_bwd = small_bwd if n_micro > r else big_bwd
            params = self.parameters
            optimizer_tail = max(self.layers[0].params, params - mx.optimizer_params_per_s * last_bwd, 0) / mx.optimizer_params_per_s
            latency = 2 * swx.latency_s(n_systems)
            total = compute + latency + optimizer_tail
            if best is None or total < best["step_time_s"]:
                best = {"step_time_s": total, "recompute": recompute, "micro_batches": n_micro,
                        "micro_batch_seqs": q + (1 if r else 0), "sizes": (q, r), "optimizer_tail_s": optimizer_tail,
                        "tree_latency_s": latency, "systems_used": n_systems, "per_system_seqs": per_system_seqs}
        return best


def best_over_systems(model: StreamingModel, batch_size: int, n_systems: int) -> dict | None:
    """The fastest step using n <= n_systems systems; only the smallest n of each per-system batch is tried (the
    same per-system work with fewer systems has fewer tree levels)."""
    best, n = None, 1
    while n <= n_systems:
        b = math.ceil(batch_size / n)
        found = model.step(b, n)
        if found is None:
            return None
        if best is None or found["step_time_s"] < best["step_time_s"]:
            best = found
        if b == 1:
            break
        n = math.ceil(batch_size / (b - 1))  # the next n that lowers the per-system batch
    return best


def plan_streaming(
    shape,
    system: System,
    *,
    systems: int = 1,
    batch_size: int,
    seq_len: int,
    options: PlanOptions | None = None,
    model_name: str | None = None,
) -> Plan:
    """The weight-streaming plan of a model on ``systems`` CS-x systems, or PlanError when it cannot run."""
    options = options or PlanOptions()
    model = model_name or getattr(shape, "name", "model")
    if batch_size < 1:
        raise PlanError(f"batch size must be at least 1 sequence, got {batch_size}")
    if systems < 1:
        raise PlanError(f"--systems must be at least 1, got {systems}")
    if system.memoryx is None or system.swarmx is None:
        raise PlanError(f"{system.name} has no MemoryX/SwarmX, so it cannot stream weights; use --system cs2 or cs3 "
                        f"(or --mode pipelined for a model that fits on the wafer)")
    if systems > system.swarmx.max_systems:
        raise PlanError(f"{system.name} clusters reach at most {system.swarmx.max_systems} systems, asked for {systems}")
    sm = StreamingModel(shape, system, seq_len, options)
    n_params = parameters(sm.layers)
    memoryx_bytes = n_params * (options.optimizer_bytes + options.weight_bytes)
    if memoryx_bytes > system.memoryx.capacity_bytes:
        raise PlanError(f"{model} needs {memoryx_bytes / 1e12:.2f} TB of weights and optimizer state in MemoryX but "
                        f"{system.memoryx.name} holds {system.memoryx.capacity_bytes / 1e12:.2f} TB; use a larger MemoryX")
    grid = sm.grid
    if sm.max_seqs[True] < 1 and sm.max_seqs[False] < 1:
        need = sm.buffer_bytes + min(sm.seq_bytes.values())
        raise PlanError(f"{model} at sequence length {seq_len} needs {need / 1e9:.1f} GB on the wafer for one sequence "
                        f"(layer weights + activations) but {system.name} holds {grid.memory_bytes / 1e9:.1f} GB; "
                        "use a shorter --seq-len", needed_bytes=need, available_bytes=grid.memory_bytes)
    if options.recompute == "never" and sm.max_seqs[False] < 1:
        need = sm.buffer_bytes + sm.seq_bytes[False]
        raise PlanError(f"{model} needs {need / 1e9:.1f} GB on the wafer for one sequence without recomputation but "
                        f"{system.name} holds {grid.memory_bytes / 1e9:.1f} GB; allow recompute",
                        needed_bytes=need, available_bytes=grid.memory_bytes)

    tokens_per_step = batch_size * seq_len
    chosen = best_over_systems(sm, batch_size, systems)
    scaling = []
    base = best_over_systems(sm, batch_size, 1)
    base_tps = tokens_per_step / base["step_time_s"]
    for n in sorted(set(SCALING_SYSTEMS) | {systems}):
        if n > system.swarmx.max_systems:
            continue
        found = best_over_systems(sm, batch_size, n)
        tps = tokens_per_step / found["step_time_s"]
        scaling.append(ScalingPoint(systems=n, systems_used=found["systems_used"], tokens_per_s=tps,
                                    efficiency=tps / (n * base_tps)))

    step = chosen["step_time_s"]
    tokens_per_s = tokens_per_step / step
    model_flops = training_flops_per_token(sm.layers) * tokens_per_step
    layers = layer_timings(sm, chosen)
    micro_seqs = chosen["micro_batch_seqs"]
    activations = micro_seqs * sm.seq_bytes[chosen["recompute"]]
    assumptions = unpublished(system)
    assumptions.update(options.assumptions("streaming"))
    hide_tokens = float(sm.stream_in.sum() / sm.per_token_fwd.sum()) if sm.per_token_fwd.sum() > 0 else math.inf
    return Plan(
        model=model, system=system.name, systems=systems, mode="streaming", fits=True, grid=grid.to_dict(),
        batch_size=batch_size, seq_len=seq_len, step_time_s=step, tokens_per_s=tokens_per_s,
        utilization=model_flops / (step * systems * grid.peak_flops), time_to_train_s=20 * n_params / tokens_per_s,
        memory={
            "capacity_bytes_per_core": grid.memory_bytes_per_cell,
            "peak_bytes_per_core": (sm.buffer_bytes + activations) / grid.cells,
            "weights_bytes": sm.buffer_bytes,
            "optimizer_bytes": n_params * options.optimizer_bytes,
            "activations_bytes": activations,
            "memoryx_bytes": memoryx_bytes,
            "total_bytes": grid.memory_bytes,
        },
        layers=layers,
        scaling=scaling,
        assumptions=assumptions,
        details={
            "systems_used": chosen["systems_used"], "per_system_batch": chosen["per_system_seqs"],
            "recompute": chosen["recompute"], "micro_batches": chosen["micro_batches"], "micro_batch_seqs": micro_seqs,
            "max_batch_per_system": {"no_recompute": sm.max_seqs[False], "recompute": sm.max_seqs[True]},
            "stream_bandwidth_bytes_per_s": sm.bandwidth, "tree_levels": system.swarmx.levels(chosen["systems_used"]),
            "tree_latency_s": chosen["tree_latency_s"], "optimizer_tail_s": chosen["optimizer_tail_s"],
            "tokens_to_hide_streaming": hide_tokens,
            "parameters": n_params, "train_tokens": 20 * n_params, "peak_flops": systems * grid.peak_flops,
            "model_flops_per_step": model_flops,
        },
    )


def layer_timings(sm: StreamingModel, chosen: dict) -> list[LayerTiming]:
    """Per-layer totals over the step's micro-batches: compute (or fabric) time versus streaming time."""
    q, r = chosen["sizes"]
    n_micro = chosen["micro_batches"]
    fwd_c = np.zeros(len(sm.layers))
    bwd_c = np.zeros(len(sm.layers))
    for seqs, count in ((q + 1, r), (q, n_micro - r)):
        if count == 0:
            continue
        tokens = seqs * sm.seq_len
        work = sm.per_token_fwd * tokens
        fwd_c += count * work
        bwd_c += count * (2 * work + (work * sm.recomputable if chosen["recompute"] else 0))
    fwd_s = n_micro * sm.stream_in
    bwd_s = n_micro * np.maximum(sm.stream_in, sm.stream_out)
    kept = sm.layer_seq_bytes[chosen["recompute"]] * chosen["micro_batch_seqs"]
    out = []
    for i, layer in enumerate(sm.layers):
        compute, stream = fwd_c[i] + bwd_c[i], fwd_s[i] + bwd_s[i]
        out.append(LayerTiming(
            name=layer.name, compute_time_s=float(compute), stream_time_s=float(stream),
            forward_compute_s=float(fwd_c[i]), backward_compute_s=float(bwd_c[i]),
            forward_stream_s=float(fwd_s[i]), backward_stream_s=float(bwd_s[i]),
            fabric_bound=bool(sm.fabric_bound[i]), bound="compute" if compute >= stream else "stream",
            weight_bytes=float(sm.weight_bytes[i]), activation_bytes=float(kept[i]),
        ))
    return out

"""Weight-streaming planning: one layer at a time on the whole wafer, weights streamed from MemoryX.

Per micro-batch on one system, each layer's forward takes max(compute, weights in, activations offloaded out) and its
backward max(compute, weights in + offloaded activations in, gradients out), plus a kernel switch per layer per pass
(wse.wafer.streaming_model has the time and memory arrays; wse.wafer.kernels the compute time of a matmul's shapes on
the core grid, with the training kernels' own step cost and work fraction, both fitted to measured training runs by
wse.validation.fit). The weights of the next layer are prefetched while a layer runs, in tiles of a matrix, so no layer has
to fit on the wafer whole. The planner picks, for the per-system batch, the fastest of: every layer keeping its
activations or one checkpoint per layer with recomputation, each either on the wafer or offloaded to MemoryX as far as
needed, and the fewest micro-batches that fit.

Across N systems (pure data parallelism through SwarmX), each system takes ceil(B / N) sequences; the weight
broadcast and the gradient reduction run at line rate through the tree, so they cost bandwidth once and latency per
tree level: a step pays the tree's latency down and up once (the embedding's update is on the critical path: its
gradient arrives last and the next step needs it first), plus the optimizer's tail in MemoryX.

A data-parallel job never has to use all its systems: the plan for N systems uses the n <= N that gives the most
tokens/s and reports it (``systems_used``, and ``details.idle_note`` in one line when it leaves systems idle); with a
fixed global batch, extra systems stop helping once every layer is streaming-bound, and would only add tree latency.
Each point of the scaling table (1 to 16 systems, same global batch) says why it is off linear when it is by more
than 2% (``ScalingPoint.note``): a layout one system's memory forced and fewer sequences per system spare, or too
few tokens per system for the kernels and to hide the weight streaming.

Utilisation is reported in this project's FLOP convention (``utilization``) and in the Cerebras-GPT paper's
(``details.utilization_paper``), whose relative per-system figures the paper publishes (wse.costs has both).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from wse.assumptions import PlanOptions
from wse.costs import paper_training_flops_per_token, training_flops_per_token
from wse.errors import PlanError
from wse.plans import LayerTiming, Plan, ScalingPoint
from wse.wafer.hardware import System, format_capacity, memoryx_options, unpublished
from wse.wafer.streaming_model import StreamingModel

SCALING_SYSTEMS = (1, 2, 4, 8, 16)


def step_time(sm: StreamingModel, per_system_seqs: int, n_systems: int, memoryx_free: float) -> dict | None:
    """The fastest way to run ``per_system_seqs`` on each of ``n_systems``: activations kept or checkpointed, on the
    wafer or offloaded (within ``memoryx_free`` bytes of MemoryX), in the fewest micro-batches that fit."""
    mx, swx = sm.system.memoryx, sm.system.swarmx
    choices = {"never": [False], "always": [True], "auto": [False, True]}[sm.options.recompute]
    best = None
    for recompute in choices:
        for offload in (False, True):
            fit = sm.max_seqs["offload" if offload else recompute]
            if fit < 1:
                continue
            n_micro = math.ceil(per_system_seqs / fit)
            q, r = divmod(per_system_seqs, n_micro)
            small = sm.micro_time(q, recompute)
            big = sm.micro_time(q + 1, recompute) if r else (0.0, 0.0, 0.0)
            if small is None or big is None or max(small[2], big[2]) * n_systems > memoryx_free:
                continue
            compute = r * big[0] + (n_micro - r) * small[0]
            last_bwd = small[1] if n_micro > r else big[1]
            rate = mx.optimizer_params_per_s
            optimizer_tail = max(sm.layers[0].params, sm.parameters - rate * last_bwd, 0) / rate
            latency = 2 * swx.latency_s(n_systems)
            total = compute + latency + optimizer_tail
            if best is None or total < best["step_time_s"]:
                best = {"step_time_s": total, "recompute": recompute, "micro_batches": n_micro,
                        "micro_batch_seqs": q + (1 if r else 0), "sizes": (q, r), "optimizer_tail_s": optimizer_tail,
                        "tree_latency_s": latency, "systems_used": n_systems, "per_system_seqs": per_system_seqs,
                        "offloaded_bytes": max(small[2], big[2])}
    return best


def best_over_systems(sm: StreamingModel, batch_size: int, n_systems: int, memoryx_free: float) -> dict | None:
    """The fastest step using n <= n_systems systems; only the smallest n of each per-system batch is tried (the
    same per-system work with fewer systems has fewer tree levels)."""
    best, n = None, 1
    while n <= n_systems:
        b = math.ceil(batch_size / n)
        found = step_time(sm, b, n, memoryx_free)
        if found is not None and (best is None or found["step_time_s"] < best["step_time_s"]):
            best = found
        if b == 1:
            break
        n = math.ceil(batch_size / (b - 1))  # the next n that lowers the per-system batch
    return best


def check_memoryx(model: str, system: System, n_params: int, options: PlanOptions) -> float:
    """MemoryX bytes of weights, optimizer state and gradient accumulator; refused with the smallest sold MemoryX
    that holds them (or the largest, when none does)."""
    need = n_params * options.memoryx_bytes_per_param
    if need <= system.memoryx.capacity_bytes:
        return need
    holds = [c for c in memoryx_options(system) if c >= need]
    advice = f"use --memoryx {format_capacity(holds[0])}" if holds else \
        f"no MemoryX sold for {system.name} holds it (the largest is {format_capacity(max(memoryx_options(system)))})"
    raise PlanError(f"{model} needs {format_capacity(need)} of weights, optimizer state and gradient accumulator in "
                    f"MemoryX ({options.memoryx_bytes_per_param} bytes per parameter) but {system.memoryx.name} holds "
                    f"{format_capacity(system.memoryx.capacity_bytes)}; {advice}")


def check_wafer(model: str, sm: StreamingModel) -> None:
    """Refuse when not one sequence fits, with advice that is true when given."""
    offload = sm.options.offload != "never"
    fit = sm.max_seqs["offload"] if offload else max(sm.max_seqs[False], sm.max_seqs[True])
    if fit >= 1:
        return
    need = sm.buffer_bytes + sm.working + (0 if offload else float(sm.kept[True].sum()))
    have = sm.grid.memory_bytes
    if not offload and sm.max_seqs["offload"] >= 1:
        advice = "allow offload (plan.offload: auto)"
    elif sm.longest_seq_len() >= 1:
        advice = f"use --seq-len {sm.longest_seq_len()} or shorter"
    else:
        advice = smaller_tiles_advice(sm)
    raise PlanError(f"{model} at sequence length {sm.seq_len} needs {need / 1e9:.3g} GB on the wafer for one sequence "
                    f"(weight tiles + one layer's working set) but {sm.system.name} holds {have / 1e9:.3g} GB; {advice}",
                    needed_bytes=need, available_bytes=have)


def smaller_tiles_advice(sm: StreamingModel) -> str:
    """Advice when the weight tiles leave no room for one token: tiles a quarter of the wafer (and the sequence
    that then fits), or, when even that fits no token, the SRAM per core that holds one sequence."""
    per_param = 2 * sm.options.weight_bytes + sm.options.grad_bytes
    tile = int(sm.grid.memory_bytes / 4 / per_param) * sm.options.weight_bytes
    if tile >= sm.options.weight_bytes:
        smaller = StreamingModel(sm.shape, sm.system, sm.seq_len, replace(sm.options, weight_tile_bytes=tile))
        longest = min(smaller.longest_seq_len(), sm.seq_len)
        if longest >= 1 and smaller.max_seqs["offload"] >= 1:
            return (f"its weight tiles alone need {sm.buffer_bytes / 1e9:.3g} GB: set plan.weight_tile_bytes to "
                    f"{tile:,} (a system file's planner: section)")
        if longest >= 1:
            return (f"its weight tiles alone need {sm.buffer_bytes / 1e9:.3g} GB: set plan.weight_tile_bytes to "
                    f"{tile:,} (a system file's planner: section) and use --seq-len {longest} or shorter")
    need = (sm.working + sm.buffer_bytes) / sm.grid.cells + sm.system.chip.sram_reserved_bytes_per_core
    return (f"the wafer is too small for one sequence of this model: plan it on a system whose cores hold at least "
            f"{math.ceil(need / 1024)} KiB (chip: sram_bytes_per_core: {math.ceil(need / 1024) * 1024})")


def plan_streaming(shape, system: System, *, systems: int = 1, batch_size: int, seq_len: int,
                   options: PlanOptions | None = None, model_name: str | None = None) -> Plan:
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
    memoryx_bytes = check_memoryx(model, system, sm.parameters, options)
    check_wafer(model, sm)
    free = system.memoryx.capacity_bytes - memoryx_bytes
    chosen = best_over_systems(sm, batch_size, systems, free)
    if chosen is None:
        raise PlanError(f"{model}'s offloaded activations do not fit in {system.memoryx.name} beside its weights "
                        f"and optimizer state; use a larger --memoryx or a smaller --batch-size")
    scaling = scaling_points(sm, batch_size, systems, free)
    return Plan(
        model=model, system=system.name, systems=systems, mode="streaming", fits=True, grid=sm.grid.to_dict(),
        batch_size=batch_size, seq_len=seq_len, step_time_s=chosen["step_time_s"],
        tokens_per_s=batch_size * seq_len / chosen["step_time_s"],
        utilization=plan_flops(sm, batch_size)[0] / (chosen["step_time_s"] * systems * sm.grid.peak_flops),
        time_to_train_s=20 * sm.parameters * chosen["step_time_s"] / (batch_size * seq_len),
        memory=memory_summary(sm, chosen, memoryx_bytes), layers=layer_timings(sm, chosen), scaling=scaling,
        assumptions={**unpublished(system), **options.assumptions("streaming")},
        details={**plan_details(sm, chosen, batch_size, systems), **idle_note(chosen, batch_size, systems)},
    )


def idle_note(chosen: dict, batch_size: int, systems: int) -> dict:
    """``idle_note``, one line, when the plan leaves systems idle, and why that is the faster choice."""
    used = chosen["systems_used"]
    if used >= systems:
        return {}
    return {"idle_note": f"uses {used} of the {systems} systems offered: {batch_size} sequences spread over more "
                         f"would not be faster ({chosen['per_system_seqs']} per system already; fewer tokens per "
                         "system stop hiding the weight streaming, and each system adds SwarmX latency)"}


def plan_flops(sm: StreamingModel, batch_size: int) -> tuple[float, float]:
    """Training FLOPs of one step: (this project's convention, the Cerebras-GPT paper's)."""
    tokens = batch_size * sm.seq_len
    return (training_flops_per_token(sm.layers) * tokens,
            paper_training_flops_per_token(sm.layers, sm.shape) * tokens)


def scaling_points(sm: StreamingModel, batch_size: int, systems: int, free: float) -> list[ScalingPoint]:
    """Tokens/s at 1, 2, 4, 8, 16 and ``systems`` systems (same global batch), each with why it is off linear."""
    tokens_per_step = batch_size * sm.seq_len
    base = best_over_systems(sm, batch_size, 1, free)
    base_tps = tokens_per_step / base["step_time_s"]
    points = []
    for n in sorted(set(SCALING_SYSTEMS) | {systems}):
        if n > sm.system.swarmx.max_systems:
            continue
        found = best_over_systems(sm, batch_size, n, free)
        tps = tokens_per_step / found["step_time_s"]
        eff = tps / (n * base_tps)
        points.append(ScalingPoint(systems=n, systems_used=found["systems_used"], tokens_per_s=tps, efficiency=eff,
                                   note=scaling_note(sm, found, base, n, eff)))
    return points


def layout(found: dict) -> str:
    """A step's layout in words: micro-batches, recomputation, offload."""
    return (f"{found['micro_batches']} x {found['micro_batch_seqs']} seqs"
            + (", recomputing" if found["recompute"] else "") + (", offloading" if found["offloaded_bytes"] else ""))


def scaling_note(sm: StreamingModel, found: dict, base: dict, n: int, eff: float) -> str:
    """Why ``n`` systems are off linear by more than 2% (empty when they are not): systems left idle, a layout that
    one system's memory forced and fewer sequences per system spare (above linear), or too few tokens per system
    to keep the kernels busy and hide the weight streaming (below)."""
    if abs(eff - 1) <= 0.02:
        return ""
    per = found["per_system_seqs"]
    if found["systems_used"] < n:
        return f"{found['systems_used']} used: {per} seqs each; more systems would not be faster"
    if eff > 1:
        return f"{per} seqs per system run as {layout(found)}; one system needed {layout(base)}"
    fwd, _ = sm.forward(found["micro_batch_seqs"])
    bound = int((sm.stream_in > fwd).sum())
    tokens = found["micro_batch_seqs"] * sm.seq_len
    why = f"{bound} of {len(fwd)} layers wait for their weights" if bound else "the kernels are less efficient"
    return f"{tokens:,} tokens per micro-batch per system: {why}; one system ran {layout(base)}"


def memory_summary(sm: StreamingModel, chosen: dict, memoryx_bytes: float) -> dict:
    q = chosen["micro_batch_seqs"]
    on_wafer = q * (sm.working + float(sm.kept[chosen["recompute"]].sum())) - chosen["offloaded_bytes"]
    return {
        "capacity_bytes_per_core": sm.grid.memory_bytes_per_cell,
        "peak_bytes_per_core": (sm.buffer_bytes + on_wafer) / sm.grid.cells,
        "weights_bytes": sm.buffer_bytes,
        "optimizer_bytes": sm.parameters * sm.options.optimizer_bytes,
        "activations_bytes": on_wafer,
        "offloaded_bytes": chosen["offloaded_bytes"],
        "memoryx_bytes": memoryx_bytes,
        "memoryx_capacity_bytes": sm.system.memoryx.capacity_bytes,
        "total_bytes": sm.grid.memory_bytes,
    }


def plan_details(sm: StreamingModel, chosen: dict, batch_size: int, systems: int) -> dict:
    ours, paper = plan_flops(sm, batch_size)
    step, peak = chosen["step_time_s"], systems * sm.grid.peak_flops
    tokens = chosen["micro_batch_seqs"] * sm.seq_len
    fwd, _ = sm.forward(chosen["micro_batch_seqs"])
    flops = np.array([l.flops_per_token for l in sm.layers]) * tokens
    return {
        "systems_used": chosen["systems_used"], "per_system_batch": chosen["per_system_seqs"],
        "recompute": chosen["recompute"], "offload": chosen["offloaded_bytes"] > 0,
        "micro_batches": chosen["micro_batches"], "micro_batch_seqs": chosen["micro_batch_seqs"],
        "max_batch_per_system": {"no_recompute": sm.max_seqs[False], "recompute": sm.max_seqs[True],
                                 "offload": sm.max_seqs["offload"]},
        "stream_bandwidth_bytes_per_s": sm.bandwidth, "tree_levels": sm.system.swarmx.levels(chosen["systems_used"]),
        "tree_latency_s": chosen["tree_latency_s"], "optimizer_tail_s": chosen["optimizer_tail_s"],
        "tokens_to_hide_streaming": float(sm.stream_in.sum() * tokens / fwd.sum()) if fwd.sum() > 0 else math.inf,
        "kernel_efficiency": float(flops.sum() / (fwd.sum() * sm.grid.peak_flops)) if fwd.sum() > 0 else 0.0,
        "weight_tile_params": sm.tile_params,
        "parameters": sm.parameters, "train_tokens": 20 * sm.parameters, "peak_flops": peak,
        "model_flops_per_step": ours, "model_flops_per_step_paper": paper,
        "utilization_paper": paper / (step * peak),
        "flop_convention": "utilization: ours (dense + full-square attention + logits, backward 2x); "
                           "utilization_paper: the Cerebras-GPT paper's algorithmic FLOPs (Appendix F)",
    }


def layer_timings(sm: StreamingModel, chosen: dict) -> list[LayerTiming]:
    """Per-layer totals over the step's micro-batches: compute (or fabric) time versus streaming time."""
    q, r = chosen["sizes"]
    n = len(sm.layers)
    fwd_c, bwd_c, fwd_s, bwd_s = (np.zeros(n) for _ in range(4))
    for seqs, count in ((q + 1, r), (q, chosen["micro_batches"] - r)):
        if count == 0:
            continue
        work, scores = sm.forward(seqs)
        off = sm.offloaded(seqs, chosen["recompute"]) / sm.bandwidth
        fwd_c += count * work
        bwd_c += count * (2 * work + scores + (work * sm.recomputable if chosen["recompute"] else 0))
        fwd_s += count * np.maximum(sm.stream_in, off)
        bwd_s += count * np.maximum(sm.stream_in + off, sm.stream_out)
    kept = sm.kept[chosen["recompute"]] * chosen["micro_batch_seqs"]
    out = []
    for i, layer in enumerate(sm.layers):
        compute, stream = fwd_c[i] + bwd_c[i], fwd_s[i] + bwd_s[i]
        out.append(LayerTiming(
            name=layer.name, compute_time_s=float(compute), stream_time_s=float(stream),
            forward_compute_s=float(fwd_c[i]), backward_compute_s=float(bwd_c[i]),
            forward_stream_s=float(fwd_s[i]), backward_stream_s=float(bwd_s[i]),
            fabric_bound=False, bound="compute" if compute >= stream else "stream",
            weight_bytes=float(sm.weight_bytes[i]), activation_bytes=float(kept[i]),
        ))
    return out

"""Inference planning: a model resident in the SRAM of one or more wafers, decoding or prefilling a batch of requests.

Placement. Every layer's weights (16-bit) and its share of the KV cache stay on the wafer. Layers are cut into
contiguous groups, one per wafer, balancing memory (wse.partition, exact); on a wafer the planner compares two
mappings and keeps the faster:

- ``regions``: each layer owns a rectangle of cores sized by its memory (weights + KV cache), so cores never change
  layer; a token flows region to region and a batch's tokens pipeline through them (the slowest region sets the pace).
- ``whole``: every layer is spread over the whole wafer, so each layer's matrix-vector products use all cores, but
  every core switches layer (``layer_switch_cycles``) once per layer per step, and tokens do not pipeline.

Time of one layer for b tokens (wse.wafer.kernels): each weight matrix is a GEMV on its region, b times the per-core
work plus a step cost and the hops of a broadcast and a reduction; attention reads each request's KV cache spread over
the region's cores (scores and values, 2 x heads x d_head x context multiply-adds) and pays two more reductions
(softmax, output). Between wafers a token's activations cross the system I/O (``inter_system_latency_s`` plus d values
over ``io_bytes_per_s``). Decode: one step moves every request one token on. Prefill: b x prompt tokens pipeline through
(each attends to half its prompt on average, causal); the time to first token is that step.

A plan offered N wafers uses the n <= N with the lowest latency among those that hold the model (``wafers_used``);
more wafers give each layer a larger region, which shortens the compute but lengthens the hops and adds wafer
crossings, so latency falls with wafers until communication dominates.
"""

from __future__ import annotations

import math

import numpy as np

from wse.assumptions import PlanOptions
from wse.costs import Layer, model_layers
from wse.errors import PlanError
from wse.partition import partition_layers
from wse.plans import InferencePlan
from wse.shape import as_shape
from wse.wafer.hardware import System, unpublished
from wse.wafer.kernels import kernel_model


def layer_bytes(layers: list[Layer], shape, context: int, batch: int, options: PlanOptions) -> np.ndarray:
    """Wafer bytes per layer: 16-bit weights (a tied token table once, with the head) plus the KV cache."""
    s = as_shape(shape)
    out = []
    for layer in layers:
        weights = layer.weight_params
        if layer.name == "embedding" and s.tied_embeddings:
            weights -= s.vocab_size * s.d_model  # the head's region holds the tied table; a lookup reads it there
        out.append(weights * options.weight_bytes + layer.kv_values_per_token * context * batch * options.activation_bytes)
    return np.array(out, dtype=float)


class LayerTimes:
    """Per-token compute and fixed latency (seconds) of each layer on a region of ``cells`` cores."""

    def __init__(self, layers: list[Layer], system: System, options: PlanOptions, attended: float):
        self.layers, self.chip, self.attended = layers, system.chip, attended
        self.km = kernel_model(system.chip, options.kernel_step_cycles, options.activation_bytes)

    def one(self, layer: Layer, cells: int) -> tuple[float, float]:
        """(compute per token, fixed latency) of ``layer`` on ``cells`` cores."""
        km, cells = self.km, max(int(cells), 1)
        rows = max(1, int(math.sqrt(cells)))
        cols = max(1, cells // rows)
        hops = km.hop_cycles * (rows + cols) / 2
        compute = latency = 0.0
        for m in layer.matmuls:
            if m.heads:
                continue
            total = km.gemv_s(1, m.k, m.n, rows, cols)
            fixed = (km.step_cycles + hops) / km.clock_hz
            compute, latency = compute + total - fixed, latency + fixed
        if layer.kv_values_per_token:  # attention over the cache: scores and values, then softmax and output reductions
            heads = sum(m.heads for m in layer.matmuls if m.kind == "scores") or 1
            d_head = next(m.k for m in layer.matmuls if m.kind == "scores")
            compute += 2 * heads * d_head * self.attended / (rows * cols * km.simd) / km.clock_hz
            latency += 2 * (km.step_cycles + hops) / km.clock_hz
        if not layer.matmuls:  # the embedding lookup: one row to the first block
            latency += (km.step_cycles + hops) / km.clock_hz
        return compute, latency


def wafer_step(times: LayerTimes, group: list[int], mem: np.ndarray, cells: int, tokens: int) -> dict:
    """Seconds for ``tokens`` tokens through one wafer's layers, the better of the two mappings (module doc)."""
    share = mem[group] / mem[group].sum()
    regions = [times.one(times.layers[i], max(1, int(cells * f))) for i, f in zip(group, share)]
    whole = [times.one(times.layers[i], cells) for i in group]
    switch = times.chip.layer_switch_cycles / times.chip.clock_hz
    by_region = sum(c + l for c, l in regions) + (tokens - 1) * max(c for c, _ in regions)
    by_whole = sum(tokens * c + l + switch for c, l in whole)
    if by_region <= by_whole:
        return {"mapping": "regions", "seconds": by_region, "bottleneck_s": max(c for c, _ in regions)}
    return {"mapping": "whole", "seconds": by_whole, "bottleneck_s": 0.0}


def pipeline_step(times: LayerTimes, mem: np.ndarray, system: System, wafers: int, tokens: int, d_model: int,
                  options: PlanOptions) -> dict | None:
    """One step of ``tokens`` tokens through the model on exactly ``wafers`` wafers, or None if it does not fit."""
    grid = system.grid()
    try:
        groups = partition_layers(list(mem), wafers, list(mem), float(grid.memory_bytes))
    except PlanError:
        return None
    steps = [wafer_step(times, list(range(a, b + 1)), mem, grid.cells, tokens) for a, b in groups if b >= a]
    crossing = options.inter_system_latency_s + d_model * options.activation_bytes / system.io_bytes_per_s
    regions = all(s["mapping"] == "regions" for s in steps)
    if regions:  # one long pipeline: the slowest region of all paces the tokens, counted once
        slowest = max(s["bottleneck_s"] for s in steps)
        seconds = sum(s["seconds"] - (tokens - 1) * s["bottleneck_s"] for s in steps) + (tokens - 1) * slowest
    else:
        seconds = sum(s["seconds"] for s in steps)
    seconds += (len(steps) - 1) * (crossing + (tokens - 1) * d_model * options.activation_bytes / system.io_bytes_per_s)
    return {"seconds": seconds, "wafers": len(steps), "groups": groups[:len(steps)],
            "mappings": [s["mapping"] for s in steps]}


def fewest_wafers(mem: np.ndarray, capacity: float, limit: int) -> int | None:
    """The fewest wafers that hold the layers (contiguous groups), up to ``limit``; None when none does."""
    if mem.max() > capacity:
        return None
    for n in range(1, limit + 1):
        try:
            partition_layers(list(mem), n, list(mem), capacity)
            return n
        except PlanError:
            continue
    return None


def plan_inference(shape, system: System, *, wafers: int = 1, task: str = "decode", batch_size: int = 1,
                   seq_len: int | None = None, prompt_len: int | None = None, options: PlanOptions | None = None,
                   model_name: str | None = None) -> InferencePlan:
    """Decode or prefill ``batch_size`` requests of a model resident on up to ``wafers`` wafers of ``system``.

    ``seq_len``: the context the KV cache holds per request (default 2048, capped at the model's); ``prompt_len``
    (prefill): the prompt per request (default ``seq_len``).
    """
    options = options or PlanOptions()
    s = as_shape(shape)
    model = model_name or s.name
    context = min(2048, s.max_seq_len) if seq_len is None else seq_len
    prompt = context if prompt_len is None else prompt_len
    if batch_size < 1 or wafers < 1 or not 1 <= prompt <= context <= s.max_seq_len:
        raise PlanError(f"need batch >= 1, systems >= 1 and 1 <= prompt ({prompt}) <= context ({context}) <= "
                        f"max_seq_len ({s.max_seq_len})")
    layers = model_layers(s, context, attention_probs_stashed=False)
    mem = layer_bytes(layers, s, context, batch_size, options)
    grid = system.grid()
    need_wafers = fewest_wafers(mem, grid.memory_bytes, max(wafers, len(layers)))
    check_fits(model, system, mem, wafers, need_wafers, grid.memory_bytes)
    tokens = batch_size * (prompt if task == "prefill" else 1)
    times = LayerTimes(layers, system, options, attended=prompt / 2 if task == "prefill" else context)
    steps = {n: pipeline_step(times, mem, system, n, tokens, s.d_model, options) for n in range(need_wafers, wafers + 1)}
    best = min((v for v in steps.values() if v is not None), key=lambda v: v["seconds"])
    latency = best["seconds"]
    per_request = (1.0 / latency) if task == "decode" else prompt / latency
    return InferencePlan(
        model=model, system=system.name, systems=wafers, task=task, mode="inference", fits=True,
        grid=grid.to_dict(), batch_size=batch_size, seq_len=context, prompt_len=prompt, token_latency_s=latency,
        tokens_per_s_per_request=per_request, tokens_per_s=per_request * batch_size,
        time_to_first_token_s=latency if task == "prefill" else None,
        memory={"weights_bytes": float(sum(l.weight_params for l in layers if l.name != "embedding" or not s.tied_embeddings)
                                       * options.weight_bytes),
                "kv_cache_bytes": float(sum(l.kv_values_per_token for l in layers) * context * batch_size
                                        * options.activation_bytes),
                "total_bytes": float(mem.sum()), "capacity_bytes": float(best["wafers"] * grid.memory_bytes),
                "capacity_bytes_per_core": grid.memory_bytes_per_cell},
        layers=[{"name": l.name, "wafer": next(w for w, (a, b) in enumerate(best["groups"]) if a <= i <= b),
                 "bytes": float(mem[i])} for i, l in enumerate(layers)],
        assumptions={**unpublished(system.chip), **options.assumptions("inference")},
        details={"wafers_used": best["wafers"], "fewest_wafers": need_wafers, "mappings": best["mappings"],
                 "latency_by_wafers_s": {n: v["seconds"] for n, v in steps.items() if v is not None},
                 "parameters": int(sum(l.params for l in layers)), "n_kv_heads": s.n_kv_heads,
                 "ffn_gated": s.ffn_gated, "tokens_per_step": tokens},
    )


def check_fits(model: str, system: System, mem: np.ndarray, wafers: int, need: int | None, capacity: float) -> None:
    """Refuse a model that does not fit on ``wafers`` wafers, naming the fewest that hold it (true when given)."""
    if need is not None and need <= wafers:
        return
    total = mem.sum()
    if need is None:
        raise PlanError(f"{model}: one layer needs {mem.max() / 1e9:.1f} GB of SRAM (weights + KV cache) but a "
                        f"{system.name} wafer holds {capacity / 1e9:.1f} GB; use a shorter --seq-len or a smaller "
                        "--batch-size (a layer is not split across wafers)",
                        needed_bytes=float(mem.max()), available_bytes=capacity)
    raise PlanError(f"{model} needs {total / 1e9:.1f} GB of SRAM for weights and KV cache but {wafers} x {system.name} "
                    f"hold {wafers * capacity / 1e9:.1f} GB; use --systems {need}",
                    needed_bytes=float(total), available_bytes=wafers * capacity)

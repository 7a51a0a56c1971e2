"""Inference planning: a model resident in the SRAM of one or more wafers, decoding or prefilling a batch of requests.

Placement. Every layer's weights (16-bit) and its share of the KV cache stay on the wafer. Layers are cut into
contiguous groups, one per wafer, with the smallest largest group (``balanced_groups``: exact, and fast for the
hundreds of layers and wafers of the largest models).

Decode (one new token per request per step). On a wafer the planner compares two mappings and keeps the faster:

- ``regions``: each layer owns a rectangle of cores sized by its memory (weights + KV cache), so cores never change
  layer; a token flows region to region and a batch's tokens pipeline through them (the slowest region sets the pace).
- ``whole``: every layer is spread over the whole wafer, so each layer's matrix-vector products use all cores, but
  every core switches layer (``layer_switch_cycles``) once per layer per step, and tokens do not pipeline.

A layer's time for b tokens (wse.wafer.kernels): each weight matrix is a GEMV on its region, b times the per-core
work plus a step cost and the hops of a broadcast and a reduction; attention reads each request's KV cache spread over
the region's cores (scores and values, 2 x heads x d_head x context multiply-adds) and pays two more reductions
(softmax, output); and each of the layer's sequential phases (wse.costs.Layer.phases: norm, matmuls, softmax,
activation, residual) ends in a grid-wide hand-off, ``phase_sync_cycles`` (WaferLLM's decode kernels run them one
after another).

Prefill (the prompts of a batch, to the first token). As WaferLLM runs it (OSDI 2025, read from its code): one layer at
a time on the whole wafer, its phases in sequence, each matmul a GEMM over every prompt token (the kernel model, with
the inference step cost), the attention scores and values per request and head, and the logits of each request's
last token as a GEMV. The layers of a wafer run in turn, then the activations cross to the next wafer. The working set
of the running layer (its internals for every prompt token) must fit beside the wafer's weights and KV cache.

Between wafers a token's activations cross the system I/O (``inter_system_latency_s`` plus d values over
``io_bytes_per_s``). A decode plan offered N wafers uses the n <= N with the lowest latency among those that hold the
model (``wafers_used``): more wafers give each layer a larger region, which shortens the compute but lengthens the
hops and adds crossings. A prefill on more wafers than it needs only adds crossings, so it uses the fewest that hold
it: its latency never rises when a wafer is offered.
"""

from __future__ import annotations

import math

import numpy as np

from wse.assumptions import PlanOptions
from wse.costs import Layer, model_layers
from wse.errors import PlanError
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


def greedy_groups(mem: np.ndarray, limit: float) -> list[tuple[int, int]] | None:
    """Contiguous groups of layers, each filled up to ``limit`` bytes in order; None when one layer exceeds it."""
    groups, start, total = [], 0, 0.0
    for i, m in enumerate(mem):
        if m > limit:
            return None
        if total + m > limit:
            groups.append((start, i - 1))
            start, total = i, 0.0
        total += m
    return groups + [(start, len(mem) - 1)]


def balanced_groups(mem: np.ndarray, wafers: int, capacity: float) -> list[tuple[int, int]] | None:
    """``wafers`` contiguous groups of layers (fewer only when there are fewer layers) with the smallest largest group
    (bisection on it, greedy packing at each bound: exact for contiguous groups; then the largest groups split until
    there are ``wafers``, which never raises the largest), none above ``capacity``; None when they do not fit."""
    if capacity <= 0:
        return None
    first = greedy_groups(mem, capacity)
    if first is None or len(first) > wafers:
        return None
    lo, hi = float(mem.max()), float(min(mem.sum(), capacity))
    for _ in range(60):
        if hi - lo <= 1e-9 * hi:
            break
        mid = (lo + hi) / 2
        found = greedy_groups(mem, mid)
        lo, hi = (lo, mid) if found is not None and len(found) <= wafers else (mid, hi)
    groups = greedy_groups(mem, hi)
    while len(groups) < min(wafers, len(mem)):
        k = max((g for g in range(len(groups)) if groups[g][1] > groups[g][0]),
                key=lambda g: mem[groups[g][0]:groups[g][1] + 1].sum())
        a, b = groups[k]
        left = np.cumsum(mem[a:b])  # the first part's bytes for each cut after a .. b-1
        cut = a + int(np.argmin(np.maximum(left, mem[a:b + 1].sum() - left)))
        groups[k:k + 1] = [(a, cut), (cut + 1, b)]
    return groups


def prefill_working_bytes(layers: list[Layer], tokens: int, options: PlanOptions) -> float:
    """Bytes the running layer of a prefill holds for ``tokens`` prompt tokens: its internals (what training would
    stash; the attention scores are produced and consumed a block at a time, as flash attention does)."""
    return tokens * max(l.stash_values_per_token for l in layers) * options.activation_bytes


class LayerTimes:
    """Per-token compute and fixed latency (seconds) of each layer on a region of ``cells`` cores (decode)."""

    def __init__(self, layers: list[Layer], system: System, options: PlanOptions, attended: float):
        self.layers, self.chip, self.attended = layers, system.chip, attended
        self.km = kernel_model(system.chip, options.kernel_step_cycles, options.activation_bytes)
        self.sync_s = options.phase_sync_cycles / system.chip.clock_hz

    def one(self, layer: Layer, cells: int) -> tuple[float, float]:
        """(compute per token, fixed latency) of ``layer`` on ``cells`` cores."""
        km, cells = self.km, max(int(cells), 1)
        rows = max(1, int(math.sqrt(cells)))
        cols = max(1, cells // rows)
        hops = km.hop_cycles * (rows + cols) / 2
        compute, latency = 0.0, layer.phases * self.sync_s
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
    """Seconds for ``tokens`` decode tokens through one wafer's layers, the better of the two mappings (module doc)."""
    share = mem[group] / mem[group].sum()
    regions = [times.one(times.layers[i], max(1, int(cells * f))) for i, f in zip(group, share)]
    whole = [times.one(times.layers[i], cells) for i in group]
    switch = times.chip.layer_switch_cycles / times.chip.clock_hz
    by_region = sum(c + l for c, l in regions) + (tokens - 1) * max(c for c, _ in regions)
    by_whole = sum(tokens * c + l + switch for c, l in whole)
    if by_region <= by_whole:
        return {"mapping": "regions", "seconds": by_region, "bottleneck_s": max(c for c, _ in regions)}
    return {"mapping": "whole", "seconds": by_whole, "bottleneck_s": 0.0}


def prefill_layer_s(layer: Layer, system: System, options: PlanOptions, requests: int, prompt: int) -> float:
    """Seconds of one layer of a prefill on the whole wafer (module docstring): its GEMMs over every prompt token,
    attention per request and head, the head's logits for each request's last token, and its phases' hand-offs."""
    km = kernel_model(system.chip, options.kernel_step_cycles, options.activation_bytes)
    grid = system.grid()
    seconds = layer.phases * options.phase_sync_cycles / system.chip.clock_hz
    for m in layer.matmuls:
        if m.heads:
            seconds += km.grouped_matmul_s(requests * m.heads, prompt, m.k, m.n, grid.cells)
        elif layer.name == "head":
            seconds += km.gemv_s(requests, m.k, m.n, grid.rows, grid.cols)
        else:
            seconds += km.matmul_s(requests * prompt, m.k, m.n, grid.cells)
    return seconds


def crossing_s(system: System, options: PlanOptions, d_model: int, tokens: int) -> float:
    """One hand-over of ``tokens`` tokens' activations from one wafer to the next."""
    return options.inter_system_latency_s + tokens * d_model * options.activation_bytes / system.io_bytes_per_s


def decode_step(times: LayerTimes, mem: np.ndarray, system: System, wafers: int, tokens: int, d_model: int,
                options: PlanOptions, capacity: float) -> dict | None:
    """One decode step of ``tokens`` tokens through the model on exactly ``wafers`` wafers, or None if it does not
    fit in ``capacity`` bytes per wafer."""
    groups = balanced_groups(mem, wafers, capacity)
    if groups is None:
        return None
    steps = [wafer_step(times, list(range(a, b + 1)), mem, system.grid().cells, tokens) for a, b in groups]
    crossing = crossing_s(system, options, d_model, 1)
    if all(s["mapping"] == "regions" for s in steps):  # one long pipeline: the slowest region paces the tokens
        slowest = max(s["bottleneck_s"] for s in steps)
        seconds = sum(s["seconds"] - (tokens - 1) * s["bottleneck_s"] for s in steps) + (tokens - 1) * slowest
    else:
        seconds = sum(s["seconds"] for s in steps)
    seconds += (len(steps) - 1) * (crossing + (tokens - 1) * d_model * options.activation_bytes / system.io_bytes_per_s)
    return {"seconds": seconds, "wafers": len(steps), "groups": groups, "mappings": [s["mapping"] for s in steps]}


def prefill_step(layers: list[Layer], mem: np.ndarray, system: System, wafers: int, requests: int, prompt: int,
                 d_model: int, options: PlanOptions, capacity: float) -> dict | None:
    """The prefill of ``requests`` prompts of ``prompt`` tokens on exactly ``wafers`` wafers (module docstring), or
    None if it does not fit in ``capacity`` bytes per wafer (the running layer's working set already taken off)."""
    used = balanced_groups(mem, wafers, capacity)
    if used is None:
        return None
    seconds = sum(prefill_layer_s(l, system, options, requests, prompt) for l in layers)
    seconds += (len(used) - 1) * crossing_s(system, options, d_model, requests * prompt)
    return {"seconds": seconds, "wafers": len(used), "groups": used, "mappings": ["layerwise"] * len(used)}


def fewest_wafers(mem: np.ndarray, capacity: float, limit: int) -> int | None:
    """The fewest wafers that hold the layers (contiguous groups: packing each wafer full in order is exact), up to
    ``limit``; None when none does."""
    groups = greedy_groups(mem, capacity) if capacity > 0 else None
    return len(groups) if groups is not None and len(groups) <= limit else None


def plan_inference(shape, system: System, *, wafers: int = 1, task: str = "decode", batch_size: int = 1,
                   seq_len: int | None = None, prompt_len: int | None = None, options: PlanOptions | None = None,
                   model_name: str | None = None) -> InferencePlan:
    """Decode or prefill ``batch_size`` requests of a model resident on up to ``wafers`` wafers of ``system``.

    ``seq_len``: the context the KV cache holds per request (default 2048 capped at the model's, or the prompt when it
    is longer); ``prompt_len`` (prefill): the prompt per request (default ``seq_len``). PlanError (one line, with
    advice that is true when followed) when the model does not fit or an input is out of range.
    """
    options = options or PlanOptions()
    s = as_shape(shape)
    model = model_name or s.name
    # a prompt longer than the default context brings its own (a 4,096-token prefill needs no --seq-len)
    context = max(min(2048, s.max_seq_len), prompt_len or 0) if seq_len is None else seq_len
    prompt = context if prompt_len is None else prompt_len
    if batch_size < 1 or wafers < 1:
        raise PlanError(f"need batch >= 1 and systems >= 1, got {batch_size} and {wafers}")
    if not 1 <= prompt <= context <= s.max_seq_len:
        raise PlanError(f"need 1 <= --prompt-len ({prompt}) <= --seq-len ({context}) <= the model's context "
                        f"({s.max_seq_len}); give a prompt within the context and a context within the model's")
    prefill = task == "prefill"
    layers = model_layers(s, context, attention_probs_stashed=False)
    placed = place(s, system, layers, options, wafers, batch_size, context, batch_size * prompt if prefill else 0)
    mem, capacity, need = placed["mem"], placed["capacity"], placed["need"]
    if prefill:
        steps = {need: prefill_step(model_layers(s, prompt, attention_probs_stashed=False), mem, system, need,
                                    batch_size, prompt, s.d_model, options, capacity)}
    else:
        times = LayerTimes(layers, system, options, attended=context)
        steps = {n: decode_step(times, mem, system, n, batch_size, s.d_model, options, capacity)
                 for n in range(need, wafers + 1)}
    best = min((v for v in steps.values() if v is not None), key=lambda v: v["seconds"])
    latency = best["seconds"]
    per_request = prompt / latency if prefill else 1.0 / latency
    return InferencePlan(
        model=model, system=system.name, systems=wafers, task=task, mode="inference", fits=True,
        grid=system.grid().to_dict(), batch_size=batch_size, seq_len=context, prompt_len=prompt,
        token_latency_s=latency, tokens_per_s_per_request=per_request, tokens_per_s=per_request * batch_size,
        time_to_first_token_s=latency if prefill else None,
        memory=inference_memory(s, layers, mem, best, system, options, batch_size, context, placed["working"]),
        layers=layer_rows(layers, mem, best), assumptions={**unpublished(system.chip), **options.assumptions("inference")},
        details={"wafers_used": best["wafers"], "fewest_wafers": need, "mappings": best["mappings"],
                 "latency_by_wafers_s": {n: v["seconds"] for n, v in steps.items() if v is not None},
                 "parameters": int(sum(l.params for l in layers)), "n_kv_heads": s.n_kv_heads,
                 "ffn_gated": s.ffn_gated, "tokens_per_step": batch_size * (prompt if prefill else 1),
                 **idle_wafers(wafers, best["wafers"], task)},
    )


def place(s, system: System, layers: list[Layer], options: PlanOptions, wafers: int, batch: int, context: int,
          prefill_tokens: int) -> dict:
    """Wafer bytes per layer (``mem``), bytes a wafer has for them (``capacity``: less a prefill's working set) and the
    fewest wafers that hold them (``need``); PlanError with true advice when they do not fit on ``wafers``."""
    mem = layer_bytes(layers, s, context, batch, options)
    grid = system.grid()
    working = prefill_working_bytes(layers, prefill_tokens, options) if prefill_tokens else 0.0
    capacity = grid.memory_bytes - working
    need = fewest_wafers(mem, capacity, max(wafers, len(layers)))
    if need is None:
        raise PlanError(too_big_message(s, system, layers, mem, working, options, batch, context),
                        needed_bytes=float(mem.max() + working), available_bytes=float(grid.memory_bytes))
    if need > wafers:
        raise PlanError(f"{s.name} needs {mem.sum() / 1e9:.1f} GB of SRAM for weights and KV cache"
                        f"{f' and {working / 1e9:.1f} GB per wafer for the prefill working set' if working else ''} "
                        f"but {wafers} x {system.name} hold {wafers * grid.memory_bytes / 1e9:.1f} GB; use --systems {need}",
                        needed_bytes=float(mem.sum()), available_bytes=wafers * grid.memory_bytes)
    return {"mem": mem, "capacity": capacity, "need": need, "working": working}


def too_big_message(s, system: System, layers: list[Layer], mem: np.ndarray, working: float, options: PlanOptions,
                    batch: int, context: int) -> str:
    """Why one layer (with its KV cache, and a prefill's working set) does not fit on a wafer, and a fix that works:
    fewer requests or a shorter context when the weights alone fit, else a system whose cores hold more."""
    grid = system.grid()
    cap = float(grid.memory_bytes)
    kv = np.array([l.kv_values_per_token for l in layers], dtype=float) * context * batch * options.activation_bytes
    weights = mem - kv
    i = int(np.argmax(mem))
    head = (f"{s.name}: one layer needs {(mem[i] + working) / 1e9:.3g} GB of SRAM (weights {weights[i] / 1e9:.3g} GB, "
            f"the rest KV cache{' and prefill working set' if working else ''}) but a {system.name} wafer holds "
            f"{cap / 1e9:.3g} GB, and a layer is not split across wafers")
    if weights.max() < cap:
        over = (mem + working > cap) & (kv + working > 0)
        scale = float(np.min((cap - weights[over]) / (kv[over] + working)))  # the share of requests x context that fits
        if batch > 1 and math.floor(batch * scale) >= 1:
            return f"{head}; use --batch-size {math.floor(batch * scale)} or fewer"
        if math.floor(context * scale) >= 1:
            return f"{head}; use a context of {math.floor(context * scale)} tokens or fewer (--seq-len, --prompt-len)"
    per_core = math.ceil((mem.max() + working) / grid.cells) + system.chip.sram_reserved_bytes_per_core
    return (f"{head}; a layer's weights with one token of context exceed a wafer: plan it on a system file whose "
            f"cores hold at least {math.ceil(per_core / 1024)} KiB (chip: sram_bytes_per_core: "
            f"{math.ceil(per_core / 1024) * 1024})")


def inference_memory(s, layers, mem, best, system: System, options: PlanOptions, batch: int, context: int,
                     working: float) -> dict:
    grid = system.grid()
    tied = s.tied_embeddings
    return {"weights_bytes": float(sum(l.weight_params for l in layers if l.name != "embedding" or not tied)
                                   * options.weight_bytes),
            "kv_cache_bytes": float(sum(l.kv_values_per_token for l in layers) * context * batch
                                    * options.activation_bytes),
            "prefill_working_bytes": float(working),
            "total_bytes": float(mem.sum()), "capacity_bytes": float(best["wafers"] * grid.memory_bytes),
            "capacity_bytes_per_core": grid.memory_bytes_per_cell}


def layer_rows(layers, mem, best) -> list[dict]:
    return [{"name": l.name, "wafer": next(w for w, (a, b) in enumerate(best["groups"]) if a <= i <= b),
             "bytes": float(mem[i])} for i, l in enumerate(layers)]


def idle_wafers(offered: int, used: int, task: str) -> dict:
    """``idle_note``, one line, when a plan leaves wafers idle, and why."""
    if used >= offered:
        return {}
    why = ("a prefill runs one layer at a time, so a wafer beyond those that hold the model only adds a crossing"
           if task in ("prefill", "generate") else
           "more wafers would give each layer more cores but add hops and wafer crossings that cost more")
    return {"idle_note": f"uses {used} of the {offered} systems offered: {why}"}

"""KV-cache decoding speed of model/generate.py against ``transformers``' ``generate`` on the same model and device,
and against the memory-bandwidth roofline.

Both sides get the same weights, the same random prompt ids, greedy decoding and exactly ``new_tokens`` new tokens
per row (ours with an end-of-text id that never occurs, theirs with ``min_new_tokens``), and both are timed from
prompt to last token (prefill included), best of ``repeats`` calls after a warm-up; ours excludes its one-off
compile, which is reported separately. The two alternate call by call, so that on a shared machine both see the
same load. Both decode in the bench's compute dtype with their weights ready for it: ours laid out once per batch
size by ``prepare_weights`` as ``generate`` would (its seconds reported as ``prepare_s``), theirs built once (on a
GPU moved there in that dtype, as a user would for inference).

Roofline. A decode step must read every weight once, whatever the batch (the tied embedding as the head, one row of
the position table), plus each row's KV cache up to its position: bytes per step = the weights in the compute dtype
(LayerNorm parameters stay float32) + batch x the KV cache a row attends to, averaged over the decode (2 L H D x
itemsize x (prompt + new / 2)); bytes per token = bytes per step / batch. The fastest step is those bytes over the
best rate at which the device reads memory (``memory_bandwidth``): the bench's read ceiling (benchmarks/ceilings.py)
and reads of a matrix as large as one batch-1 step's bytes, sampled after each of our timed calls, so that the
roofline is taken at the model's own size (on a CPU whose caches hold part of a small model, that model reads faster
than a large one, and its roofline says so) and, on a machine shared with other work, under the load the steps
saw. A step only reads, so the copy ceiling (read + write) is no bound on it: on a 2-core VM the copy counted 50-55
GB/s of traffic where no read-only kernel, XLA's or a hand-written AVX-512 loop with prefetching on both cores, read
faster than 29-32 GB/s (docs/performance.md); each row's ``copy_roofline_fraction`` still gives the step against the
copy ceiling. On a Linux host the probes' buffers sit on transparent huge pages, as the decode weights do
(model/host_memory.py), so the roofline is the host's best bandwidth, not its default (4 KiB pages read ~10-40%
slower on the 2-core EPYC of docs/performance.md). ``roofline_fraction`` is that time over the measured decode step
(``step_s``: the prefill excluded, the best of the timed calls' mean step). ``busy_s``/``overhead_s`` split one more
(traced) call's step into the device's operations and the rest, and ``fastest_step_s`` is its shortest step
(benchmarks/decode_profile.py; ``fastest_roofline_fraction``: on a shared machine, what the step does when nothing
else takes its cores).
"""

from __future__ import annotations

import numpy as np

from model.errors import describe_error


def _prompts(cfg, batch: int, prompt_len: int) -> list[list[int]]:
    return np.random.default_rng(1).integers(0, cfg.vocab_size, size=(batch, prompt_len)).tolist()


def memory_bandwidth(ceilings: dict, samples=()) -> float:
    """The roofline's bytes/s: the best measured read (a decode step only reads), of the ceilings'
    ``read_bytes_per_s`` and ``samples`` (read rates, bytes/s); the copy ceiling only where no read was measured."""
    reads = [r for r in [ceilings.get("read_bytes_per_s"), *samples] if r]
    return max(reads) if reads else ceilings["copy_bytes_per_s"]


# Reads timed per bandwidth sample (after a warm-up read; the best counts). A buffer that part of the caches can hold
# reads faster once it is warm, as the decode weights do from step to step: at 78 MB (`small`'s step) on the 2-core
# Xeon VM of docs/performance.md single reads after a warm-up measured 14.5-43.6 GB/s, the best of 3 44.8-45.9 and of
# 9 45.9-48.0; at 442 MB (`111M`'s) 24.6-29.7, 28.6-29.2 and 28.8-29.8.
PROBE_REPEATS = 5


def step_bytes(sizes: dict, batch: int) -> float:
    """Bytes one decode step of ``batch`` rows reads: the weights once plus each row's KV cache (``decode_bytes``)."""
    return sizes["weights"] + batch * sizes["kv_per_row"]


def decode_bytes(cfg, dtype: str, prompt_len: int, new_tokens: int) -> dict:
    """{"weights": bytes every decode step reads whatever the batch, "kv_per_row": mean KV-cache bytes one row's step
    reads} for ``cfg`` in compute ``dtype`` (see the module docstring)."""
    import jax.numpy as jnp

    from model import gpt
    from model.generate import NORM_PARAMS

    item = jnp.dtype(dtype).itemsize
    weights = 0
    for path, shape in _leaves(gpt.param_shapes(cfg)):
        n = int(np.prod(shape))
        if path[0] == "wpe" or (path[0] == "wte" and not cfg.tied_embeddings):
            n = cfg.d_model  # one row gathered (the head is read whole: the tied table, or lm_head)
        weights += n * (4 if any(k in NORM_PARAMS for k in path) else item)
    kv = 2 * cfg.n_layers * cfg.kv_heads * cfg.d_head * item * (prompt_len + new_tokens / 2)
    return {"weights": weights, "kv_per_row": kv}


def _leaves(tree, path=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, path + (k,))
        else:
            yield path + (k,), v


def run_generation(models, *, prompt_len: int, new_tokens: int, repeats: int, dtype: str, ceilings: dict,
                   baseline: bool = True, log=print) -> dict:
    """`wse bench`'s generation section: ``measure_generation`` of each model at batch 1 and 8, then each model's
    roofline: {"models", "dtype", "bandwidth_source", "rows" (every model's, each naming its model and its roofline's
    ``bandwidth_bytes_per_s``), "per_model" (each with its ``bandwidth_bytes_per_s``), "errors"}. A model's roofline
    bandwidth is ``memory_bandwidth`` of the ceilings and of the reads sampled between its decode calls, at its own
    step's size (see the module docstring)."""
    out = {"models": list(models), "dtype": dtype, "rows": [], "per_model": [], "errors": {}}
    for model in models:
        try:
            g = measure_generation(model, prompt_len=prompt_len, new_tokens=new_tokens, batches=(1, 8),
                                   repeats=repeats, dtype=dtype, with_baseline=baseline, sample_bandwidth=True)
        except Exception as err:  # noqa: BLE001 - the other models and sections still run; the report says why
            log(f"  {model} FAILED {describe_error(err)}")
            out["errors"][model] = describe_error(err)
            continue
        g["bandwidth_bytes_per_s"] = memory_bandwidth(ceilings, g["bandwidth_samples"])
        apply_roofline(g["rows"], g["bandwidth_bytes_per_s"], ceilings.get("copy_bytes_per_s"))
        log(f"  {model}: " + "; ".join(f"batch {r['batch']} {r['tokens_per_s']:,.1f} tok/s, step {r['step_s'] * 1e3:.2f} ms"
                                       for r in g["rows"]))
        out["rows"] += g.pop("rows")
        out["per_model"].append(g)
    out["bandwidth_source"] = ("per model, the best read: the ceilings' and one after each timed decode call, of a "
                               "matrix the size of the model's batch-1 step")
    for g in out["per_model"]:
        log(f"  {g['model']} roofline bandwidth {g['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s (best read of "
            f"{g['probe_bytes'] / 1e6:.0f} MB, {len(g['bandwidth_samples'])} samples, and the ceilings' read)")
    for r in out["rows"]:
        log(f"  {r['model']} batch {r['batch']}: {r['tokens_per_s']:,.1f} tok/s"
            + (f" vs transformers {r['baseline_tokens_per_s']:,.1f} ({r['ratio']:.2f}x)" if "ratio" in r else "")
            + f"; decode step {r['step_s'] * 1e3:.2f} ms = {r['roofline_fraction']:.0%} of the roofline "
              f"{r['roofline_step_s'] * 1e3:.2f} ms"
            + (f" ({r['copy_roofline_fraction']:.0%} of the copy ceiling's)" if r.get("copy_roofline_fraction") else "")
            + (f" (busy {r['busy_s'] * 1e3:.2f}, overhead {r['overhead_s'] * 1e3:.2f}, fastest step "
               f"{r['fastest_step_s'] * 1e3:.2f} ms)" if r.get("fastest_step_s") else ""))
    return out


def measure_generation(model: str, *, prompt_len: int, new_tokens: int, batches=(1, 8), repeats: int = 2,
                       with_baseline: bool = True, seed: int = 0, dtype: str = "float32", sample_bandwidth: bool = False,
                       profile: bool = True, layer_loop: str = "auto", transpose_head: bool | None = None) -> dict:
    """{"model", "dtype", "weight_bytes", "probe_bytes", "bandwidth_samples", "rows": [{"model", "batch",
    "tokens_per_s", "step_s", "bytes_per_token", "busy_s", "overhead_s", "baseline_tokens_per_s", "ratio",
    "prepare_s", "transposed_head", "huge_page_bytes" (of our weights: model/host_memory.py), ...}]}
    for each batch size; ``apply_roofline`` adds the roofline to the rows.

    ``dtype``: the compute dtype of both sides. ``sample_bandwidth``: after each of our timed calls, time
    ``PROBE_REPEATS`` reads of a float32 matrix of ``probe_bytes`` (a batch-1 step's bytes; benchmarks/ceilings.py
    ``read_probe``), so that the roofline's bandwidth is measured at the model's size and under the load the steps
    ran in (``bandwidth_samples``, bytes/s, the best of each sample's reads; empty without it). ``profile``: one more
    call per batch under jax.profiler for the busy/overhead split. ``layer_loop`` and ``transpose_head``: how
    ``prepare_weights`` lays the weights out (default: as ``generate`` would). Ours and the baseline alternate call
    by call (after one warm-up call each)."""
    import jax

    from benchmarks.baseline_torch import build_model, torch_available
    from benchmarks.ceilings import read_probe
    from model import gpt
    from model.config import get_config
    from model.generate import prepare_weights

    cfg = get_config(model)
    params = gpt.initial_params(cfg, seed)  # stays on the device: no host copy per call
    hf_model, baseline_error = None, None
    if with_baseline and torch_available():
        try:
            hf_model = _to_device(build_model(cfg, jax.tree.map(np.asarray, params)), dtype)
        except Exception as err:  # noqa: BLE001 - generation is still measured; the report says why theirs is not
            baseline_error = describe_error(err)
    sizes = decode_bytes(cfg, dtype, prompt_len, new_tokens)
    probe_bytes = int(step_bytes(sizes, 1))
    probe = read_probe(probe_bytes, jax.devices()[0]) if sample_bandwidth else None
    samples, rows = [], []
    for b in batches:  # laid out as generate() would for this batch (the head's layout depends on it), then freed
        weights = prepare_weights(cfg, params, dtype, layer_loop, transpose_head, batch=b)
        row = _measure_batch(cfg, weights, hf_model, b, prompt_len, new_tokens, repeats, sizes, profile,
                             lambda: samples.append(probe(PROBE_REPEATS)) if probe else None)
        rows.append({"model": model, **row, "prepare_s": weights.prepare_seconds, "layer_loop": weights.layer_loop,
                     "transposed_head": weights.transposed_head, "huge_page_bytes": weights.huge_page_bytes})
        del weights
    del params, probe
    out = {"model": model, "device_kind": str(jax.devices()[0].device_kind), "dtype": dtype,
           "weight_bytes": sizes["weights"], "probe_bytes": probe_bytes, "bandwidth_samples": samples, "rows": rows,
           "baseline": "transformers generate (use_cache=True, greedy)" if hf_model is not None else None}
    if baseline_error:
        out["baseline_error"] = baseline_error
    return out


def _measure_batch(cfg, weights, hf_model, b: int, prompt_len: int, new_tokens: int, repeats: int, sizes: dict,
                   profile: bool, sample) -> dict:
    """One batch size's row (see measure_generation)."""
    from benchmarks.baseline_torch import hf_generate
    from benchmarks.decode_profile import profile_split
    from model.generate import generate

    prompts = _prompts(cfg, b, prompt_len)
    call = lambda: generate(cfg, weights, prompts, new_tokens, eot_id=-1)  # noqa: E731
    first = call()  # compiles
    ours, theirs = [], []
    if hf_model is not None:
        hf_generate(hf_model, prompts, new_tokens)  # warm-up
    for _ in range(repeats):
        ours.append(call())
        sample()
        if hf_model is not None:
            theirs.append(hf_generate(hf_model, prompts, new_tokens))
    best = min(ours, key=lambda g: g.seconds)
    step = min(g.step_seconds for g in ours)
    row = {"batch": b, "prompt_len": prompt_len, "new_tokens": new_tokens,
           "generated": best.generated, "seconds": best.seconds, "tokens_per_s": best.tokens_per_s,
           "compile_s": first.compile_seconds, "prefill_s": min(g.prefill_seconds for g in ours), "step_s": step,
           "decode_steps": best.decode_steps, "weight_bytes": sizes["weights"], "kv_bytes_per_row": sizes["kv_per_row"],
           "bytes_per_token": step_bytes(sizes, b) / b}
    if theirs:
        seconds, generated = min(theirs)
        row.update(baseline_tokens_per_s=generated / seconds, baseline_seconds=seconds)
        row["ratio"] = row["tokens_per_s"] / row["baseline_tokens_per_s"]
    if profile:
        try:
            split = profile_split(call, lambda g: g.decode_steps)
        except Exception as err:  # noqa: BLE001 - the timing stands without the split
            split = {"error": describe_error(err)}
        row.update({f"profile_{k}" if k in ("step_s", "source", "error") else k: v for k, v in split.items()})
    return row


def apply_roofline(rows: list[dict], bandwidth: float, copy_bandwidth: float | None = None) -> None:
    """Add to each measured row its roofline at ``bandwidth`` bytes/s (see the module docstring): the fastest step
    (``roofline_step_s``), its tokens/s, the measured step's share of it (``roofline_fraction``) and the bandwidth
    itself; with ``copy_bandwidth`` (the copy ceiling, bytes/s) also ``copy_roofline_fraction``, the step against
    that figure."""
    for row in rows:
        per_step = row["bytes_per_token"] * row["batch"]
        row["bandwidth_bytes_per_s"] = bandwidth
        row["roofline_step_s"] = per_step / bandwidth
        row["roofline_tokens_per_s"] = row["batch"] / row["roofline_step_s"]
        row["roofline_fraction"] = row["roofline_step_s"] / row["step_s"] if row["step_s"] else None
        if row.get("fastest_step_s"):
            row["fastest_roofline_fraction"] = row["roofline_step_s"] / row["fastest_step_s"]
        if copy_bandwidth and row["step_s"]:
            row["copy_roofline_fraction"] = per_step / copy_bandwidth / row["step_s"]


def _to_device(hf_model, dtype: str):
    """transformers' model on the GPU in ``dtype`` when JAX runs on a GPU (same device for both sides); on CPU as
    built (float32), as the CPU comparison has always been."""
    import jax

    if jax.default_backend() != "gpu":
        return hf_model
    import torch

    return hf_model.to("cuda", getattr(torch, dtype))

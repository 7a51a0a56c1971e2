"""KV-cache decode speed of model/generate.py against ``transformers``' ``generate`` on the same model and device,
and against the memory-bandwidth roofline.

Both sides get the same weights, the same random prompt ids, greedy decoding and exactly ``new_tokens`` new tokens
per row (ours with an end-of-text id that never occurs, theirs with ``min_new_tokens``), and both are timed from
prompt to last token (prefill included), best of ``repeats`` calls after a warm-up; ours excludes its one-off
compile, which is reported separately. The two alternate call by call, so that on a shared machine both see the
same load. Both decode in the bench's compute dtype: ours casts the weights once per call (model/generate.py);
on a GPU transformers' model is moved to the GPU in that dtype, as a user would for inference.

Roofline. A decode step reads every weight once, whatever the batch, so the fastest a batch of b can go is
b x (device copy bandwidth / bytes of the weights in the compute dtype) tokens/s (parameters x itemsize; the KV
cache and activations are left out, which makes it an upper bound, tightest at batch 1). The bandwidth is the
bench's measured copy ceiling (benchmarks/ceilings.py); ``roofline_fraction`` is the measured tokens/s over it.
"""

from __future__ import annotations

import numpy as np

from model.errors import describe_error


def _prompts(cfg, batch: int, prompt_len: int) -> list[list[int]]:
    return np.random.default_rng(1).integers(0, cfg.vocab_size, size=(batch, prompt_len)).tolist()


def measure_generation(model: str, *, prompt_len: int, new_tokens: int, batches=(1, 8), repeats: int = 2,
                       with_baseline: bool = True, seed: int = 0, dtype: str = "float32",
                       bandwidth: float | None = None) -> dict:
    """{"model", "dtype", "weight_bytes", "rows": [{"batch", "tokens_per_s", "baseline_tokens_per_s", "ratio",
    "roofline_tokens_per_s", "roofline_fraction", ...}]} for each batch size.

    ``dtype``: the compute dtype of both sides. ``bandwidth``: the device's copy bandwidth in bytes/s for the roofline
    (None: no roofline). Ours and the baseline alternate call by call (after one warm-up call each), so both see the
    same machine load."""
    import jax
    import jax.numpy as jnp

    from benchmarks.baseline_torch import build_model, hf_generate, torch_available
    from model import gpt
    from model.config import get_config
    from model.generate import generate

    cfg = get_config(model)
    params = gpt.initial_params(cfg, seed)  # stays on the device: no host copy per call
    weight_bytes = cfg.parameters * jnp.dtype(dtype).itemsize
    hf_model, baseline_error = None, None
    if with_baseline and torch_available():
        try:
            hf_model = _to_device(build_model(cfg, jax.tree.map(np.asarray, params)), dtype)
        except Exception as err:  # noqa: BLE001 - generation is still measured; the report says why theirs is not
            baseline_error = describe_error(err)
    rows = []
    for b in batches:
        prompts = _prompts(cfg, b, prompt_len)
        first = generate(cfg, params, prompts, new_tokens, eot_id=-1, dtype=jnp.dtype(dtype))  # compiles
        ours, theirs = [], []
        if hf_model is not None:
            hf_generate(hf_model, prompts, new_tokens)  # warm-up
        for _ in range(repeats):
            ours.append(generate(cfg, params, prompts, new_tokens, eot_id=-1, dtype=jnp.dtype(dtype)))
            if hf_model is not None:
                theirs.append(hf_generate(hf_model, prompts, new_tokens))
        best = min(ours, key=lambda g: g.seconds)
        row = {"batch": b, "prompt_len": prompt_len, "new_tokens": new_tokens, "generated": best.generated,
               "seconds": best.seconds, "tokens_per_s": best.tokens_per_s, "compile_s": first.compile_seconds}
        if theirs:
            seconds, generated = min(theirs)
            row["baseline_tokens_per_s"] = generated / seconds
            row["baseline_seconds"] = seconds
            row["ratio"] = row["tokens_per_s"] / row["baseline_tokens_per_s"]
        if bandwidth:
            row["roofline_tokens_per_s"] = b * bandwidth / weight_bytes
            row["roofline_fraction"] = row["tokens_per_s"] / row["roofline_tokens_per_s"]
        rows.append(row)
    out = {"model": model, "device": str(jax.devices()[0].device_kind), "dtype": str(jnp.dtype(dtype)),
           "weight_bytes": weight_bytes, "bandwidth_bytes_per_s": bandwidth, "rows": rows,
           "baseline": "transformers generate (use_cache=True, greedy)" if hf_model is not None else None}
    if baseline_error:
        out["baseline_error"] = baseline_error
    return out


def _to_device(hf_model, dtype: str):
    """transformers' model on the GPU in ``dtype`` when JAX runs on a GPU (same device for both sides); on CPU as
    built (float32), as the CPU comparison has always been."""
    import jax

    if jax.default_backend() != "gpu":
        return hf_model
    import torch

    return hf_model.to("cuda", getattr(torch, dtype))

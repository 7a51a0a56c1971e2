"""KV-cache decode speed of model/generate.py against ``transformers``' ``generate`` on the same model and device.

Both sides get the same weights, the same random prompt ids, greedy decoding and exactly ``new_tokens`` new tokens
per row (ours with an end-of-text id that never occurs, theirs with ``min_new_tokens``), and both are timed from
prompt to last token (prefill included), best of ``repeats`` calls after a warm-up; ours excludes its one-off
compile, which is reported separately. The two alternate call by call, so that on a shared machine both see the
same load.
"""

from __future__ import annotations

import numpy as np


def _prompts(cfg, batch: int, prompt_len: int) -> list[list[int]]:
    return np.random.default_rng(1).integers(0, cfg.vocab_size, size=(batch, prompt_len)).tolist()


def measure_generation(model: str, *, prompt_len: int, new_tokens: int, batches=(1, 8), repeats: int = 2,
                       with_baseline: bool = True, seed: int = 0) -> dict:
    """{"model", "rows": [{"batch", "tokens_per_s", "baseline_tokens_per_s", "ratio", ...}]} for each batch size.

    Ours and the baseline alternate call by call (after one warm-up call each), so both see the same machine load."""
    import jax

    from benchmarks.baseline_torch import build_model, hf_generate, torch_available
    from model import gpt
    from model.config import get_config
    from model.generate import generate

    cfg = get_config(model)
    params = jax.tree.map(np.asarray, gpt.init_params(cfg, jax.random.key(seed)))
    hf_model = build_model(cfg, params) if with_baseline and torch_available() else None
    rows = []
    for b in batches:
        prompts = _prompts(cfg, b, prompt_len)
        first = generate(cfg, params, prompts, new_tokens, eot_id=-1)  # compiles
        ours, theirs = [], []
        if hf_model is not None:
            hf_generate(hf_model, prompts, new_tokens)  # warm-up
        for _ in range(repeats):
            ours.append(generate(cfg, params, prompts, new_tokens, eot_id=-1))
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
        rows.append(row)
    return {"model": model, "device": str(jax.devices()[0].device_kind), "rows": rows,
            "baseline": "transformers generate (use_cache=True, greedy)" if hf_model is not None else None}

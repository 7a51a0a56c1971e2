"""Issue 6's targets (and issue 10's GPU ones), evaluated on a bench result: each with its measured value, met or
not, and why.

The targets are measured, never asserted in tests: a slow or shared machine misses them honestly, and the report
says so. A target whose measurement is absent (no GPU, a skipped section, a failed row) is ``met: None`` with the
reason.
"""

from __future__ import annotations

# The thresholds, as issue 6 states them.
MFU_111M_DATA = 0.50
PREDICTION_BAND = {"data": (0.75, 1.33), "pipelined": (0.65, 1.5), "streaming": (0.65, 1.5)}
# Issue 11: one cost model for every row on CPU, and for data and streaming on a GPU.
PREDICTION_BAND_ONE_MODEL = {"cpu": ((0.75, 1.33), ("data", "pipelined", "streaming")),
                             "gpu": ((0.8, 1.25), ("data", "streaming"))}
OVERHEAD_MARGIN = 0.20
GPU_MFU_1_3B = 0.45
GPU_STREAMING_MEMORY_FRACTION = 0.40
# Issue 10, on a GPU: tokens/s over torch.compile's, MFU (6N) over the device's nominal bf16 peak, and our device
# memory at most PyTorch eager's.
GPU_OVER_TORCH_COMPILE = 1.2
GPU_MFU_NOMINAL = 0.50
# Issue 29: the batch-1 decode step against the bandwidth roofline (benchmarks/generation.py): on CPU for small and
# 111M in float32, on a GPU for 1.3B in bfloat16.
CPU_DECODE_ROOFLINE = 0.70
CPU_DECODE_MODELS = ("small", "111M")
GPU_GENERATION_ROOFLINE = 0.65


def _target(name: str, value, met, note: str) -> dict:
    return {"target": name, "value": value, "met": met, "note": note}


def evaluate_targets(result: dict) -> list[dict]:
    """Every target on ``result`` (a run_bench result), one ``{target, value, met, note}`` each, in issue 6's
    order: the PyTorch baseline, 111M MFU, pipelined/streaming overhead, prediction error, generation, then the GPU
    targets."""
    runs = [r for r in result.get("runs", []) if r.get("step_time_s")]
    base = result.get("baseline") or {}
    return (baseline_targets(base) + mfu_target(result, runs) + overhead_targets(runs) + prediction_targets(runs)
            + one_model_targets(result.get("platform"), runs)
            + generation_target(result.get("generation") or {})
            + decode_roofline_targets(result.get("platform"), result.get("generation") or {})
            + gpu_targets(result, runs, base))


def baseline_targets(base: dict) -> list[dict]:
    """1. tokens/s >= the in-process PyTorch baseline (data mode, same shape), per model; ``value`` is ours over
    torch. The GPU baseline (child processes) is judged by ``gpu_targets``."""
    out = []
    for b in ([] if base.get("subprocess") else base.get("rows", [])):
        if b.get("ratio") is None:
            out.append(_target(f"{b['model']}: tokens/s >= PyTorch+transformers", None, None,
                               b.get("error", "no data-mode row to compare")))
            continue
        out.append(_target(f"{b['model']}: tokens/s >= PyTorch+transformers", round(b["ratio"], 3), b["ratio"] >= 1.0,
                           f"ours {b['ours_data_tokens_per_s']:,.0f} vs torch {b['tokens_per_s']:,.0f} tokens/s "
                           f"(batch {b['batch_size']} x {b['seq_len']})"))
    if not base.get("available", False):
        out.append(_target("tokens/s >= PyTorch+transformers", None, None, base.get("reason", "baseline not run")))
    return out


def mfu_target(result: dict, runs: list[dict]) -> list[dict]:
    """2. MFU (6N) of data mode at 111M >= 50% of the measured peak."""
    r111 = next((r for r in runs if r["model"] == "111M" and r["mode"] == "data"), None)
    if not r111:
        return [_target("111M data-mode MFU (6N) >= 50%", None, None, "111M not run (skipped by --quick or failed)")]
    return [_target("111M data-mode MFU (6N) >= 50%", round(r111["mfu"], 4), r111["mfu"] >= MFU_111M_DATA,
                    f"{r111['model_flops_6n'] / 1e9:,.1f} GFLOP/s of {result['peak_matmul_flops'] / 1e9:,.1f} "
                    f"measured; remat={r111['remat']}, batch {r111['batch_size']} x {r111['seq_len']}")]


def overhead_targets(runs: list[dict]) -> list[dict]:
    """3. Pipelined/streaming overhead against data mode (a share of the step) <= predicted bubble + 20%."""
    out = []
    for r in runs:
        v = r.get("vs_data")
        if r["mode"] == "data" or not v:
            continue
        ok = v["overhead_fraction"] <= v["allowed_overhead"]
        out.append(_target(f"{r['model']} {r['mode']}: overhead vs data <= bubble + 20%",
                           round(v["overhead_fraction"], 3), ok,
                           f"step {v['step_time_ratio']:.2f}x data's; bubble {v['predicted_bubble']:.2f} -> allowed "
                           f"{v['allowed_overhead']:.2f}"))
    return out


def prediction_targets(runs: list[dict]) -> list[dict]:
    """4. Predicted over measured step time within the mode's band (PREDICTION_BAND)."""
    out = []
    for r in runs:
        lo, hi = PREDICTION_BAND.get(r["mode"], (0.65, 1.5))
        ratio = r.get("predicted_over_measured")
        if ratio is None:
            continue
        out.append(_target(f"{r['model']} {r['mode']}: predicted/measured in [{lo}, {hi}]", round(ratio, 3),
                           lo <= ratio <= hi,
                           f"predicted {r['predicted_step_time_s']:.3f}s, measured {r['step_time_s']:.3f}s"))
    return out


def one_model_targets(platform: str | None, runs: list[dict]) -> list[dict]:
    """Issue 11: predicted over measured step time within PREDICTION_BAND_ONE_MODEL's band for the platform's rows."""
    if platform not in PREDICTION_BAND_ONE_MODEL:
        return []
    (lo, hi), modes = PREDICTION_BAND_ONE_MODEL[platform]
    return [_target(f"{r['model']} {r['mode']}: predicted/measured in [{lo}, {hi}] on {platform} (issue 11)",
                    round(r["predicted_over_measured"], 3), lo <= r["predicted_over_measured"] <= hi,
                    f"predicted {r['predicted_step_time_s']:.3f}s, measured {r['step_time_s']:.3f}s")
            for r in runs if r["mode"] in modes and r.get("predicted_over_measured") is not None]


def generation_target(gen: dict) -> list[dict]:
    """5. Generation tokens/s at batch 1 >= transformers', per model decoded."""
    out = []
    for row1 in (g for g in gen.get("rows", []) if g["batch"] == 1):
        name = f"{row1['model']} generation batch 1 >= transformers"
        if "ratio" in row1:
            out.append(_target(name, round(row1["ratio"], 3), row1["ratio"] >= 1.0,
                               f"{row1['tokens_per_s']:,.1f} vs {row1['baseline_tokens_per_s']:,.1f} tokens/s"))
        else:
            out.append(_target(name, None, None, "transformers baseline not run"))
    return out or [_target("generation batch 1 >= transformers", None, None,
                           gen.get("error", "generation or its baseline not run"))]


def decode_roofline_targets(platform: str | None, gen: dict) -> list[dict]:
    """Issue 29 on CPU: the batch-1 float32 decode step of each of CPU_DECODE_MODELS >= CPU_DECODE_ROOFLINE of the
    bandwidth roofline. (The GPU's is in ``_gpu_issue10``.)"""
    if platform != "cpu":
        return []
    out = []
    for model in CPU_DECODE_MODELS:
        name = f"{model} batch-1 decode >= {CPU_DECODE_ROOFLINE:.0%} of the CPU bandwidth roofline (issue 29)"
        row = next((g for g in gen.get("rows", []) if g["model"] == model and g["batch"] == 1), None)
        if row is None or not row.get("roofline_fraction") or gen.get("dtype") != "float32":
            out.append(_target(name, None, None, f"not measured: needs --gen-model {model} in float32"))
            continue
        out.append(_target(name, round(row["roofline_fraction"], 3), row["roofline_fraction"] >= CPU_DECODE_ROOFLINE,
                           f"step {row['step_s'] * 1e3:.2f} ms against {row['roofline_step_s'] * 1e3:.2f} ms "
                           f"({row['bytes_per_token'] / 1e6:.1f} MB at "
                           f"{row['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s)"))
    return out


def gpu_targets(result: dict, runs: list[dict], base: dict) -> list[dict]:
    """6. On a GPU: 1.3B bf16 data-mode MFU >= 45%, streaming device memory < 40% of data mode's, and issue 10's
    (``_gpu_issue10``). Elsewhere one n/a row that names them."""
    if result.get("platform") != "gpu":
        return [_target("GPU: 1.3B bf16 MFU >= 45% (and >= 50% of nominal); streaming memory < 40% of data; "
                        "tokens/s >= 1.2 x torch.compile; memory <= torch eager; 1.3B batch-1 decode >= "
                        f"{GPU_GENERATION_ROOFLINE:.0%} of the bandwidth roofline", None, None,
                        f"no GPU on this machine ({result.get('device')})")]
    r13 = next((r for r in runs if r["model"] == "1.3B" and r["mode"] == "data"), None)
    s13 = next((r for r in runs if r["model"] == "1.3B" and r["mode"] == "streaming"), None)
    out = [_target("GPU: 1.3B bf16 data-mode MFU >= 45%", r13 and round(r13["mfu"], 4),
                   None if not r13 else r13["mfu"] >= GPU_MFU_1_3B, "needs --models 1.3B on the GPU")]
    if r13 and s13:
        frac = _device_bytes(s13) / _device_bytes(r13)
        out.append(_target("GPU: streaming device memory < 40% of data mode's", round(frac, 3),
                           frac < GPU_STREAMING_MEMORY_FRACTION, "XLA memory_analysis peak estimate per device"))
    return out + _gpu_issue10(result, runs, base)


def _gpu_issue10(result: dict, runs: list[dict], base: dict) -> list[dict]:
    """Issue 10's GPU targets: per model, tokens/s >= 1.2 x torch.compile's and data mode's device memory <= torch
    eager's peak; at 1.3B, data-mode MFU (6N) >= 50% of the nominal bf16 peak."""
    out = []
    models = list(dict.fromkeys([b["model"] for b in base.get("rows", [])] + [r["model"] for r in runs]))
    for model in models:
        data = next((r for r in runs if r["model"] == model and r["mode"] == "data"), None)
        compiled = _baseline(base, model, "compile")
        name = f"GPU: {model} tokens/s >= {GPU_OVER_TORCH_COMPILE} x torch.compile"
        if data and compiled:
            ratio = data["tokens_per_s"] / compiled["tokens_per_s"]
            out.append(_target(name, round(ratio, 3), ratio >= GPU_OVER_TORCH_COMPILE,
                               f"ours {data['tokens_per_s']:,.0f} vs torch.compile {compiled['tokens_per_s']:,.0f} "
                               f"tokens/s (batch {data['batch_size']} x {data['seq_len']})"))
        else:
            out.append(_target(name, None, None, "not measured: " + _missing(data, base, model, "compile")))
        eager = _baseline(base, model, "eager")
        name = f"GPU: {model} device memory <= torch eager's peak"
        ours = _device_bytes(data) if data else float("nan")
        if data and eager and eager.get("peak_memory_bytes") and ours == ours:
            frac = ours / eager["peak_memory_bytes"]
            out.append(_target(name, round(frac, 3), frac <= 1.0,
                               f"ours {ours / 1e9:.1f} GB (XLA peak estimate per device, data mode) vs torch eager "
                               f"{eager['peak_memory_bytes'] / 1e9:.1f} GB (max_memory_allocated)"))
        else:
            out.append(_target(name, None, None, "not measured: " + _missing(data, base, model, "eager")))
    r13 = next((r for r in runs if r["model"] == "1.3B" and r["mode"] == "data"), None)
    nominal = nominal_bf16_flops(result.get("device") or "")
    name = f"GPU: 1.3B data-mode MFU (6N) >= {GPU_MFU_NOMINAL:.0%} of nominal bf16 peak"
    if r13 and nominal:
        peak = nominal * result.get("devices", 1)
        mfu = r13["model_flops_6n"] / peak
        out.append(_target(name, round(mfu, 4), mfu >= GPU_MFU_NOMINAL,
                           f"{r13['model_flops_6n'] / 1e12:,.1f} TFLOP/s of {peak / 1e12:,.0f} nominal "
                           f"({result.get('devices', 1)} x {result.get('device')})"))
    else:
        out.append(_target(name, None, None, "not measured: " + (
            "needs --models 1.3B on the GPU" if not r13 else f"no nominal bf16 peak known for {result.get('device')}")))
    gen = result.get("generation") or {}
    one = next((g for g in gen.get("rows", []) if g.get("model") == "1.3B" and g.get("batch") == 1), None)
    name = f"GPU: 1.3B batch-1 decode >= {GPU_GENERATION_ROOFLINE:.0%} of the bandwidth roofline (issue 29)"
    if one and one.get("roofline_fraction"):
        out.append(_target(name, round(one["roofline_fraction"], 3), one["roofline_fraction"] >= GPU_GENERATION_ROOFLINE,
                           f"step {one['step_s'] * 1e3:.3f} ms against {one['roofline_step_s'] * 1e3:.3f} ms "
                           f"({gen.get('dtype')}, "
                           f"{one['bandwidth_bytes_per_s'] / 1e9:,.0f} GB/s measured)"))
    else:
        out.append(_target(name, None, None, "not measured: needs --gen-model 1.3B on the GPU"))
    return out


def nominal_bf16_flops(device: str) -> float | None:
    """The datasheet dense bf16 FLOP/s of a GPU named ``device`` (e.g. "NVIDIA H200"; runtime.train.NOMINAL_PEAK),
    or None if not listed."""
    from runtime.train import nominal_peak

    known = nominal_peak(device, "bfloat16")
    return known[1] if known else None


def _baseline(base: dict, model: str, variant: str) -> dict | None:
    return next((b for b in base.get("rows", []) if b.get("model") == model and b.get("variant") == variant
                 and b.get("tokens_per_s")), None)


def _missing(data, base: dict, model: str, variant: str) -> str:
    if not data:
        return f"no data-mode row for {model}"
    failed = next((b for b in base.get("rows", []) if b.get("model") == model and b.get("variant") == variant), None)
    return (failed or {}).get("error") or base.get("reason") or f"no torch {variant} row"


def _device_bytes(row: dict) -> float:
    m = row.get("memory") or {}
    return float(m.get("peak_estimate") or m.get("peak_memory") or 0) or float("nan")

"""`wse bench` as a library: run every measurement in order and return one JSON-able dict.

Order matters: the device ceilings come first (they are the denominators of MFU and the cells of the prediction
grid); then the training rows, each model's modes and its PyTorch baseline interleaved step by step; the ceilings
once more (the better reading of the two is kept, and MFU and the predictions are computed against it); generation;
planner speed; and optionally the scaling study. A row that fails (a mode that cannot run a preset on this mesh,
memory) is kept with its ``error`` so the report says what is missing instead of silently dropping it.

Devices. On CPU the default mesh has one emulated device per host core (``cpu_default_devices``), on an accelerator
every device; each mode's axes come from ``training.mode_axes``.

GPU baseline. On a GPU the PyTorch baseline (eager and torch.compile, baseline_torch.py) runs in child processes
*before* JAX starts: JAX preallocates 75% of the device memory on its first use and keeps it until its process ends,
so a baseline measured afterwards would get the remaining quarter (the 1.3B shape at batch 8 x 2048 needs about
60 GB in eager PyTorch). Its rows are joined to our data-mode rows after those have run.

Sizes. ``full`` is what the closing note quotes; ``quick`` is sized to finish in under 3 minutes on 2 CPU cores:
batch 8 x 128 tokens, 2 timed steps, the ``tiny`` and ``small`` presets only (``111M`` is skipped: one of its
training steps alone takes tens of seconds on 2 cores, and its compile another ten per mode), generation on ``small``
with 32 new tokens. On an accelerator the same sizes apply unless ``--models``/``--batch-size``/``--seq-len`` say
otherwise.
"""

from __future__ import annotations

import os
import platform as _platform
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone

MODES = ("data", "pipelined", "streaming")
SCALING_DEVICES = (1, 2, 4, 8)


@dataclass
class Sizes:
    models: tuple[str, ...]
    batch_size: dict[str, int]
    seq_len: dict[str, int]
    steps: int
    warmup: int
    gen_model: str
    gen_prompt: int
    gen_new_tokens: int
    gen_repeats: int
    scaling_model: str = "small"
    scaling_batch: int = 16
    scaling_seq: int = 128


QUICK = Sizes(models=("tiny", "small"), batch_size={"tiny": 8, "small": 8}, seq_len={"tiny": 128, "small": 128},
              steps=2, warmup=1, gen_model="small", gen_prompt=16, gen_new_tokens=32, gen_repeats=1,
              scaling_batch=8)
FULL = Sizes(models=("tiny", "small", "111M"), batch_size={"tiny": 16, "small": 16, "111M": 8},
             seq_len={"tiny": 128, "small": 128, "111M": 256}, steps=3, warmup=1, gen_model="111M", gen_prompt=32,
             gen_new_tokens=64, gen_repeats=2)


def environment(platform: str, n_devices: int) -> dict:
    import jax

    from benchmarks.ceilings import describe_device

    devs = jax.devices()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "wse " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("wse") else " ".join(sys.argv),
        "host": _platform.node(), "python": _platform.python_version(), "jax": jax.__version__,
        "backend": jax.default_backend(), "device": describe_device(devs[0]), "devices": n_devices,
        "host_cores": len(os.sched_getaffinity(0)), "load_average_start": os.getloadavg(),
    }


def _cpu_seconds() -> float:
    """CPU time (user + system) this process has used: with the wall time it tells how much of the machine the run
    got, which on a shared machine is what separates a slow run from a slow program."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _time(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def _error(err: BaseException) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}"[:300]


def training_rows(sizes: Sizes, modes, n_devices: int, platform: str, dtype: str, remat: str, ceilings: dict,
                  peak: float, log, *, baseline: bool = True, interleave: bool = True,
                  torch_gpu: dict | None = None, attention: str = "auto") -> tuple[list[dict], dict]:
    """(rows, baseline): every mode of every model, and the PyTorch baseline of each model.

    On platform gpu the baseline is one row per variant (eager, compile) from child processes: ``torch_gpu``
    ({model: rows}, measured by ``gpu_baseline_rows`` before JAX took the device) or, for a model it lacks, measured
    here after that model's runs are freed; either way each row gets our data-mode tokens/s and the ratio.

    With ``interleave`` a model's runs (its modes and its baseline) are all compiled first and then stepped round
    by round, one step of each per round, so that load drifting over the minutes of a run hits them alike; without
    it, or when they would not fit in memory together (``fits_together``), each run is compiled, stepped and freed
    in turn."""
    from benchmarks.baseline_torch import TorchRun, torch_available
    from benchmarks.training import TrainingRun, mode_axes
    from model.config import get_config
    from runtime.execution.placement import device_memory_bytes
    from runtime.mesh import build_mesh

    gpu_torch = baseline and platform == "gpu"
    has_torch = baseline and not gpu_torch and torch_available()  # in-process PyTorch: the CPU baseline
    rows, base_rows = [], []
    for model in sizes.models:
        cfg = get_config(model)
        B, T = sizes.batch_size[model], min(sizes.seq_len[model], cfg.max_seq_len)
        runs: list[tuple[str, object]] = []  # (mode or "torch", run)
        failed: dict[str, dict] = {}

        def make(mode):
            if mode == "torch":
                return TorchRun(cfg, batch_size=B, seq_len=T)
            mesh = build_mesh(platform, n_devices, mode_axes(mode, n_devices, cfg.n_layers))
            run = TrainingRun(model, mode, mesh, batch_size=B, seq_len=T, dtype=dtype, remat=remat, attention=attention,
                              total_steps=sizes.warmup + sizes.steps + 1)
            run.info["device_memory_bytes"] = device_memory_bytes(mesh)
            return run

        def attempt(mode, fn) -> bool:
            try:
                fn()
                return True
            except Exception as err:  # noqa: BLE001 - keep the row and say why it is missing
                failed[mode] = {"error": _error(err)}
                log(f"  {model} {mode}: FAILED {failed[mode]['error']}")
                if os.environ.get("WSE_BENCH_DEBUG"):
                    traceback.print_exc()
                return False

        def start(mode):
            runs.append((mode, make(mode)))

        names = list(modes) + (["torch"] if has_torch else [])
        together = interleave and fits_together(cfg, B, T, len(names), platform)
        if interleave and not together:
            log(f"  {model}: {len(names)} runs at once would not fit in memory; running them one after another")
        if together:
            for mode in names:
                attempt(mode, lambda: start(mode))
            for _ in range(sizes.warmup):
                runs = [(m, r) for m, r in runs if attempt(m, lambda: r.step(timed=False))]
            for _ in range(sizes.steps):
                runs = [(m, r) for m, r in runs if attempt(m, lambda: r.step())]
        else:
            for mode in names:
                if not attempt(mode, lambda: start(mode)):
                    continue
                run = runs[-1][1]
                if not attempt(mode, lambda: [run.step(timed=i >= sizes.warmup)
                                              for i in range(sizes.warmup + sizes.steps)]):
                    runs.pop()
                elif mode != "torch":  # keep only the summary; the next run needs the memory
                    summary = run.row(peak)
                    run.close()
                    runs[-1] = (mode, _Done(summary))

        done = dict(runs)
        data_step = None
        for mode in modes:
            if mode in done:
                run = done[mode]
                row = run.row(peak)
                run.close()
                _predict(row, ceilings, peak)
                # provisional: MFU and the prediction are recomputed against the better of the two ceiling readings
                log(f"  {model:>5} {mode:<9} step {row['step_time_s']:.3f}s  {row['tokens_per_s']:,.0f} tok/s  "
                    f"compile {row['compile_s']:.1f}s  (provisional, vs the first ceiling reading: MFU {row['mfu']:.1%}, "
                    f"predicted/measured {row['predicted_over_measured']:.2f})")
            else:
                row = {"model": model, "mode": mode, "mesh": mode_axes(mode, n_devices, cfg.n_layers),
                       "devices": n_devices, "batch_size": B, "seq_len": T, "tokens_per_s": None, "mfu": None,
                       "step_time_s": None, "predicted_step_time_s": None, "memory": None,
                       "error": failed.get(mode, {}).get("error", "not run")}
            if mode == "data" and row.get("step_time_s"):
                data_step = row["step_time_s"]
            rows.append(row)
        for row in rows[-len(modes):]:
            if row["mode"] != "data" and row.get("step_time_s") and data_step:
                bubble = (row.get("plan") or {}).get("bubble_fraction") or 0.0
                row["vs_data"] = {
                    "step_time_ratio": row["step_time_s"] / data_step,
                    "overhead_fraction": 1.0 - data_step / row["step_time_s"],
                    "predicted_bubble": bubble,
                    "allowed_overhead": bubble + 0.2,
                }
        ours = data_step and B * T / data_step
        data_row = next((r for r in rows[-len(modes):] if r["mode"] == "data" and r.get("step_time_s")), None)
        ours_mem = ((data_row or {}).get("memory") or {}).get("peak_estimate")
        if has_torch:
            if "torch" in done:
                b = done["torch"].row()
                done["torch"].close()
                b["ours_data_tokens_per_s"] = ours or None
                b["ratio"] = ours / b["tokens_per_s"] if ours else None
                b["ours_data_peak_memory_bytes"] = ours_mem
                log(f"  {model:>5} torch     {b['tokens_per_s']:,.0f} tok/s  ours (data) / torch "
                    f"{b['ratio'] if b['ratio'] is not None else float('nan'):.2f}")
            else:
                b = {"model": model, "batch_size": B, "seq_len": T, "error": failed.get("torch", {}).get("error")}
            base_rows.append(b)
        if gpu_torch:
            measured = (torch_gpu or {}).get(model) or gpu_baseline_rows(model, B, T, sizes, dtype, log)
            for b in measured:
                b = dict(b)
                if b.get("tokens_per_s"):
                    b["ours_data_tokens_per_s"] = ours or None
                    b["ratio"] = ours / b["tokens_per_s"] if ours else None
                    b["ours_data_peak_memory_bytes"] = ours_mem
                    log(f"  {model:>5} torch {b['variant']:<7} {b['tokens_per_s']:,.0f} tok/s  ours (data) / torch "
                        f"{b['ratio'] if b['ratio'] is not None else float('nan'):.2f}")
                base_rows.append(b)
    if gpu_torch:
        ok = [b for b in base_rows if b.get("tokens_per_s")]
        baseline_result = {"available": bool(ok), "interleaved": False, "subprocess": True, "rows": base_rows}
        if not ok:
            baseline_result["reason"] = next((b["error"] for b in base_rows if b.get("error")), "no baseline row")
    elif has_torch:
        baseline_result = {"available": True, "interleaved": interleave, "rows": base_rows}
    elif baseline:
        baseline_result = {"available": False, "reason": "torch/transformers not installed", "rows": []}
    else:
        baseline_result = {"available": False, "reason": "skipped (--no-baseline)", "rows": []}
    return rows, baseline_result


def gpu_baseline_rows(model: str, batch: int, seq_len: int, sizes: Sizes, dtype: str, log) -> list[dict]:
    """The GPU PyTorch baseline of ``model`` at ``batch`` x ``seq_len``: one row per variant (eager, compile), each
    measured in its own child process, one after the other (baseline_torch.run_in_subprocess)."""
    from benchmarks.baseline_torch import VARIANTS, run_in_subprocess

    rows = []
    for variant in VARIANTS:
        row = run_in_subprocess(model, batch_size=batch, seq_len=seq_len, steps=sizes.steps, warmup=sizes.warmup,
                                dtype=dtype, variant=variant)
        if row.get("error"):
            log(f"  {model:>5} torch {variant:<7} FAILED {row['error']}")
        else:
            compile_s = f", compile {row['compile_s']:.1f}s" if row.get("compile_s") is not None else ""
            log(f"  {model:>5} torch {variant:<7} {row['tokens_per_s']:,.0f} tok/s  peak device memory "
                f"{row['peak_memory_bytes'] / 1e9:.1f} GB{compile_s}")
        rows.append(row)
    return rows


def _gpu_expected(platform: str) -> bool:
    """Whether the bench will run on a GPU, decided without starting JAX (which would take the device memory):
    asked for, or ``auto`` with an NVIDIA device node present."""
    import glob

    return platform == "gpu" or (platform == "auto" and bool(glob.glob("/dev/nvidia[0-9]*")))


# Bytes one training run of a model holds, for deciding whether a model's runs fit in memory at once: 24 per parameter
# (float32 weights, gradients, two Adam moments, and one more copy for the host side of streaming or the baseline's
# model) plus 16 per logit (the float32 [tokens, vocab] logits, their gradient and the softmax temporaries).
RUN_BYTES_PER_PARAM = 24
RUN_BYTES_PER_LOGIT = 16
# Fraction of the available memory a model's runs may take together (the rest is XLA's workspace and other work).
TOGETHER_FRACTION = 0.5


def available_memory_bytes(platform: str) -> int:
    """Memory free for the runs: MemAvailable on CPU, the first device's limit minus use on an accelerator."""
    if platform == "cpu":
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    import jax

    stats = jax.devices(platform)[0].memory_stats() or {}
    return int(stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0))


def fits_together(cfg, batch: int, seq_len: int, n_runs: int, platform: str) -> bool:
    """Whether ``n_runs`` training runs of ``cfg`` fit in memory at the same time (see RUN_BYTES_PER_*)."""
    per_run = RUN_BYTES_PER_PARAM * cfg.parameters + RUN_BYTES_PER_LOGIT * batch * seq_len * cfg.vocab_size
    return n_runs * per_run <= TOGETHER_FRACTION * available_memory_bytes(platform)


class _Done:
    """A finished run whose summary is all that is kept (sequential mode)."""

    def __init__(self, summary: dict):
        self.summary = summary

    def row(self, peak: float) -> dict:
        return dict(self.summary)

    def close(self) -> None:
        pass


def _predict(row: dict, ceilings: dict, peak: float) -> None:
    """(Re)compute a row's MFU against ``peak`` and its prediction from ``ceilings``."""
    from benchmarks.predict import predict

    row["mfu"] = row["model_flops_6n"] / peak
    row["mfu_algorithmic"] = row["model_flops_algorithmic"] / peak
    pred = predict(row, ceilings, row["device_memory_bytes"])
    row["predicted_step_time_s"] = pred["predicted_step_time_s"]
    row["predicted_over_measured"] = pred["ratio"]
    row["prediction"] = pred


def settle_ceilings(start: dict, end: dict) -> dict:
    """The ceilings measured before and after the training rows, merged by taking the better of each figure (a
    ceiling is what the device can do; on a shared machine a low reading is other work, not the device)."""
    merged = {**start, "matmul_flops": {k: max(v, end["matmul_flops"][k]) for k, v in start["matmul_flops"].items()},
              "copy_bytes_per_s": max(start["copy_bytes_per_s"], end["copy_bytes_per_s"])}
    share = start["shared_by_devices"]
    merged["per_device"] = {"matmul_flops": {k: v / share for k, v in merged["matmul_flops"].items()},
                            "copy_bytes_per_s": merged["copy_bytes_per_s"] / share}
    merged["readings"] = {"before_training": {"matmul_flops": start["matmul_flops"],
                                              "copy_bytes_per_s": start["copy_bytes_per_s"]},
                          "after_training": {"matmul_flops": end["matmul_flops"],
                                             "copy_bytes_per_s": end["copy_bytes_per_s"]}}
    merged["method"] = start["method"] + "; the better of a reading before and one after the training rows"
    return merged


def run_bench(*, quick: bool = False, devices: int | None = None, platform: str = "auto", dtype: str | None = None,
              remat: str = "auto", attention: str = "auto", models=None, modes=MODES, batch_size: int | None = None,
              seq_len: int | None = None,
              steps: int | None = None, scaling: bool = False, baseline: bool = True, generation: bool = True,
              planner: bool = True, gen_model: str | None = None, interleave: bool = True, log=None) -> dict:
    """Every measurement of `wse bench`; see the module docstring. ``log`` receives progress lines. ``remat`` "auto"
    leaves the remat policy to each run's plan (as `wse train` does); a policy name forces it on every run.
    ``attention`` likewise (auto, xla, cudnn)."""
    log = log or (lambda line: None)
    started, cpu0 = time.perf_counter(), _cpu_seconds()
    sizes = _sizes(quick, models, batch_size, seq_len, steps)
    if gen_model:
        from dataclasses import replace

        sizes = replace(sizes, gen_model=gen_model)
    torch_gpu = None
    if baseline and _gpu_expected(platform):
        from model.config import get_config

        log("PyTorch baseline on the GPU (child processes, before JAX takes the device memory):")
        torch_gpu = {m: gpu_baseline_rows(m, sizes.batch_size[m], min(sizes.seq_len[m], get_config(m).max_seq_len),
                                          sizes, dtype or "bfloat16", log) for m in sizes.models}
    n_devices, platform = _setup_devices(platform, devices)

    import jax

    from benchmarks.ceilings import measure_ceilings

    env = environment(platform, n_devices)
    dtype = dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
    log(f"device: {env['device']} x {n_devices} ({env['backend']}), compute dtype {dtype}")
    ceilings, t = _time(measure_ceilings, jax.devices()[0], quick=quick, n_devices=n_devices)
    ceilings["wall_s"] = t
    host = ceilings["platform"] == "cpu"
    peak = ceilings["matmul_flops"][dtype] * (1 if host else n_devices)
    log(f"ceilings: matmul f32 {ceilings['matmul_flops']['float32'] / 1e9:,.1f} GFLOP/s, bf16 "
        f"{ceilings['matmul_flops']['bfloat16'] / 1e9:,.1f} GFLOP/s, copy {ceilings['copy_bytes_per_s'] / 1e9:.1f} GB/s")

    log("training" + (" (runs of a model interleaved step by step; PyTorch baseline included):" if interleave else ":"))
    rows, baseline_result = training_rows(sizes, modes, n_devices, platform, dtype, remat, ceilings, peak, log,
                                          baseline=baseline, interleave=interleave,
                                          torch_gpu=torch_gpu if platform == "gpu" else None, attention=attention)
    ceilings = settle_ceilings(ceilings, measure_ceilings(jax.devices()[0], quick=quick, n_devices=n_devices))
    peak = ceilings["matmul_flops"][dtype] * (1 if host else n_devices)
    for row in rows:
        if row.get("step_time_s"):
            _predict(row, ceilings, peak)
    log(f"ceilings after training: matmul {dtype} {ceilings['readings']['after_training']['matmul_flops'][dtype] / 1e9:,.1f} "
        f"GFLOP/s; MFU and predictions use the better reading, {peak / 1e9:,.1f} GFLOP/s")
    for row in rows:
        if row.get("step_time_s"):
            log(f"  {row['model']:>5} {row['mode']:<9} {row['tokens_per_s']:,.0f} tok/s  MFU {row['mfu']:.1%}  "
                f"predicted/measured {row['predicted_over_measured']:.2f}")
    result = {
        "device": env["device"], "platform": env["backend"], "devices": n_devices, "dtype": dtype, "quick": quick,
        "peak_matmul_flops": peak,
        "peak_source": ("measured matmul on one emulated device = the whole host (devices share its cores)" if host
                        else f"measured matmul on one device x {n_devices} devices"),
        "environment": env, "ceilings": ceilings, "sizes": _sizes_dict(sizes), "runs": rows,
    }
    result["baseline"] = baseline_result
    if generation:
        log("generation:")
        result["generation"] = _generation(sizes, log, dtype, ceilings["copy_bytes_per_s"])
    else:
        result["generation"] = {"skipped": True}
    if planner:
        from benchmarks.planner import planner_speed

        result["planner"] = planner_speed()
        log(f"planner: {result['planner']['plans']} plans in {result['planner']['total_s']:.2f}s")
    else:
        result["planner"] = {"skipped": True}
    if scaling:
        from benchmarks.scaling import measured_scaling, simulated_scaling

        log("scaling:")
        # Always on emulated CPU devices (issue 6: 1, 2, 4, 8 of them), whatever the main platform.
        cpu_peak = peak if host else _cpu_peak()
        result["scaling"] = {
            "simulated": simulated_scaling(),
            "measured": measured_scaling(sizes.scaling_model, SCALING_DEVICES, platform="cpu", dtype="float32",
                                         remat=remat, batch_size=sizes.scaling_batch, seq_len=sizes.scaling_seq,
                                         steps=sizes.steps, warmup=sizes.warmup, peak_flops=cpu_peak, log=log),
        }
    from benchmarks.claims import check_claims
    from benchmarks.targets import evaluate_targets

    result["claims"] = check_claims()["claims"]
    result["targets"] = evaluate_targets(result)
    result["environment"]["load_average_end"] = os.getloadavg()
    result["wall_s"] = time.perf_counter() - started
    result["cpu_s"] = _cpu_seconds() - cpu0
    return result


def _cpu_peak() -> float:
    """The host CPU's float32 matmul ceiling (for MFU of the CPU scaling rows when the main platform is not CPU)."""
    import jax

    from benchmarks.ceilings import SIZES, matmul_flops

    return matmul_flops("float32", SIZES["cpu"]["quick"][0], jax.devices("cpu")[0])


def _generation(sizes: Sizes, log, dtype: str, bandwidth: float) -> dict:
    from benchmarks.generation import measure_generation

    try:
        g = measure_generation(sizes.gen_model, prompt_len=sizes.gen_prompt, new_tokens=sizes.gen_new_tokens,
                               batches=(1, 8), repeats=sizes.gen_repeats, dtype=dtype, bandwidth=bandwidth)
    except Exception as err:  # noqa: BLE001
        log(f"  FAILED {_error(err)}")
        return {"model": sizes.gen_model, "error": _error(err), "rows": []}
    for r in g["rows"]:
        log(f"  {g['model']} batch {r['batch']}: {r['tokens_per_s']:,.1f} tok/s"
            + (f" vs transformers {r['baseline_tokens_per_s']:,.1f} ({r['ratio']:.2f}x)" if "ratio" in r else "")
            + (f"; {r['roofline_fraction']:.0%} of the bandwidth roofline {r['roofline_tokens_per_s']:,.0f}"
               if r.get("roofline_fraction") else ""))
    return g


def _sizes(quick: bool, models, batch_size, seq_len, steps) -> Sizes:
    from dataclasses import replace

    base = QUICK if quick else FULL
    if models:
        base = replace(base, models=tuple(models))
    bs = {m: batch_size or base.batch_size.get(m, 8) for m in base.models}
    sl = {m: seq_len or base.seq_len.get(m, 128) for m in base.models}
    return replace(base, batch_size=bs, seq_len=sl, steps=steps or base.steps)


def _sizes_dict(s: Sizes) -> dict:
    return {"models": list(s.models), "batch_size": s.batch_size, "seq_len": s.seq_len, "steps": s.steps,
            "warmup": s.warmup, "generation": {"model": s.gen_model, "prompt": s.gen_prompt,
                                               "new_tokens": s.gen_new_tokens}}


def cpu_default_devices() -> int:
    """One emulated device per host core (at least 2, so the pipeline has stages; at most the runtime's default 8).

    Why not always the runtime's 8: emulated devices beyond the core count measure oversubscription, not the program.
    On 2 cores, ``small`` in data mode took 7.7 s per step on 8 devices against 4.7-5.0 s on 1 or 2 (same run,
    interleaved); ``--devices 8`` reproduces `wse train`'s default mesh.
    """
    from runtime.config import DEFAULT_CPU_DEVICES

    return max(2, min(DEFAULT_CPU_DEVICES, len(os.sched_getaffinity(0))))


def _setup_devices(platform: str, devices: int | None) -> tuple[int, str]:
    """Emulated CPU devices must be set before JAX starts; then pick the platform (auto: the accelerator if any)."""
    from runtime.errors import UserError
    from runtime.mesh import backend_initialized, ensure_cpu_devices

    want = max(devices or 1, max(SCALING_DEVICES))
    if not backend_initialized():
        ensure_cpu_devices(want)
    import jax

    if platform == "auto":
        platform = jax.default_backend()
    try:
        available = len(jax.devices(platform))
    except RuntimeError:
        raise UserError(f"--platform {platform} but JAX has no {platform} backend here; use --platform cpu") from None
    n = devices or (cpu_default_devices() if platform == "cpu" else available)
    if n > available:
        raise UserError(f"--devices {n} but only {available} {platform} devices are available; "
                        f"give --devices {available} or fewer")
    return n, platform

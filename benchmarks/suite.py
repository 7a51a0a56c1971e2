"""`wse bench` as a library: run every measurement in order and return one JSON-able dict.

Order matters: the device ceilings come first (they are the denominators of MFU and the cells of the prediction
grid); then the training rows, each model's modes and its PyTorch baseline interleaved step by step; the ceilings
once more (the mean of the two readings is kept, and MFU and the predictions are computed against it); generation;
planner speed; and optionally the scaling study. A row that fails (a mode that cannot run a preset on this mesh,
memory) is kept with its ``error`` so the report says what is missing instead of silently dropping it. The training
rows and the baseline joined to them are training_rows.py's; the sizes are sizes.py's (``QUICK``, ``FULL``); this module applies the command
line's overrides to them, sequences and collects.

Devices. On CPU the default mesh has one emulated device per host core (``cpu_default_devices``), on an accelerator
every device; each mode's axes come from ``training.mode_axes``.

GPU baseline. On a GPU the PyTorch baseline (eager and torch.compile, baseline_torch.py) runs in child processes
*before* JAX starts: JAX preallocates 75% of the device memory on its first use and keeps it until its process ends,
so a baseline measured afterwards would get the remaining quarter (the 1.3B shape at batch 8 x 2048 needs about
60 GB in eager PyTorch). Its rows are joined to our data-mode rows after those have run.
"""

from __future__ import annotations

import math
import os
import platform as _platform
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone

from benchmarks.sizes import FULL, QUICK, Sizes
from benchmarks.training_rows import gpu_baseline_rows, predict_row, training_rows
from model.errors import describe_error
from runtime.platform.gpu_flags import apply_gpu_flags, gpu_expected

MODES = ("data", "pipelined", "streaming")
SCALING_DEVICES = (1, 2, 4, 8)


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


def _proc_stat() -> list[int] | None:
    """The machine's CPU time counters (``cpu`` line of /proc/stat, clock ticks), or None where there is none."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def machine_load(stat0: list[int] | None, stat1: list[int] | None, own_cpu_s: float) -> dict | None:
    """How much of the machine others took while the bench ran: {"others" (CPU time of every other process, a
    fraction of all cores' time), "steal" (time the hypervisor gave to other guests, likewise)}; None without
    /proc/stat. From the ``cpu`` counters (user nice system idle iowait irq softirq steal) before and after."""
    if not stat0 or not stat1:
        return None
    d = [b - a for a, b in zip(stat0, stat1)]
    total = sum(d)
    if total <= 0:
        return None
    busy = total - d[3] - d[4] - d[7]  # neither idle, waiting for I/O, nor stolen
    ours = own_cpu_s * os.sysconf("SC_CLK_TCK")
    return {"others": max(0.0, busy - ours) / total, "steal": d[7] / total}


def _time(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def settle_ceilings(start: dict, end: dict, probes: list[float] | None = None, dtype: str = "float32") -> dict:
    """The ceilings measured before and after the training rows, merged by their geometric mean, then scaled to the
    load the rows ran under: ``probes`` are the matmul rate (``dtype``) read between the rows' timed steps, and every
    rate is multiplied (the dispatch time divided) by their median over the merged matmul rate. On a shared machine
    the two full readings catch whatever load there was at their moments (on the 2-core EPYC one run's readings were
    40.5 and 84.4 GFLOP/s four minutes apart); the probes see the rows' own, so predicted / measured repeats from run
    to run. On a quiet machine the factor is about 1."""
    def mean(a, b):
        return math.sqrt(a * b) if a and b else (a or b)

    link_start, link_end = start.get("host_link_bytes_per_s") or {}, end.get("host_link_bytes_per_s") or {}
    merged = {**start, "matmul_flops": {k: mean(v, end["matmul_flops"][k]) for k, v in start["matmul_flops"].items()},
              "copy_bytes_per_s": mean(start["copy_bytes_per_s"], end["copy_bytes_per_s"]),
              "host_link_bytes_per_s": {k: mean(v, link_end.get(k, v)) for k, v in link_start.items()}}
    for key in ("read_bytes_per_s", "host_adamw_params_per_s", "all_reduce_link_bytes_per_s", "dispatch_s"):
        if start.get(key) is not None:
            merged[key] = mean(start[key], end.get(key) or start[key])
    merged["method"] = start["method"] + "; the geometric mean of a reading before and one after the training rows"
    if probes:
        factor = statistics.median(probes) / merged["matmul_flops"][dtype]
        merged["matmul_flops"] = {k: v * factor for k, v in merged["matmul_flops"].items()}
        merged["copy_bytes_per_s"] *= factor
        merged["host_link_bytes_per_s"] = {k: v * factor for k, v in merged["host_link_bytes_per_s"].items()}
        for key in ("read_bytes_per_s", "host_adamw_params_per_s", "all_reduce_link_bytes_per_s"):
            if merged.get(key) is not None:
                merged[key] *= factor
        if merged.get("dispatch_s") is not None:
            merged["dispatch_s"] /= factor
        merged["rows_load"] = {"probes": list(probes), "factor": factor}
        merged["method"] += (f"; scaled by {factor:.2f}, the median of {len(probes)} matmul probes between the timed "
                             "steps over that mean (the load the rows ran under)")
    share = start["shared_by_devices"]
    merged["per_device"] = {"matmul_flops": {k: v / share for k, v in merged["matmul_flops"].items()},
                            "copy_bytes_per_s": merged["copy_bytes_per_s"] / share,
                            "host_link_bytes_per_s": {k: v / share for k, v in merged["host_link_bytes_per_s"].items()}}
    figures = ("matmul_flops", "copy_bytes_per_s", "read_bytes_per_s", "host_link_bytes_per_s",
               "host_adamw_params_per_s", "all_reduce_link_bytes_per_s", "dispatch_s")
    merged["readings"] = {"before_training": {k: start[k] for k in figures if k in start},
                          "after_training": {k: end[k] for k in figures if k in end}}
    return merged


def run_bench(*, quick: bool = False, devices: int | None = None, platform: str = "auto", dtype: str | None = None,
              remat: str = "auto", attention: str = "auto", models=None, modes=MODES, batch_size: int | None = None,
              seq_len: int | None = None, layer_loop: str = "auto", xla_gpu_flags: str = "auto",
              steps: int | None = None, scaling: bool = False, baseline: bool = True, generation: bool = True,
              planner: bool = True, gen_models=None, interleave: bool = True, profile=None,
              training: bool = True, log=None) -> dict:
    """Every measurement of `wse bench`; see the module docstring. ``log`` receives progress lines. ``remat`` "auto"
    leaves the remat policy to each run's plan (as `wse train` does); a policy name forces it on every run.
    ``attention`` likewise (auto, xla, cudnn), and ``layer_loop`` (auto, scan, unroll). ``xla_gpu_flags`` (auto, off):
    the XLA:GPU flags set before JAX starts (runtime.platform.gpu_flags; recorded in ``result["xla_gpu_flags"]``).
    ``profile``: (model, mode, folder) of the row to trace with
    jax.profiler after its timed steps (training_rows.ModelRuns.trace_steps), or None."""
    log = log or (lambda line: None)
    started, cpu0, stat0 = time.perf_counter(), _cpu_seconds(), _proc_stat()
    sizes = _sizes(quick, models, batch_size, seq_len, steps, gen_models)
    torch_gpu = None
    if baseline and training and gpu_expected(platform):
        torch_gpu = gpu_baseline_first(sizes, dtype or "bfloat16", log)
    gpu_flags = apply_gpu_flags(xla_gpu_flags, platform)  # before JAX starts: XLA reads XLA_FLAGS once
    n_devices, platform = _setup_devices(platform, devices, scaling)

    import jax

    env = environment(platform, n_devices)
    dtype = dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
    log(f"device: {env['device']} x {n_devices} ({env['backend']}), compute dtype {dtype}; XLA:GPU flags: "
        f"{len(gpu_flags['added'])} added ({gpu_flags['reason']})")
    ceilings = first_ceilings(quick, n_devices, log)
    host = ceilings["platform"] == "cpu"
    peak = ceilings["matmul_flops"][dtype] * (1 if host else n_devices)

    rows, baseline_result = [], {"available": False, "reason": "training rows not run (--no-training)"}
    if training:
        log("training" + (" (runs of a model interleaved step by step; PyTorch baseline included):" if interleave
                          else ":"))
        probes: list[float] = []
        rows, baseline_result = training_rows(sizes, modes, n_devices, platform, dtype, remat, ceilings, peak, log,
                                              baseline=baseline, interleave=interleave,
                                              torch_gpu=torch_gpu if platform == "gpu" else None, attention=attention,
                                              layer_loop=layer_loop,
                                              profile=profile, probe=matmul_probe(quick, dtype), probes=probes)
        ceilings, peak = settle_and_predict(rows, ceilings, dtype, n_devices, quick, log, probes)
    result = {
        "device": env["device"], "platform": env["backend"], "devices": n_devices, "dtype": dtype, "quick": quick,
        "peak_matmul_flops": peak,
        "peak_source": ("measured matmul on one emulated device = the whole host (devices share its cores)" if host
                        else f"measured matmul on one device x {n_devices} devices"),
        "environment": env, "ceilings": ceilings, "sizes": _sizes_dict(sizes), "runs": rows,
        "xla_gpu_flags": gpu_flags, "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    result["baseline"] = baseline_result
    result["generation"] = _generation(sizes, log, dtype, ceilings, baseline) if generation else {"skipped": True}
    result["planner"] = _planner(log) if planner else {"skipped": True}
    if scaling:
        result["scaling"] = _scaling(sizes, remat, peak if host else None, log)
    _conclude(result, started, cpu0, stat0)
    return result


def gpu_baseline_first(sizes: Sizes, dtype: str, log) -> dict[str, list[dict]]:
    """{model: rows} of the GPU PyTorch baseline, measured in child processes before JAX takes the device memory."""
    from model.config import get_config

    log("PyTorch baseline on the GPU (child processes, before JAX takes the device memory):")
    return {m: gpu_baseline_rows(m, sizes.batch_size[m], min(sizes.seq_len[m], get_config(m).max_seq_len), sizes,
                                 dtype, log) for m in sizes.models}


def first_ceilings(quick: bool, n_devices: int, log) -> dict:
    """The device ceilings measured before the training rows, with the seconds the measurement took (``wall_s``)."""
    import jax

    from benchmarks.ceilings import measure_ceilings

    ceilings, t = _time(measure_ceilings, jax.devices()[0], quick=quick, n_devices=n_devices)
    ceilings["wall_s"] = t
    link = ceilings["host_link_bytes_per_s"]
    log(f"ceilings: matmul f32 {ceilings['matmul_flops']['float32'] / 1e9:,.1f} GFLOP/s, bf16 "
        f"{ceilings['matmul_flops']['bfloat16'] / 1e9:,.1f} GFLOP/s, copy {ceilings['copy_bytes_per_s'] / 1e9:.1f} GB/s, "
        f"host link {link.get('host_to_device', 0) / 1e9:.1f} / {link.get('device_to_host', 0) / 1e9:.1f} GB/s "
        f"(to / from the device), host AdamW {(ceilings['host_adamw_params_per_s'] or 0) / 1e6:,.0f}M params/s")
    return ceilings


def matmul_probe(quick: bool, dtype: str):
    """The function the training rows call between timed steps: the ceilings' matmul rate, 3 calls per size."""
    import jax

    from benchmarks.ceilings import SIZES, matmul_flops

    device = jax.devices()[0]
    n = SIZES.get(device.platform, SIZES["gpu"])["quick" if quick else "full"][0]
    return lambda: matmul_flops(dtype, n, device, repeats=3)


def settle_and_predict(rows: list[dict], first: dict, dtype: str, n_devices: int, quick: bool,
                       log, probes: list[float] | None = None) -> tuple[dict, float]:
    """(ceilings, peak FLOP/s): the ceilings read again after the training rows and settled with the ``first``
    reading and the ``probes`` taken between the rows' timed steps (``settle_ceilings``); every measured row's MFU
    and prediction recomputed against them."""
    import jax

    from benchmarks.ceilings import measure_ceilings

    ceilings = settle_ceilings(first, measure_ceilings(jax.devices()[0], quick=quick, n_devices=n_devices),
                               probes, dtype)
    peak = ceilings["matmul_flops"][dtype] * (1 if first["platform"] == "cpu" else n_devices)
    for row in rows:
        if row.get("step_time_s"):
            predict_row(row, ceilings, peak)
    during = f"; {len(probes)} probes between the timed steps, median {peak / 1e9:,.1f}" if probes else ""
    log(f"ceilings after training: matmul {dtype} {ceilings['readings']['after_training']['matmul_flops'][dtype] / 1e9:,.1f} "
        f"GFLOP/s{during}; MFU and predictions use {peak / 1e9:,.1f} GFLOP/s")
    for row in rows:
        if row.get("step_time_s"):
            log(f"  {row['model']:>5} {row['mode']:<9} {row['tokens_per_s']:,.0f} tok/s  MFU {row['mfu']:.1%}  "
                f"predicted/measured {row['predicted_over_measured']:.2f}")
    return ceilings, peak


def _planner(log) -> dict:
    from benchmarks.planner import planner_speed

    speed = planner_speed()
    log(f"planner: {speed['plans']} plans in {speed['total_s']:.2f}s")
    return speed


def _scaling(sizes: Sizes, remat: str, cpu_peak: float | None, log) -> dict:
    """The scaling study: simulated clusters, and measured strong scaling on 1, 2, 4, 8 emulated CPU devices (issue
    6), whatever the main platform. ``cpu_peak``: the host's float32 matmul FLOP/s if already measured."""
    from benchmarks.scaling import measured_scaling, simulated_scaling

    log("scaling:")
    cpu_peak = cpu_peak if cpu_peak is not None else _cpu_peak()
    return {
        "simulated": simulated_scaling(),
        "measured": measured_scaling(sizes.scaling_model, SCALING_DEVICES, platform="cpu", dtype="float32",
                                     remat=remat, batch_size=sizes.scaling_batch, seq_len=sizes.scaling_seq,
                                     steps=sizes.steps, warmup=sizes.warmup, peak_flops=cpu_peak, log=log),
    }


def _conclude(result: dict, started: float, cpu0: float, stat0=None) -> None:
    """Add the claims, the targets (evaluated on everything measured), the closing load average, the wall and CPU
    seconds of the whole bench and the share of the machine other work took meanwhile (``machine_load``)."""
    from benchmarks.claims import check_claims
    from benchmarks.targets import evaluate_targets

    result["claims"] = check_claims()["claims"]
    result["targets"] = evaluate_targets(result)
    result["environment"]["load_average_end"] = os.getloadavg()
    result["wall_s"] = time.perf_counter() - started
    result["cpu_s"] = _cpu_seconds() - cpu0
    result["environment"]["machine_load"] = machine_load(stat0, _proc_stat(), result["cpu_s"])


def _cpu_peak() -> float:
    """The host CPU's float32 matmul ceiling (for MFU of the CPU scaling rows when the main platform is not CPU)."""
    import jax

    from benchmarks.ceilings import SIZES, matmul_flops

    return matmul_flops("float32", SIZES["cpu"]["quick"][0], jax.devices("cpu")[0])


def _generation(sizes: Sizes, log, dtype: str, ceilings: dict, baseline: bool) -> dict:
    from benchmarks.generation import run_generation

    log("generation:")
    return run_generation(sizes.gen_models, prompt_len=sizes.gen_prompt, new_tokens=sizes.gen_new_tokens,
                          repeats=sizes.gen_repeats, dtype=dtype, ceilings=ceilings, baseline=baseline, log=log)


def _sizes(quick: bool, models, batch_size, seq_len, steps, gen_models) -> Sizes:
    """QUICK or FULL with the command line's overrides (each None when not given)."""
    base = QUICK if quick else FULL
    if models:
        base = replace(base, models=tuple(models))
    bs = {m: batch_size or base.batch_size.get(m, 8) for m in base.models}
    sl = {m: seq_len or base.seq_len.get(m, 128) for m in base.models}
    sizes = replace(base, batch_size=bs, seq_len=sl, steps=steps or base.steps)
    return replace(sizes, gen_models=tuple(gen_models)) if gen_models else sizes


def _sizes_dict(s: Sizes) -> dict:
    return {"models": list(s.models), "batch_size": s.batch_size, "seq_len": s.seq_len, "steps": s.steps,
            "warmup": s.warmup, "generation": {"models": list(s.gen_models), "prompt": s.gen_prompt,
                                               "new_tokens": s.gen_new_tokens}}


def cpu_default_devices() -> int:
    """One emulated device per host core (at least 2, so the pipeline has stages; at most the runtime's default 8).

    Why not always the runtime's 8: emulated devices beyond the core count measure oversubscription, not the program.
    On 2 cores, ``small`` in data mode took 7.7 s per step on 8 devices against 4.7-5.0 s on 1 or 2 (same run,
    interleaved); ``--devices 8`` reproduces `wse train`'s default mesh.
    """
    from runtime.config import DEFAULT_CPU_DEVICES

    return max(2, min(DEFAULT_CPU_DEVICES, len(os.sched_getaffinity(0))))


def _setup_devices(platform: str, devices: int | None, scaling: bool = False) -> tuple[int, str]:
    """Emulated CPU devices must be set before JAX starts; then pick the platform (auto: the accelerator if any).

    JAX's CPU backend gets the devices the run uses (``devices``, default ``cpu_default_devices``), or the scaling
    study's 8 when it runs: emulated devices beyond the cores slow even work on one of them (111M batch-1 decoding
    on device 0 of a 2-core EPYC: 15.7-16.0 ms a step with 8 devices against 12.6-14.0 with 1 or 2, alternating
    processes)."""
    from runtime.errors import UserError
    from runtime.platform import backend_initialized, ensure_cpu_devices

    want = max(devices or cpu_default_devices(), max(SCALING_DEVICES) if scaling else 1)
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

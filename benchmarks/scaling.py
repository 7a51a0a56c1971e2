"""The scaling study: simulated Cerebras clusters and measured emulated CPU devices.

Simulated (wse.streaming.plan_streaming, weight-streaming mode, the only one that scales out): all seven
Cerebras-GPT sizes on 1, 2, 4, 8, 16 CS-2 and CS-3 systems at sequence length 2048, in two ways:
- strong scaling: the published global batch, split over N systems; efficiency = tokens/s(N) / (N x tokens/s(1));
- weak scaling: the published batch *per system* (global batch N x published); same efficiency formula.
Time to train is the Chinchilla budget (20 tokens per parameter) over the plan's tokens/s.

Measured: strong scaling of the ``small`` preset in ``data`` mode on 1, 2, 4, 8 emulated CPU devices, a fixed global
batch split over them. On CPU the emulated devices share the host's cores, so the ideal is *flat* tokens/s (the
hardware does not grow with N): the figure shows what splitting costs (per-device overheads, gradient all-reduce),
and ``speedup`` = tokens/s(N) / tokens/s(1) is reported beside the conventional efficiency speedup / N.
"""

from __future__ import annotations

from model.errors import describe_error

SIZES = ("111M", "256M", "590M", "1.3B", "2.7B", "6.7B", "13B")
SYSTEMS = ("cs2", "cs3")
COUNTS = (1, 2, 4, 8, 16)
SEQ_LEN = 2048


def simulated_scaling(sizes=SIZES, systems=SYSTEMS, counts=COUNTS, seq_len: int = SEQ_LEN) -> dict:
    """{"rows": [{"model", "system", "systems", "strong": {...}, "weak": {...}}]} from the streaming planner."""
    from model.config import get_config
    from wse.errors import PlanError
    from wse.wafer.streaming import plan_streaming
    from wse.wafer.systems import get_system

    rows = []
    for sys_name in systems:
        system, _ = get_system(sys_name)
        for model in sizes:
            cfg = get_config(model)
            base = {}
            for n in counts:
                row = {"model": model, "system": system.name, "systems": n}
                for kind, batch in (("strong", cfg.batch_size), ("weak", cfg.batch_size * n)):
                    try:
                        p = plan_streaming(cfg, system, systems=n, batch_size=batch, seq_len=seq_len)
                    except PlanError as err:
                        row[kind] = {"error": str(err)}
                        continue
                    if n == counts[0]:
                        base[kind] = p.tokens_per_s / n
                    row[kind] = {
                        "batch_size": batch, "tokens_per_s": p.tokens_per_s, "step_time_s": p.step_time_s,
                        "time_to_train_s": p.time_to_train_s, "utilization": p.utilization,
                        "systems_used": p.details["systems_used"],
                        "efficiency": p.tokens_per_s / (n * base[kind]) if kind in base else None,
                    }
                rows.append(row)
    return {"seq_len": seq_len, "counts": list(counts), "rows": rows,
            "method": "wse.streaming.plan_streaming; strong: published global batch; weak: published batch per system"}


def measured_scaling(model: str, counts, *, platform: str, dtype: str, remat: str, batch_size: int, seq_len: int,
                     steps: int, warmup: int, peak_flops: float, log=None) -> dict:
    """Data-mode tokens/s of ``model`` on each device count (the first n of the emulated devices). The device counts'
    runs are compiled first and then stepped round by round (one step each per round), so load that drifts over the
    minutes of the study hits every count alike."""
    from benchmarks.training import TrainingRun
    from runtime.platform import build_mesh

    log = log or (lambda line: None)
    runs, rows = {}, {}
    for n in counts:
        if batch_size % n:
            rows[n] = {"devices": n, "error": f"batch {batch_size} does not split over {n} devices"}
            continue
        try:
            mesh = build_mesh(platform, n, {"data": n, "stage": 1, "model": 1})
            runs[n] = TrainingRun(model, "data", mesh, batch_size=batch_size, seq_len=seq_len, dtype=dtype,
                                  remat=remat, total_steps=warmup + steps + 1)
        except Exception as err:  # noqa: BLE001 - report the missing point
            rows[n] = {"devices": n, "error": describe_error(err)}
    for i in range(warmup + steps):
        for n, run in list(runs.items()):
            try:
                run.step(timed=i >= warmup)
            except Exception as err:  # noqa: BLE001
                rows[n] = {"devices": n, "error": describe_error(err)}
                del runs[n]
    for n, run in runs.items():
        r = run.row(peak_flops)
        run.close()
        rows[n] = {"devices": n, "tokens_per_s": r["tokens_per_s"], "step_time_s": r["step_time_s"],
                   "step_times_s": r["step_times_s"], "compile_s": r["compile_s"], "mfu": r["mfu"]}
        log(f"  {model} data x{n}: {r['tokens_per_s']:,.0f} tok/s")
    rows = [rows[n] for n in counts]
    one = next((r["tokens_per_s"] for r in rows if r["devices"] == counts[0] and "tokens_per_s" in r), None)
    for r in rows:
        if one and "tokens_per_s" in r:
            r["speedup"] = r["tokens_per_s"] / one
            r["efficiency"] = r["speedup"] / (r["devices"] / counts[0])
    return {"model": model, "mode": "data", "batch_size": batch_size, "seq_len": seq_len, "interleaved": True,
            "rows": rows}

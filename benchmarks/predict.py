"""Prediction versus measurement: the wafer simulator's cost model, run over the device grid the benchmark measured.

The grid's cells are the mesh's devices with the *measured* ceilings (ceilings.py): matmul FLOP/s at the run's compute
dtype, memory, and the copy bandwidth as the link between neighbours (emulated CPU devices exchange data by memory
copies). On CPU the emulated devices share the host's cores and memory bus, so each cell gets the host's figures
divided by the device count. Nothing is fitted to the measurement: the planner's own assumptions (notably
``compute_efficiency``, the fraction of a cell's peak its kernels sustain, 0.5 by default) stay at their documented
defaults, exactly as they are when the same code predicts a wafer. Only facts of the run are set: the byte widths of
the compute dtype and the batch split.

Mode by mode:
- ``data``: ``wse.pipelined.plan_pipelined`` over the n-device grid with the whole batch as one microbatch; with a
  single microbatch the planner's best plan is one stage spread over every cell (no bubble to pay), which is data
  parallelism's division of the work.
- ``pipelined``: the planner's stage-time formula (``region_costs``/``stage_time``/``handoff_time``) evaluated at the
  runtime's own split: S stages of one device each, the runtime's microbatch count M, step = (M + S - 1) x the
  slowest stage, plus the tied head, which the runtime runs outside the pipe on every device.
  ``plan_pipelined`` alone would choose its own S (on identical cells, the fewest stages that fit); the runtime's S is
  set by the mesh, so the formula is evaluated there, and the planner's own choice is reported beside it.
- ``streaming``: ``wse.streaming.plan_streaming`` on a "system" made of the mesh: each data-axis device is one system,
  host memory its MemoryX (stream bandwidth = the copy bandwidth per device; optimizer rate = AdamW's bytes per
  parameter over that bandwidth), the data axis its SwarmX.
"""

from __future__ import annotations

import math
from dataclasses import replace

# AdamW touches per parameter: read weight, gradient, two moments; write weight and two moments (float32).
ADAMW_BYTES_PER_PARAM = 7 * 4


def plan_options(dtype: str, **changes):
    """PlanOptions with the byte widths of the run (float32: 4-byte weights/grads/activations, 8 bytes of Adam
    moments; bfloat16: the planner's mixed-precision defaults); every planner assumption left at its default."""
    from wse.options import PlanOptions

    if dtype == "float32":
        changes = {"weight_bytes": 4, "grad_bytes": 4, "optimizer_bytes": 8, "activation_bytes": 4, **changes}
    return PlanOptions(**changes)


def cell_figures(ceilings: dict, dtype: str, n_devices: int, device_memory_bytes: int) -> dict:
    """Per-device figures of the grid: FLOP/s, memory, link (copy) bandwidth."""
    share = n_devices if ceilings["platform"] == "cpu" else 1
    return {
        "flops_per_cell": ceilings["matmul_flops"][dtype] / share,
        "memory_bytes_per_cell": int(device_memory_bytes),
        "link_bytes_per_s": ceilings["copy_bytes_per_s"] / share,
    }


def _grid(cells: dict, n: int, name: str):
    from wse.grid import device_grid

    return device_grid(n, cells["flops_per_cell"], cells["memory_bytes_per_cell"], cells["link_bytes_per_s"], name=name)


def predict_data(cfg, n: int, batch_size: int, seq_len: int, cells: dict, dtype: str) -> dict:
    from wse.pipelined import plan_pipelined

    opts = plan_options(dtype, microbatch_seqs=batch_size)
    plan = plan_pipelined(cfg, _grid(cells, n, "mesh"), batch_size=batch_size, seq_len=seq_len, options=opts,
                          model_name=cfg.name)
    return {"predicted_step_time_s": plan.step_time_s, "planner": "wse.pipelined.plan_pipelined (one microbatch)",
            "planner_stages": plan.details["n_stages"], "utilization": plan.utilization,
            "compute_efficiency": opts.compute_efficiency}


def predict_pipelined(cfg, shape: dict, batch_size: int, seq_len: int, cells: dict, dtype: str, *,
                      stages: list, microbatches: int) -> dict:
    """Step time of the runtime's pipeline by the planner's stage-time formula (see module docstring)."""
    from wse.costs import model_layers
    from wse.pipelined import handoff_time, plan_pipelined, region_costs, stage_time

    D, S, n = shape["data"], shape["stage"], shape["data"] * shape["stage"] * shape["model"]
    opts = plan_options(dtype)
    layers = model_layers(cfg, seq_len, attention_probs_stashed=opts.attention_probs_stashed)
    one = _grid(cells, 1, "device")
    mb_tokens = batch_size // (D * microbatches) * seq_len
    costs = region_costs(layers, one, opts, mb_tokens)
    c0 = handoff_time(_grid(cells, n, "mesh"), 1, cfg.d_model, mb_tokens, opts) if S > 1 else 0.0
    times = []
    for first, last in stages:  # runtime blocks first..last -> wse layers 1 + 2*first .. 2 + 2*last
        a, b = 1 + 2 * first, 2 + 2 * last
        times.append(stage_time(float(costs.compute[a:b + 1].sum()), float(costs.fabric[a:b + 1].sum()),
                                float(costs.switch[a:b + 1].sum()), c0, 1))
    pipe = (microbatches + S - 1) * max(times)
    # embedding lookup and tied head + loss: outside the pipe, rows over every device
    head_tokens = batch_size * seq_len / n
    head = float(region_costs(layers[-1:], one, opts, max(1, int(head_tokens))).compute.sum())
    planner_best = None
    try:
        mb_seqs = max(1, batch_size // (D * microbatches))
        own = plan_pipelined(cfg, _grid(cells, n, "mesh"), batch_size=batch_size, seq_len=seq_len,
                             options=plan_options(dtype, microbatch_seqs=mb_seqs), model_name=cfg.name)
        planner_best = {"step_time_s": own.step_time_s, "stages": own.details["n_stages"]}
    except Exception as err:  # noqa: BLE001 - the planner's own choice is a side note; report why it is missing
        planner_best = {"error": str(err)}
    return {"predicted_step_time_s": pipe + head, "planner": "wse.pipelined stage-time formula at the runtime's split",
            "stage_times_s": times, "bubble_fraction": (S - 1) / (microbatches + S - 1), "head_s": head,
            "planner_own_choice": planner_best, "compute_efficiency": opts.compute_efficiency}


def device_system(cells: dict, n_systems: int, hop_latency_s: float = 5e-6):
    """The mesh as CS-style systems for the streaming planner: one device per system (a 1 x 1 grid with the cell's
    figures), host memory as MemoryX, the data axis as SwarmX. Built by replacing CS-2's figures (so every field the
    planner reads is set and tagged as a measured/derived device figure)."""
    from wse.hardware import CS2

    flops = cells["flops_per_cell"]
    clock = flops / 2.0  # one 1-wide FMA lane: flops_per_cell = 2 x 1 x clock
    bw = cells["link_bytes_per_s"]
    tag = "F: measured on this machine by wse bench"
    chip = replace(CS2.chip, name="device", cores_marketed=1, grid_cols=1, grid_rows=1,
                   sram_bytes_per_core=cells["memory_bytes_per_cell"], sram_reserved_bytes_per_core=0,
                   clock_hz=clock, fp16_simd_width=1, link_bytes_per_cycle=bw / clock,
                   hop_latency_cycles=hop_latency_s * clock, layer_switch_cycles=0.0,
                   sources={k: tag for k in CS2.chip.sources})
    mx = replace(CS2.memoryx, name="host memory", capacity_bytes=float(cells["memory_bytes_per_cell"]) * n_systems,
                 bandwidth_bytes_per_s=bw, optimizer_params_per_s=bw / ADAMW_BYTES_PER_PARAM,
                 sources={k: tag for k in CS2.memoryx.sources})
    swx = replace(CS2.swarmx, name="data axis", link_bandwidth_bytes_per_s=bw, links_per_system=1, fan_out=2,
                  level_latency_s=hop_latency_s, max_systems=max(n_systems, 1),
                  sources={k: tag for k in CS2.swarmx.sources})
    return replace(CS2, name="mesh", chip=chip, io_bytes_per_s=bw, memoryx=mx, swarmx=swx,
                   sources={k: tag for k in CS2.sources})


def predict_streaming(cfg, shape: dict, batch_size: int, seq_len: int, cells: dict, dtype: str) -> dict:
    from wse.streaming import plan_streaming

    D = shape["data"] * shape["stage"]
    opts = plan_options(dtype)
    plan = plan_streaming(cfg, device_system(cells, D), systems=D, batch_size=batch_size, seq_len=seq_len,
                          options=opts, model_name=cfg.name)
    return {"predicted_step_time_s": plan.step_time_s, "planner": "wse.streaming.plan_streaming (device systems)",
            "systems_used": plan.details["systems_used"], "recompute": plan.details["recompute"],
            "micro_batches": plan.details["micro_batches"], "optimizer_tail_s": plan.details["optimizer_tail_s"],
            "utilization": plan.utilization, "compute_efficiency": opts.compute_efficiency}


def predict(row: dict, ceilings: dict, device_memory_bytes: int) -> dict:
    """The prediction for a measured training row (training.measure_training's dict)."""
    from model.config import get_config

    cfg = get_config(row["model"])
    shape, B, T, dtype = row["mesh"], row["batch_size"], row["seq_len"], row["dtype"]
    n = shape["data"] * shape["stage"] * shape["model"]
    cells = cell_figures(ceilings, dtype, n, device_memory_bytes)
    if row["mode"] == "pipelined":
        out = predict_pipelined(cfg, shape, B, T, cells, dtype, stages=row["plan"]["stages"],
                                microbatches=row["plan"]["microbatches"])
    elif row["mode"] == "streaming":
        out = predict_streaming(cfg, shape, B, T, cells, dtype)
    else:
        out = predict_data(cfg, n, B, T, cells, dtype)
    out["cells"] = cells
    out["ratio"] = out["predicted_step_time_s"] / row["step_time_s"] if row.get("step_time_s") else math.nan
    return out

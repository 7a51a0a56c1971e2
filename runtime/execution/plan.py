"""The execution plan: which mode, how the layers split into pipeline stages, how many microbatches.

A plan is a plain JSON-able dict (the run's JSON output carries it). The stage split is the wafer simulator's
contiguous partition (wse.partition.partition_layers): the slowest stage's FLOPs minimised, each stage's training
state within a device's memory — the same cut the simulator makes into wafer regions.
"""

from __future__ import annotations

import os

from model.config import GPTConfig
from runtime.errors import UserError

MODES = ("data", "pipelined", "streaming", "auto")

# Microbatches per stage the planner aims for when the user gives none: GPipe's bubble is (S-1)/(M+S-1), so
# M = 4 S keeps it under 20 % while each microbatch stays large enough to use a device well.
MICROBATCHES_PER_STAGE = 4
# auto picks weight streaming when the training state (fp32 weights, gradients, two Adam moments = 16 bytes per
# parameter) split over the model axis would take more than this fraction of one device's memory.
STREAMING_MEMORY_FRACTION = 0.8
TRAIN_STATE_BYTES_PER_PARAM = 16


def layer_flops(cfg: GPTConfig, seq_len: int | None = None) -> list[float]:
    """Forward FLOPs per token of each transformer block (dense matmuls and attention at context ``seq_len``)."""
    t = seq_len or cfg.max_seq_len
    d, f = cfg.d_model, cfg.d_ffn
    return [float(2 * (4 * d * d + 2 * d * f) + 4 * t * d)] * cfg.n_layers


def layer_state_bytes(cfg: GPTConfig) -> list[float]:
    """Training-state bytes of each block (fp32 weights, gradients and two Adam moments)."""
    d, f = cfg.d_model, cfg.d_ffn
    params = 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d
    return [float(params * TRAIN_STATE_BYTES_PER_PARAM)] * cfg.n_layers


def partition(cfg: GPTConfig, n_stages: int, seq_len: int | None, stage_bytes: float) -> list[tuple[int, int]]:
    """Contiguous stages minimising the slowest stage's FLOPs, each stage's training state within ``stage_bytes``
    (the memory of the devices one stage's weights are split over). The wafer simulator's partitioner: the JAX
    pipeline and the simulated wafer cut the model alike. With fewer layers than stages the trailing stages are
    empty (first > last) and just pass activations on."""
    from wse.partition import partition_layers

    return partition_layers(layer_flops(cfg, seq_len), n_stages, layer_state_bytes(cfg), float(stage_bytes))


def choose_microbatches(local_batch: int, n_stages: int) -> int:
    """The most microbatches up to MICROBATCHES_PER_STAGE * S that divide the per-replica batch."""
    target = max(1, MICROBATCHES_PER_STAGE * n_stages)
    return max(m for m in range(1, min(target, local_batch) + 1) if local_batch % m == 0)


def device_memory_bytes(mesh) -> int:
    """Memory of one device: the accelerator's limit, or on CPU the host RAM shared by the emulated devices."""
    device = mesh.devices.flat[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory stats
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    local = max(1, sum(1 for d in mesh.devices.flat if d.process_index == device.process_index))
    return ram // local


def resolve_mode(mode: str, cfg: GPTConfig, shape: dict[str, int], device_bytes: int) -> tuple[str, str]:
    """(mode, reason): ``auto`` becomes pipelined when the mesh has stages, streaming when the training state would
    not fit the devices, else data."""
    if mode not in MODES:
        import difflib

        close = difflib.get_close_matches(mode, MODES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(f"unknown execution.mode '{mode}'{hint}; use one of {', '.join(MODES)}")
    if mode != "auto":
        return mode, "asked for"
    if shape["stage"] > 1:
        return "pipelined", f"the mesh has {shape['stage']} stages"
    state = cfg.parameters * TRAIN_STATE_BYTES_PER_PARAM / shape["model"]
    if state > STREAMING_MEMORY_FRACTION * device_bytes:
        return "streaming", (f"training state {state / 2**30:.1f} GiB per device exceeds "
                             f"{STREAMING_MEMORY_FRACTION:.0%} of {device_bytes / 2**30:.1f} GiB")
    return "data", f"training state {state / 2**30:.2f} GiB per device fits in {device_bytes / 2**30:.1f} GiB"


def make_plan(mode: str, cfg: GPTConfig, shape: dict[str, int], *, microbatches: int | None, seq_len: int | None,
              device_bytes: int, fsdp: bool, remat: bool, dtype: str) -> dict:
    """The plan dict. ``microbatches`` None for a pipeline is resolved when the batch size is first seen."""
    resolved, reason = resolve_mode(mode, cfg, shape, device_bytes)
    plan = {
        "mode": resolved, "requested_mode": mode, "reason": reason, "mesh": dict(shape),
        "fsdp": fsdp, "remat": remat, "compute_dtype": dtype,
        "parameters": cfg.parameters,
        "train_state_bytes": cfg.parameters * TRAIN_STATE_BYTES_PER_PARAM,
        "device_memory_bytes": device_bytes,
    }
    if resolved == "pipelined":
        S = shape["stage"]
        # a stage's weights are split over its `model` devices (and its `data` devices too under FSDP)
        stage_bytes = device_bytes * shape["model"] * (shape["data"] if fsdp else 1)
        stages = partition(cfg, S, seq_len, stage_bytes)
        sizes = [b - a + 1 for a, b in stages]
        flops = layer_flops(cfg, seq_len)
        plan.update(
            stages=[list(s) for s in stages], layers_per_stage=sizes, slots_per_stage=max(sizes),
            stage_forward_flops_per_token=[sum(flops[a:b + 1]) for a, b in stages],
            microbatches=microbatches,
            embedding="wte/wpe/ln_f replicated over stage; embedding and head run outside the pipeline on the whole mesh",
        )
        set_bubble(plan)
    elif microbatches not in (None, 1):
        raise UserError(f"execution.microbatches={microbatches} applies to the pipelined mode only; "
                        "other modes split a batch by gradient accumulation (accum_steps)")
    return plan


def set_bubble(plan: dict) -> None:
    S, M = plan["mesh"]["stage"], plan.get("microbatches")
    plan["bubble_fraction"] = None if M is None else round((S - 1) / (M + S - 1), 4)

"""A training plan on a device mesh (wse.devices.specs) from the device cost model (wse.devices.cost_model): what
`wse plan --system h100x8.yaml` answers.

The batch is split evenly over the devices (pure data parallelism; the slowest device, with ceil(B / n) sequences,
sets the step). Each device's share runs in ``accum`` equal slices: the plan takes the fastest (accumulation, remat)
whose memory fits in ``Device.usable_memory_bytes``, the fewest slices on a tie. Data mode chooses remat among
``none``, ``dots`` and ``full``, as the runtime does (recompute only when memory requires); streaming always
recomputes each layer in its backward (the runtime's streaming mode does). ``auto`` is data mode when it fits, else
streaming.

Memory per device (bytes). Data mode: the training state (float32 weights, gradients, two moments: 16 bytes per
parameter) plus the activations a slice keeps under its remat policy (``cost_model.MemoryModel``, the memory model
the runtime's remat decision asks too) plus one loss chunk's logits. Streaming: the
rest's weights and two layers' (running and prefetched, in wse.devices.hostlink's widths), their float32 gradients,
the activations with recomputation, one loss chunk; in host memory every device's copy of the weights, moments and
gradient accumulator.
"""

from __future__ import annotations

import math
from dataclasses import replace

from wse.assumptions import PlanOptions
from wse.costs import training_batch
from wse.devices.cost_model import REMATS, DeviceModel, assumption, model_assumptions
from wse.devices.specs import Device, device_assumptions
from wse.errors import PlanError
from wse.plans import DevicePlan

MODES = ("auto", "data", "streaming")


def device_memory(model: DeviceModel, mode: str, seqs: int, remat: str, host_update: bool = True) -> dict:
    """Bytes on one device (``device_bytes`` and its parts) and in host memory (``host_bytes``) for ``mode`` with
    slices of ``seqs`` sequences under ``remat`` (see the module docstring)."""
    d, tokens = model.device, seqs * model.seq_len
    activations = model.memory.activation_bytes(tokens, model.n_layers, remat)
    logits = model.memory.logit_bytes(min(tokens, assumption("loss_chunk_tokens")))
    if mode == "data":
        weights = model.parameters * assumption("train_state_bytes_per_param")
        host = 0.0
    else:
        split = model.link_split(1, host_update)
        weights = split["rest"] + 2 * split["layer"] + split["rest_out"] + 2 * split["layer_out"]
        host = d.devices * model.parameters * assumption("host_state_bytes_per_param")
    return {"device_bytes": weights + activations + logits, "weights_and_state_bytes": weights,
            "activations_bytes": activations, "logits_bytes": logits, "host_bytes": host,
            "capacity_bytes": d.usable_memory_bytes}


def step_parts(model: DeviceModel, mode: str, tokens: float, accum: int, remat: str, host_update: bool) -> dict:
    """The parts of one step (wse.devices.cost_model) in ``mode`` for slices of ``tokens`` tokens per device."""
    if mode == "data":
        parts = model.data_step(tokens, accum, remat)
        parts["link_bytes"] = {"to_device": 0, "to_host": 0}
        return parts
    return model.streaming_step(tokens, accum, host_update)


def choose(model: DeviceModel, mode: str, per_device: int, host_update: bool) -> dict | None:
    """The fastest (accum, remat) whose memory fits, the fewest slices on a tie: {accum, remat, parts, memory};
    None when not even one sequence per slice fits."""
    best = None
    remats = REMATS if mode == "data" else ("full",)
    for accum in (a for a in range(1, per_device + 1) if per_device % a == 0):
        seqs = per_device // accum
        for remat in remats:
            memory = device_memory(model, mode, seqs, remat, host_update)
            if memory["device_bytes"] > memory["capacity_bytes"]:
                continue
            parts = step_parts(model, mode, seqs * model.seq_len, accum, remat, host_update)
            if best is None or parts["step_time_s"] < best["parts"]["step_time_s"] * (1 - 1e-9):
                best = {"accum": accum, "seqs": seqs, "remat": remat, "parts": parts, "memory": memory}
    return best


def refuse(model: DeviceModel, mode: str, name: str, host_update: bool) -> PlanError:
    """Why ``mode`` does not fit on the device even at one sequence per slice, with a fix that holds."""
    d = model.device
    need = device_memory(model, mode, 1, "full", host_update)
    have = need["capacity_bytes"]
    capacity = f"{d.name} gives {have / 1e9:.1f} GB ({d.memory_fraction:.0%} of {d.memory_bytes / 1e9:.0f} GB)"
    if mode == "data" and choose(model, "streaming", 1, host_update) is not None:
        fix = "use --mode streaming (weights and optimizer state in host memory)"
    else:
        fix = "use a shorter --seq-len or a device with more memory"
    return PlanError(f"{name} in {mode} mode needs {need['device_bytes'] / 1e9:.1f} GB per device for one sequence of "
                     f"{model.seq_len} tokens (weights and state {need['weights_and_state_bytes'] / 1e9:.1f} GB) but "
                     f"{capacity}; {fix}", needed_bytes=need["device_bytes"], available_bytes=have)


def plan_on_devices(shape, device: Device, *, systems: int | None = None, mode: str = "auto",
                    batch_size: int | None = None, seq_len: int | None = None, dtype: str | None = None,
                    options: PlanOptions | None = None, planner: dict | None = None,
                    model_name: str | None = None) -> DevicePlan:
    """The plan of training ``shape`` on ``device`` (``systems`` overrides its device count) in ``mode`` (auto, data,
    streaming): the batch defaults to the shape's published one (wse.costs.training_batch: a shape without one gets
    the published rule's, and the plan says so in ``details.batch_note``) and the sequence to 2048 tokens capped at
    its context, ``dtype`` to bfloat16; ``options`` to the defaults with a device file's ``planner`` overrides
    applied; ``plan_devices`` does the rest. PlanError when it cannot run."""
    if systems is not None:
        if systems < 1:
            raise PlanError(f"--systems must be at least 1, got {systems}")
        device = replace(device, devices=systems)
    batch_size, seq_len, note = training_batch(shape, batch_size, seq_len)
    if options is None:
        options = PlanOptions().updated(planner or {})
    plan = plan_devices(shape, device, mode=mode, batch_size=batch_size, seq_len=seq_len, dtype=dtype or "bfloat16",
                        options=options, model_name=model_name)
    if note:
        plan.details["batch_note"] = note
    return plan


def plan_devices(shape, device: Device, *, mode: str = "auto", batch_size: int, seq_len: int,
                 dtype: str = "bfloat16", options: PlanOptions | None = None, model_name: str | None = None,
                 host_update: bool = True) -> DevicePlan:
    """The plan of training ``shape`` on ``device.devices`` devices in ``mode`` (auto, data, streaming) at
    ``batch_size`` sequences of ``seq_len`` tokens per step, computing in ``dtype``; PlanError when it cannot run
    (an unknown mode, a batch smaller than the mesh, memory)."""
    name = model_name or getattr(shape, "name", "model")
    if mode not in MODES:
        raise PlanError(f"unknown mode '{mode}' on a device mesh; give one of {', '.join(MODES)} (layer-pipelined "
                        "plans are for CS systems)")
    if batch_size < device.devices:
        raise PlanError(f"a batch of {batch_size} sequences leaves devices idle on {device.devices} devices; give "
                        f"--batch-size {device.devices} or more (or fewer devices)")
    model = DeviceModel(shape, device, seq_len, dtype, options)
    per_device = math.ceil(batch_size / device.devices)
    modes = ("data", "streaming") if mode == "auto" else (mode,)
    chosen = None
    for m in modes:
        chosen = choose(model, m, per_device, host_update)
        if chosen is not None:
            mode = m
            break
    if chosen is None:
        raise refuse(model, modes[0], name, host_update)
    return device_plan(model, mode, chosen, batch_size, name, host_update)


def device_plan(model: DeviceModel, mode: str, chosen: dict, batch_size: int, name: str,
                host_update: bool) -> DevicePlan:
    """The DevicePlan of a chosen (accum, remat) (``choose``)."""
    d, parts = model.device, dict(chosen["parts"])
    step = parts.pop("step_time_s")
    link_bytes = parts.pop("link_bytes")
    tokens = batch_size * model.seq_len
    fwd, bwd = model.layer_seconds(chosen["seqs"] * model.seq_len, chosen["remat"])
    peak = d.devices * d.matmul_flops(model.dtype)
    return DevicePlan(
        model=name, system=d.name, systems=d.devices, kind="devices", mode=mode, fits=True, batch_size=batch_size,
        seq_len=model.seq_len, dtype=model.dtype, step_time_s=step, tokens_per_s=tokens / step,
        utilization=model.model_flops(tokens) / (step * peak), time_to_train_s=20 * model.parameters * step / tokens,
        memory=chosen["memory"], link_bytes=link_bytes, parts=parts,
        layers=[{"name": layer.name, "forward_s": float(f), "backward_s": float(b)}
                for layer, f, b in zip(model.layers, fwd, bwd)],
        assumptions={**device_assumptions(d), **model_assumptions(),
                     "plan.compute_efficiency": model.options.assumptions("pipelined")["plan.compute_efficiency"]},
        details={"devices": d.devices, "per_device_batch": math.ceil(batch_size / d.devices),
                 "accum": chosen["accum"], "slice_seqs": chosen["seqs"], "remat": chosen["remat"],
                 "host_update": host_update if mode == "streaming" else None, "parameters": model.parameters,
                 "peak_flops": peak, "model_flops_per_step": model.model_flops(tokens),
                 "train_tokens": 20 * model.parameters},
    )

"""Prediction versus measurement: the simulator's cost models, run with the ceilings the benchmark measured.

Every row: the device cost model (wse.devices.cost_model) over a device description built from the
measured ceilings (``device_from_ceilings``: matmul FLOP/s at each dtype, the copy bandwidth as memory bandwidth, the
all-reduce's link between devices, the pinned-host link each way, the host's AdamW rate, the dispatch cost as the
step's fixed cost; on CPU the emulated devices share the host's cores and memory bus, so each gets the host's
figures divided by the device count), at the row's own split: its batch over the data axis, its remat policy, its
attention kernel, its accumulation, for streaming whether the update ran in host memory (``plan["host_update"]``,
else True), for pipelined its stage split and microbatch count (DeviceModel.pipelined_step: the runtime's 1F1B in
lockstep ticks). Nothing is fitted to the measurement: the planner's ``compute_efficiency`` (0.5) and the cost model's
named figures (wse.devices.cost_model.ASSUMPTIONS) stay at their documented values.

Every row also gets the bytes it moves over the host link per step (``link_bytes``): 0 for data and pipelined, for
streaming wse.devices.hostlink's figure at the row's compute dtype, accumulation and update placement.
"""

from __future__ import annotations

import math

COMPUTE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def plan_options(dtype: str, **changes):
    """PlanOptions with the byte widths of the run (float32: 4-byte weights/grads/activations, 8 bytes of Adam
    moments; bfloat16: the planner's mixed-precision defaults); every planner assumption left at its default."""
    from wse.assumptions import PlanOptions

    if dtype == "float32":
        changes = {"weight_bytes": 4, "grad_bytes": 4, "optimizer_bytes": 8, "activation_bytes": 4, **changes}
    return PlanOptions(**changes)


def device_from_ceilings(ceilings: dict, n_devices: int, device_memory_bytes: int, *, fused_attention: bool = False):
    """The measured ceilings as a wse.device.Device of ``n_devices`` devices (see the module docstring), every
    figure tagged F (measured) or, for the switches, with the reason it holds on this backend."""
    from wse.devices.specs import DEVICES, Device

    cpu = ceilings["platform"] == "cpu"
    share = n_devices if cpu else 1
    tag = f"F: measured by wse bench on {ceilings['device']}"
    copy = ceilings["copy_bytes_per_s"] / share
    link = ceilings.get("host_link_bytes_per_s") or {}
    known = next((dev for key, dev in DEVICES.items() if key in ceilings["device"].lower()), None)
    peer, peer_source = ceilings.get("all_reduce_link_bytes_per_s"), tag
    if peer is None:  # one device measured: no all-reduce runs, but the figure must be there
        peer = known.device_link_bytes_per_s if known else copy
        peer_source = known.sources["device_link_bytes_per_s"] if known else \
            "U: no all-reduce measured on one device; the device's copy bandwidth stands in"
    switch = ("D: JAX's CPU backend keeps host and device memory in the same RAM and copies with the cores that "
              "compute (runtime/execution/streaming.py)") if cpu else "V: a GPU's PCIe link and copy engines"
    sources = {name: tag for name in ("devices", "matmul_flops_bfloat16", "matmul_flops_float32", "memory_bytes",
                                      "memory_bytes_per_s", "host_to_device_bytes_per_s", "device_to_host_bytes_per_s",
                                      "host_update_params_per_s", "step_overhead_s")}
    sources.update(memory_fraction="D: the runtime's device memory figure is what a run may use",
                   host_memory_separate=switch, link_full_duplex=switch, copy_engines=switch,
                   fused_attention="D: the row's attention kernel", device_link_bytes_per_s=peer_source)
    host_rate = ceilings.get("host_adamw_params_per_s")
    if host_rate is None:  # no CPU backend to measure on: the DGX host's assumed rate stands in
        host_rate = DEVICES["h100"].host_update_params_per_s
        sources["host_update_params_per_s"] = DEVICES["h100"].sources["host_update_params_per_s"]
    return Device(
        name=ceilings["device"], devices=n_devices,
        matmul_flops_bfloat16=ceilings["matmul_flops"]["bfloat16"] / share,
        matmul_flops_float32=ceilings["matmul_flops"]["float32"] / share,
        memory_bytes=float(device_memory_bytes), memory_fraction=1.0, memory_bytes_per_s=copy,
        host_to_device_bytes_per_s=link.get("host_to_device", ceilings["copy_bytes_per_s"] / 2) / share,
        device_to_host_bytes_per_s=link.get("device_to_host", ceilings["copy_bytes_per_s"] / 2) / share,
        host_memory_separate=not cpu, link_full_duplex=not cpu, copy_engines=not cpu, fused_attention=fused_attention,
        device_link_bytes_per_s=peer, host_update_params_per_s=host_rate,
        step_overhead_s=ceilings["dispatch_s"], sources=sources)


def row_accum(row: dict) -> int:
    """Accumulation slices per step of a measured row (its plan's, else 1: the bench steps whole batches)."""
    return int(((row.get("plan") or {}).get("link_bytes_per_step") or {}).get("accum", 1))


def predict_device_mode(cfg, row: dict, device, dtype: str) -> dict:
    """A data or streaming row's step from the device cost model at the row's split (module docstring)."""
    from wse.devices.cost_model import DeviceModel

    accum, remat = row_accum(row), row.get("remat") or "none"
    host_update = (row.get("plan") or {}).get("host_update", True)
    D = row["mesh"]["data"] * row["mesh"]["stage"]
    tokens = row["batch_size"] * row["seq_len"] / (D * accum)
    model = DeviceModel(cfg, device, row["seq_len"], dtype, plan_options(dtype))
    if row["mode"] == "streaming":
        parts = model.streaming_step(tokens, accum, host_update)
    elif row["mode"] == "pipelined":
        plan = row["plan"]
        slots = max(last - first + 1 for first, last in plan["stages"])
        M = plan["microbatches"]  # the batch splits over data only; each replica's rows flow through the stages
        replica_tokens = row["batch_size"] * row["seq_len"] / (row["mesh"]["data"] * accum)
        parts = model.pipelined_step(replica_tokens / M, M, slots, row["mesh"]["stage"])
    else:
        parts = model.data_step(tokens, accum, remat if remat in ("none", "dots", "full") else "full")
    step = parts.pop("step_time_s")
    parts.pop("link_bytes", None)
    extra = {}
    if row["mode"] == "pipelined":
        S, M = row["mesh"]["stage"], row["plan"]["microbatches"]
        extra = {"bubble_fraction": (S - 1) / (M + S - 1), "ticks": parts.pop("ticks")}
    return {**extra, "predicted_step_time_s": step, "planner": f"wse.devices.cost_model ({row['mode']} step)",
            "parts": parts, "accum": accum, "remat": "full" if row["mode"] in ("streaming", "pipelined") else remat,
            "host_update": host_update if row["mode"] == "streaming" else None,
            "compute_efficiency": model.options.compute_efficiency,
            "utilization": model.model_flops(row["batch_size"] * row["seq_len"]) / (
                step * device.devices * device.matmul_flops(dtype))}


def link_bytes(cfg, row: dict) -> dict:
    """Bytes the row moves over the host link per step, each way: wse.devices.hostlink's for streaming (the row's
    compute dtype, accumulation and update placement), 0 for data and pipelined."""
    if row["mode"] != "streaming":
        return {"to_device": 0, "to_host": 0}
    from wse.devices.hostlink import streaming_link_bytes

    out = streaming_link_bytes(cfg, compute_bytes=COMPUTE_BYTES[row["dtype"]], accum=row_accum(row),
                               host_update=(row.get("plan") or {}).get("host_update", True))
    return {"to_device": out["to_device"], "to_host": out["to_host"]}


def predict(row: dict, ceilings: dict, device_memory_bytes: int) -> dict:
    """The prediction for a measured training row (training.measure_training's dict)."""
    from model.config import get_config

    cfg = get_config(row["model"])
    shape, dtype = row["mesh"], row["dtype"]
    n = shape["data"] * shape["stage"] * shape["model"]
    device = device_from_ceilings(ceilings, n, device_memory_bytes, fused_attention=row.get("attention") == "cudnn")
    out = predict_device_mode(cfg, row, device, dtype)
    out["link_bytes"] = link_bytes(cfg, row)
    out["ratio"] = out["predicted_step_time_s"] / row["step_time_s"] if row.get("step_time_s") else math.nan
    return out

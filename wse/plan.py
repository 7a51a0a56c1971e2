"""The one entry of the simulator: ``make_plan(shape, target, ...)`` reads what a plan runs on and hands the plan to
the wing that makes it; ``plan_all`` plans every shape on every CS system in every training mode.

A target is a CS system (cs1, cs2, cs3), a cluster (andromeda, cg1, cg3: its system and its size), a device (h100,
h200), a YAML file (``kind: device`` describes a device mesh, wse.devices.files; any other a CS system,
wse.wafer.systems), or one already read: a System, a Device or a ``Target``. CS systems are planned by the wafer wing
(wse.wafer.plan: layer-pipelined or weight-streaming training, decode and prefill), device meshes by the device wing
(wse.devices.plan: data parallel or weight streaming over the host link). This module is the only one that knows both
wings; neither imports the other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from wse.assumptions import PlanOptions
from wse.devices.files import find_device
from wse.devices.plan import plan_on_devices
from wse.devices.specs import Device
from wse.errors import PlanError
from wse.wafer.hardware import CLUSTERS, System
from wse.wafer.plan import plan_on_system
from wse.wafer.systems import get_system, load_planner_overrides

DEVICE_TRAINING_ONLY = ("a device mesh is planned for training only, without --task, --picture, --timeline or "
                        "--memoryx (those are for CS systems); drop them or give --system cs2")


@dataclass(frozen=True)
class Target:
    """What a plan runs on, read once from the name or file given (``name``).

    A CS system: ``system`` and its cluster's size (``cluster_systems``: None unless a cluster or a file that gives
    ``systems``), and ``options``, the planner assumptions with a system file's ``planner:`` section applied (checked
    as the file is read; None for a System given as an object). A device mesh: ``device`` and ``planner``, its file's
    ``planner:`` section, which the device wing applies once the batch is settled (wse.devices.plan.plan_on_devices).
    """

    name: str
    system: System | None = None
    cluster_systems: int | None = None
    options: PlanOptions | None = None
    device: Device | None = None
    planner: dict = field(default_factory=dict)

    @property
    def wing(self) -> str:
        """``devices`` for a device mesh, ``wafer`` for a CS system."""
        return "devices" if self.device is not None else "wafer"


def read_target(target, *, dtype: str | None = None) -> Target:
    """The Target of ``target``: a name, a path, a System, a Device or a Target (module docstring). A compute
    ``dtype`` is for device meshes only: given for a CS system it is refused before the system is looked up (a CS
    plan uses the planner's byte widths). PlanError for an unknown name, a bad file or such a dtype."""
    if isinstance(target, System):
        target = Target(target.name, system=target)
    elif isinstance(target, Device):
        target = Target(target.name, device=target)
    if isinstance(target, Target):
        if target.device is None and dtype is not None:
            raise PlanError(refused_dtype(target.name))
        return target
    name = str(target)
    found = find_device(name)
    if found is not None:
        device, planner = found
        return Target(name, device=device, planner=planner)
    if dtype is not None:
        raise PlanError(refused_dtype(name))
    system, cluster_systems = get_system(name)
    options = PlanOptions()
    if Path(name).suffix.lower() in (".yaml", ".yml"):
        options = options.updated(load_planner_overrides(name))
    return Target(name, system=system, cluster_systems=cluster_systems, options=options)


def refused_dtype(name: str) -> str:
    """Why a compute dtype is refused for the CS system ``name``, and the fix."""
    return (f"--dtype is for device meshes (h100, h200 or a 'kind: device' file); {name} plans use the planner's byte "
            "widths (a system file's planner: section changes them)")


def make_plan(
    shape,
    target,
    *,
    systems: int | None = None,
    mode: str = "auto",
    batch_size: int | None = None,
    seq_len: int | None = None,
    options: PlanOptions | None = None,
    model_name: str | None = None,
    memoryx: float | str | None = None,
    task: str = "train",
    prompt_len: int | None = None,
    new_tokens: int | None = None,
    dtype: str | None = None,
):
    """Plan ``shape`` (any object with the GPT-2 shape fields, wse.shape) on ``target`` (module docstring).

    CS system (wse.wafer.plan.plan_on_system): a Plan for ``task`` train, an InferencePlan for decode, prefill or
    generate; ``systems`` defaults to the cluster's size, else 1 (a named cluster refuses more systems than it has);
    ``mode`` auto, pipelined or streaming; ``memoryx`` (bytes or '12TB') sizes the MemoryX; ``prompt_len`` is the
    prompt per request of prefill and generate, ``new_tokens`` generate's output per request. Device mesh
    (wse.devices.plan.plan_on_devices): a DevicePlan; ``systems`` overrides the device count; ``mode`` auto, data or
    streaming; ``dtype`` bfloat16 (default) or float32; training only. Both: ``batch_size`` sequences per step (the
    shape's published batch by default; concurrent requests for inference, default 1), ``seq_len`` tokens per
    sequence (2048 capped at the model's context). ``options`` replaces the planner assumptions (by default the
    target file's ``planner:`` section over the defaults). PlanError (one line naming the problem and the fix) when
    the target is unknown or the plan cannot be made as asked.
    """
    target = read_target(target, dtype=dtype)
    options = options if options is not None else target.options
    if target.device is not None:
        if task != "train" or memoryx or prompt_len is not None or new_tokens is not None:
            raise PlanError(DEVICE_TRAINING_ONLY)
        return plan_on_devices(shape, target.device, systems=systems, mode=mode, batch_size=batch_size,
                               seq_len=seq_len, dtype=dtype, options=options, planner=target.planner,
                               model_name=model_name)
    if systems is None:
        systems = target.cluster_systems
    elif str(target.name).lower() in CLUSTERS and systems > target.cluster_systems:
        raise PlanError(f"{target.name} has {target.cluster_systems} {target.system.name} systems, asked for {systems}; "
                        f"give --systems {target.cluster_systems} or fewer, or --system "
                        f"{target.system.name.lower().replace('-', '')} --systems {systems} for a cluster of your own")
    return plan_on_system(shape, target.system, systems=1 if systems is None else systems, mode=mode,
                          batch_size=batch_size, seq_len=seq_len, options=options, model_name=model_name,
                          memoryx=memoryx, task=task, prompt_len=prompt_len, new_tokens=new_tokens)


def plan_all(
    shapes: Iterable,
    systems: Iterable[str] = ("cs1", "cs2", "cs3"),
    modes: Iterable[str] = ("pipelined", "streaming"),
    options: PlanOptions | None = None,
) -> list[dict]:
    """Plan every shape on every system in every mode, at each shape's published batch size: the table of the
    closing note and what benchmarks time. A plan that cannot be made is a row with ``fits: False`` and the reason."""
    rows = []
    modes = list(modes)
    for sys_name in systems:
        system, _ = get_system(sys_name)
        for shape in shapes:
            for mode in modes:
                start = time.perf_counter()
                row = {"model": getattr(shape, "name", "model"), "system": system.name, "mode": mode}
                try:
                    plan = make_plan(shape, system, mode=mode, options=options)
                except PlanError as err:
                    row.update(fits=False, error=str(err), needed_bytes=err.needed_bytes,
                               available_bytes=err.available_bytes)
                else:
                    row.update(fits=True, step_time_s=plan.step_time_s, tokens_per_s=plan.tokens_per_s,
                               utilization=plan.utilization, time_to_train_s=plan.time_to_train_s,
                               batch_size=plan.batch_size, seq_len=plan.seq_len)
                row["plan_seconds"] = time.perf_counter() - start
                rows.append(row)
    return rows

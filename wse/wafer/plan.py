"""Choosing the task, the execution mode and the MemoryX, and planning: the entry point of the command line and
benchmarks. Training plans are layer-pipelined or weight-streaming (wse.pipelined, wse.streaming); inference plans
(decode, prefill) keep the model resident on one or more wafers (wse.inference)."""

from __future__ import annotations

import time
from typing import Iterable

from wse.assumptions import PlanOptions
from wse.errors import PlanError
from wse.plans import Plan
from wse.wafer.hardware import System, memoryx_options, parse_capacity, unpublished, with_memoryx
from wse.wafer.pipelined import plan_pipelined
from wse.wafer.streaming import plan_streaming
from wse.wafer.systems import get_system

MODES = ("auto", "pipelined", "streaming")
TASKS = ("train", "decode", "prefill")
DEFAULT_SEQ_LEN = 2048


def default_seq_len(shape) -> int:
    """2048 tokens (how Cerebras-GPT was trained), capped at the model's context."""
    return min(DEFAULT_SEQ_LEN, shape.max_seq_len)


def make_plan(
    shape,
    system: System | str,
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
):
    """Plan ``shape`` on ``systems`` x ``system``.

    ``system`` may be a name (cs2, a cluster such as andromeda, a YAML file); ``systems`` defaults to the cluster's
    size, else 1. ``auto`` is layer-pipelined when the model fits on one wafer and one system is asked for (pipelined mode does not
    scale out), weight streaming otherwise. ``batch_size`` defaults to the shape's published batch size
    (``shape.batch_size``), ``seq_len`` to 2048 capped at the model's context. ``memoryx`` (bytes or '12TB') sizes
    the MemoryX; by default the smallest one sold for the system that holds the model. ``task`` decode or prefill
    returns an inference plan (wse.inference; ``batch_size`` is then concurrent requests, default 1).
    """
    if isinstance(system, str):
        system, cluster_size = get_system(system)
        systems = systems if systems is not None else cluster_size
    systems = 1 if systems is None else systems
    if task not in TASKS:
        raise PlanError(f"unknown task '{task}'; give one of {', '.join(TASKS)}")
    if task != "train":
        from wse.wafer.inference import plan_inference

        return plan_inference(shape, system, wafers=systems, task=task, batch_size=batch_size or 1,
                              seq_len=seq_len, prompt_len=prompt_len, options=options, model_name=model_name)
    system = choose_memoryx(system, memoryx, shape, options or PlanOptions())
    batch_size, seq_len = training_defaults(shape, mode, systems, batch_size, seq_len)
    return plan_training(shape, system, systems, mode, batch_size, seq_len, options or PlanOptions(),
                         model_name or getattr(shape, "name", "model"))


def plan_training(shape, system: System, systems: int, mode: str, batch_size: int, seq_len: int,
                  options: PlanOptions, model_name: str) -> Plan:
    """A training plan in ``mode``: ``auto`` tries layer-pipelined on one system, then weight streaming."""

    def pipelined() -> Plan:
        return plan_pipelined(shape, system.grid(), batch_size=batch_size, seq_len=seq_len, options=options,
                              model_name=model_name, system_name=system.name, chip_assumptions=unpublished(system.chip))

    def streaming() -> Plan:
        return plan_streaming(shape, system, systems=systems, batch_size=batch_size, seq_len=seq_len,
                              options=options, model_name=model_name)

    if mode == "pipelined":
        if systems > 1:
            raise PlanError("layer-pipelined mode runs on one system (it does not scale out); "
                            "use --mode streaming for several systems")
        return pipelined()
    if mode == "streaming":
        return streaming()
    if systems == 1:
        try:
            return pipelined()
        except PlanError as pipelined_error:
            if system.memoryx is None:
                raise PlanError(f"{str(pipelined_error).removesuffix('; use --mode streaming')}, and {system.name} "
                                "has no MemoryX for weight streaming; use --system cs2 or cs3",
                                needed_bytes=pipelined_error.needed_bytes,
                                available_bytes=pipelined_error.available_bytes) from None
    return streaming()


def training_defaults(shape, mode: str, systems: int, batch_size: int | None, seq_len: int | None) -> tuple[int, int]:
    """The batch (the shape's published one by default) and sequence length (2048 capped at the context) of a
    training plan, after refusing a bad mode, system count, batch or length."""
    if mode == "data":
        raise PlanError("data mode plans a device mesh: give --system h100, h200 or a 'kind: device' file (a CS "
                        "system trains layer-pipelined or weight-streaming)")
    if mode not in MODES:
        raise PlanError(f"unknown mode '{mode}'; give one of {', '.join(MODES)}")
    if systems < 1:
        raise PlanError(f"--systems must be at least 1, got {systems}")
    if batch_size is None:
        batch_size = getattr(shape, "batch_size", None)
        if batch_size is None:
            raise PlanError("no batch size: the model shape has no published batch_size; give --batch-size")
    if seq_len is None:
        seq_len = default_seq_len(shape)
    if seq_len > shape.max_seq_len:
        raise PlanError(f"--seq-len {seq_len} exceeds the model's max_seq_len {shape.max_seq_len}; give at most that")
    if batch_size < 1 or seq_len < 1:
        raise PlanError(f"batch size and sequence length must be positive, got {batch_size} and {seq_len}")
    return batch_size, seq_len


def choose_memoryx(system: System, memoryx: float | str | None, shape, options: PlanOptions) -> System:
    """The system with the MemoryX asked for, or by default the smallest sold for it that holds the model's
    weights, optimizer state and gradient accumulator (the smallest there is when none does: the planner refuses)."""
    if system.memoryx is None:
        return system
    if memoryx is not None:
        return with_memoryx(system, parse_capacity(memoryx) if isinstance(memoryx, str) else float(memoryx))
    from wse.costs import model_layers, parameters

    need = parameters(model_layers(shape, 1)) * options.memoryx_bytes_per_param
    sizes = memoryx_options(system)
    holds = [c for c in sizes if c >= need]
    chosen = holds[0] if holds else sizes[0]
    return system if chosen == system.memoryx.capacity_bytes else with_memoryx(system, chosen)


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

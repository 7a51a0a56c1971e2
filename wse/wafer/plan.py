"""Planning on CS systems: the task (training, or inference: decode, prefill and generate), the training mode and the
MemoryX. Training plans are layer-pipelined or weight-streaming (wse.wafer.pipelined, wse.wafer.streaming); inference
plans keep the model resident on one or more wafers (wse.wafer.inference, wse.wafer.generate). The one entry
(wse.plan.make_plan) calls ``plan_on_system`` for a CS system or a cluster."""

from __future__ import annotations

from wse.assumptions import PlanOptions
from wse.errors import PlanError
from wse.plans import Plan
from wse.costs import training_batch
from wse.wafer.hardware import System, memoryx_options, parse_capacity, unpublished, with_memoryx
from wse.wafer.pipelined import plan_pipelined
from wse.wafer.streaming import plan_streaming

MODES = ("auto", "pipelined", "streaming")
TASKS = ("train", "decode", "prefill", "generate")


def plan_on_system(
    shape,
    system: System,
    *,
    systems: int = 1,
    mode: str = "auto",
    batch_size: int | None = None,
    seq_len: int | None = None,
    options: PlanOptions | None = None,
    model_name: str | None = None,
    memoryx: float | str | None = None,
    task: str = "train",
    prompt_len: int | None = None,
    new_tokens: int | None = None,
):
    """Plan ``shape`` on ``systems`` x ``system``: a Plan (training) or an InferencePlan (decode, prefill, generate).

    ``auto`` is layer-pipelined when the model fits on one wafer and one system is asked for (pipelined mode does not
    scale out), weight streaming otherwise. ``batch_size`` defaults to the shape's published batch size
    (``shape.batch_size``; a shape without one gets the published rule's, wse.costs.training_batch, and the plan says
    so in ``details.batch_note``), ``seq_len`` to 2048 capped at the model's context. ``memoryx`` (bytes or '12TB')
    sizes the MemoryX; by default the smallest one sold for the system that holds the model. ``task`` decode, prefill
    or generate returns an inference plan (wse.wafer.inference; ``batch_size`` is then concurrent requests, default
    1; ``prompt_len`` the prompt of prefill and generate, ``new_tokens`` generate's output per request). PlanError
    when the plan cannot be made as asked.
    """
    if task not in TASKS:
        raise PlanError(f"unknown task '{task}'; give one of {', '.join(TASKS)}")
    check_task_inputs(task, prompt_len, new_tokens, seq_len, memoryx)
    if task != "train":
        return plan_serving(shape, system, wafers=systems, task=task, batch_size=batch_size or 1, seq_len=seq_len,
                            prompt_len=prompt_len, new_tokens=new_tokens, options=options, model_name=model_name)
    system = choose_memoryx(system, memoryx, shape, options or PlanOptions())
    batch_size, seq_len, note = training_defaults(shape, mode, systems, batch_size, seq_len)
    plan = plan_training(shape, system, systems, mode, batch_size, seq_len, options or PlanOptions(),
                         model_name or getattr(shape, "name", "model"))
    if note:
        plan.details["batch_note"] = note
    return plan


def check_task_inputs(task: str, prompt_len: int | None, new_tokens: int | None, seq_len: int | None,
                      memoryx) -> None:
    """Refuse inputs the task would ignore: a prompt for training or decode, new tokens outside generate, a MemoryX
    for inference, a --seq-len beside generate's prompt and new tokens."""
    if prompt_len is not None and task in ("train", "decode"):
        fix = ("decode's context (the KV cache per request) is --seq-len; use --task generate for a prompt and its "
               "new tokens" if task == "decode" else "a training plan has no prompt; drop it or give --task prefill")
        raise PlanError(f"--prompt-len is for --task prefill or generate: {fix}")
    if new_tokens is not None and task != "generate":
        raise PlanError("--new-tokens is for --task generate (prompt, then new tokens); drop it or give --task generate")
    if memoryx is not None and task != "train":
        raise PlanError("--memoryx sizes a training plan's MemoryX; inference keeps the model in SRAM: drop --memoryx")
    if task == "generate" and seq_len is not None:
        raise PlanError("--task generate's context is --prompt-len + --new-tokens; drop --seq-len")


def plan_serving(shape, system: System, *, wafers: int, task: str, batch_size: int, seq_len: int | None,
                 prompt_len: int | None, new_tokens: int | None, options: PlanOptions | None, model_name: str | None):
    """An inference plan: decode or prefill (wse.wafer.inference) or generate (wse.wafer.generate)."""
    if task == "generate":
        from wse.wafer.generate import plan_generate

        return plan_generate(shape, system, wafers=wafers, batch_size=batch_size, prompt_len=prompt_len,
                             new_tokens=new_tokens, options=options, model_name=model_name)
    from wse.wafer.inference import plan_inference

    return plan_inference(shape, system, wafers=wafers, task=task, batch_size=batch_size, seq_len=seq_len,
                          prompt_len=prompt_len, options=options, model_name=model_name)


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


def training_defaults(shape, mode: str, systems: int, batch_size: int | None,
                      seq_len: int | None) -> tuple[int, int, str | None]:
    """The batch, sequence length and batch note of a training plan on CS systems (wse.costs.training_batch: the
    shape's published batch or the published rule's, 2048 capped at the context), after refusing a bad mode or
    system count."""
    if mode == "data":
        raise PlanError("data mode plans a device mesh: give --system h100, h200 or a 'kind: device' file (a CS "
                        "system trains layer-pipelined or weight-streaming)")
    if mode not in MODES:
        raise PlanError(f"unknown mode '{mode}'; give one of {', '.join(MODES)}")
    if systems < 1:
        raise PlanError(f"--systems must be at least 1, got {systems}")
    return training_batch(shape, batch_size, seq_len)


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

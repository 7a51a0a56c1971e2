"""Placement of a run on a device mesh (the runtime half of planning; the wafer half is wse/plan.py): which mode,
how the layers split into pipeline stages, how many microbatches, and whether the backward pass recomputes each layer's activations (rematerialisation) instead of keeping them.

A plan is a plain JSON-able dict (the run's JSON output carries it). The stage split is the wafer simulator's
contiguous partition (wse.partition.partition_layers): the slowest stage's FLOPs minimised, each stage's training
state within a device's memory — the same cut the simulator makes into wafer regions.
"""

from __future__ import annotations

import os

from dataclasses import dataclass, replace

from model.config import GPTConfig
from model.errors import first_line
from model.remat import REMAT_CHOICES, remat_choice
from runtime.errors import UserError
from wse.costs import model_layers
from wse.devices.cost_model import MemoryModel, assumption, cheapest_fitting
from wse.shape import as_shape

MODES = ("data", "pipelined", "streaming", "auto")
# Pipeline schedules (runtime/execution/pipelined.py runs them; named here, where no JAX is imported):
#   "1f1b"   one forward, one backward (the simulator's, wse/schedule.py): stage s keeps min(M, S - s) microbatches
#            in flight, so activation memory is bounded by the stage count;
#   "gpipe"  all forwards, then all backwards (autodiff): every stage keeps all M microbatches.
SCHEDULES = ("1f1b", "gpipe")

# Microbatches per stage the planner aims for when the user gives none: GPipe's bubble is (S-1)/(M+S-1), so
# M = 4 S keeps it under 20 % while each microbatch stays large enough to use a device well.
MICROBATCHES_PER_STAGE = 4
# auto picks weight streaming when the training state (fp32 weights, gradients, two Adam moments = 16 bytes per
# parameter, the device cost model's figure) split over the model axis would take more than this fraction of one
# device's memory.
STREAMING_MEMORY_FRACTION = 0.8
TRAIN_STATE_BYTES_PER_PARAM = int(assumption("train_state_bytes_per_param"))

# Rematerialisation ("remat", activation checkpointing) is a memory-for-compute trade, with the policies of
# model/remat.py: none < dots < full in memory saved and in compute spent ("full" runs every block's forward twice,
# ~1/3 more model FLOPs). ``auto`` (the default) takes the cheapest policy whose predicted peak -- training state, the
# activations that policy keeps, one loss chunk's logits, all from the device cost model's memory model
# (wse.devices.cost_model.MemoryModel, which the device planner uses too) -- stays within this fraction of a device's
# memory (the rest is XLA's workspace and allocator slack): MaxText's rule, recompute only when memory requires.
REMAT_MEMORY_FRACTION = 0.8
# Per logit of one loss chunk ([tokens, vocab], float32): the logits, their exponentials and their gradient.
LOGIT_BYTES = assumption("logit_bytes")
# model.gpt.ATTENTION_KERNELS plus "auto" (spelled out: this module is imported where JAX must not be)
ATTENTION_CHOICES = ("auto", "xla", "cudnn")


def _block(cfg: GPTConfig, seq_len: int | None):
    """One transformer block of ``cfg`` as the simulator's cost layer (wse.costs: the family's matmuls and params),
    its attention counted at ``seq_len`` (a block's cost does not depend on the model's context limit)."""
    t = seq_len or cfg.max_seq_len
    shape = as_shape(cfg) if t <= cfg.max_seq_len else replace(as_shape(cfg), max_seq_len=t)
    return model_layers(shape, t, split_blocks=False, attention_probs_stashed=False)[1]


def layer_flops(cfg: GPTConfig, seq_len: int | None = None) -> list[float]:
    """Forward FLOPs per token of each transformer block (dense matmuls at the family's widths and attention at
    context ``seq_len``)."""
    return [_block(cfg, seq_len).flops_per_token] * cfg.n_layers


def layer_state_bytes(cfg: GPTConfig) -> list[float]:
    """Training-state bytes of each block (fp32 weights, gradients and two Adam moments)."""
    return [float(_block(cfg, None).params * TRAIN_STATE_BYTES_PER_PARAM)] * cfg.n_layers


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


def activation_itemsize(dtype: str, platform: str = "cpu") -> int:
    """Bytes per kept activation value: the compute dtype's, except that XLA:CPU keeps bfloat16 activations in float32
    (it computes bfloat16 matmuls in float32 and saves the converted values: the bfloat16 step's temp bytes were 1.1x
    the float32 step's)."""
    import numpy as np

    return 4 if platform == "cpu" else np.dtype(dtype).itemsize


def memory_model(cfg: GPTConfig, dtype: str, platform: str = "cpu") -> MemoryModel:
    """The device cost model's memory model of ``cfg`` with this platform's bytes per kept value."""
    return MemoryModel(cfg, activation_itemsize(dtype, platform))


def activation_bytes(cfg: GPTConfig, tokens: float, layers: int, dtype: str, policy: str,
                     platform: str = "cpu") -> float:
    """Bytes of activations ``layers`` blocks keep for the backward pass over ``tokens`` tokens under remat
    ``policy``, plus for "full" and "dots" the one block being recomputed (MemoryModel.activation_bytes)."""
    return memory_model(cfg, dtype, platform).activation_bytes(tokens, layers, policy)


def pipeline_microbatches(plan: dict, batch_size: int) -> int:
    """The plan's microbatch count, or the one choose_microbatches would take for ``batch_size`` sequences."""
    local = max(1, int(batch_size / plan["mesh"]["data"]))
    return plan.get("microbatches") or choose_microbatches(local, plan["mesh"]["stage"])


def device_tokens_and_layers(plan: dict, cfg: GPTConfig, batch_size: int) -> tuple[float, int]:
    """(sequences one device runs through its blocks per accumulation step, how many blocks it holds). Rows are
    split over ``data`` (and over ``stage`` outside the pipeline); a GPipe stage keeps the activations of all its
    M + S - 1 ticks for the backward pass (every microbatch, plus the bubble ticks' zeros), through its own slots
    only. (1F1B keeps far less: see kept_activations.)"""
    shape = plan["mesh"]
    if plan["mode"] == "pipelined":
        local, S, M = batch_size / shape["data"], shape["stage"], pipeline_microbatches(plan, batch_size)
        return local * (M + S - 1) / M, plan["slots_per_stage"]
    return batch_size / (shape["data"] * shape["stage"]), cfg.n_layers


def kept_activations(plan: dict, cfg: GPTConfig, batch_size: int, seq_len: int) -> tuple[dict[str, float], float]:
    """({policy: activation bytes a device keeps for the backward pass}, bytes of one loss chunk's logits), from the
    device cost model's memory model (memory_model).

    1F1B (pipelined.one_f_one_b): the first stage, the fullest, stashes min(M, S) microbatch inputs (its in-flight
    count, plan["in_flight"][0]) plus four [mb, T, d] messages (received and sent, both directions), and recomputes
    one microbatch at a time through its slots under the policy; its loss head sees one microbatch at a time.
    Otherwise every row a device runs through its blocks is kept (device_tokens_and_layers)."""
    from model.gpt import LOSS_CHUNK_TOKENS

    shape, memory = plan["mesh"], memory_model(cfg, plan["compute_dtype"], plan["platform"])
    if plan["mode"] == "pipelined" and plan.get("schedule", SCHEDULES[0]) == "1f1b":
        M = pipeline_microbatches(plan, batch_size)
        mb_rows = batch_size / M  # one microbatch over all replicas
        tokens = mb_rows / shape["data"] * seq_len
        stash = memory.stash_bytes(tokens, min(M, shape["stage"]) + 4)
        acts = {p: stash + v for p, v in memory.policy_bytes(tokens, plan["slots_per_stage"]).items()}
        chunks = max(1, -(-int(mb_rows * seq_len) // LOSS_CHUNK_TOKENS))
    else:
        rows, layers = device_tokens_and_layers(plan, cfg, batch_size)
        tokens = rows * seq_len
        acts = memory.policy_bytes(tokens, layers)
        chunks = max(1, -(-batch_size * seq_len // LOSS_CHUNK_TOKENS))
    return acts, memory.logit_bytes(tokens / chunks) / shape["model"]


@dataclass(frozen=True)
class Remat:
    """A run's remat decision, the value the executor applies (model/remat.py's policies): the policy, why, and when
    the plan chose it by memory the predicted bytes of each policy. ``record`` writes it into the plan's JSON."""

    policy: str
    reason: str
    activation_bytes: dict | None = None

    def record(self, plan: dict) -> "Remat":
        plan["remat"], plan["remat_reason"] = self.policy, self.reason
        if self.activation_bytes is not None:
            plan["activation_bytes"] = dict(self.activation_bytes)
        return self


def requested_remat(value) -> str:
    """execution.remat as one of model/remat.py's REMAT_CHOICES (its one parser); UserError otherwise."""
    try:
        return remat_choice(value)
    except ValueError:
        raise UserError(f"unknown execution.remat '{value}'; use one of {', '.join(REMAT_CHOICES)} (or true = full, "
                        "false = none)") from None


def decide_remat(plan: dict, cfg: GPTConfig, *, batch_size: int | None, seq_len: int | None) -> Remat | None:
    """The remat decision for ``plan["requested_remat"]`` (a policy: forced; "auto": the cheapest policy whose
    predicted peak fits, see REMAT_MEMORY_FRACTION), or None while an "auto" run's batch size is unknown. Streaming
    always recomputes."""
    requested = plan["requested_remat"]
    if plan["mode"] == "streaming":
        return Remat("full", "weight streaming brings each layer in again for its backward pass")
    if requested != "auto":
        return Remat(requested, "asked for")
    if batch_size is None:
        return None
    shape = plan["mesh"]
    state = cfg.parameters * TRAIN_STATE_BYTES_PER_PARAM / shape["model"] / (shape["data"] if plan["fsdp"] else 1)
    acts, logits = kept_activations(plan, cfg, batch_size, seq_len or cfg.max_seq_len)
    budget = REMAT_MEMORY_FRACTION * plan["device_memory_bytes"]
    need = {p: state + v + logits for p, v in acts.items()}
    fits = cheapest_fitting(need, budget)
    gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    reason = (f"predicted per device: none {gib(need['none'])}, dots {gib(need['dots'])}, full {gib(need['full'])}; "
              f"budget {REMAT_MEMORY_FRACTION:.0%} of {plan['device_memory_bytes'] / 2**30:.1f} GiB = {gib(budget)}: "
              + (f"'{fits}' is the cheapest that fits" if fits else "none fits; 'full' keeps the least"))
    return Remat(fits or "full", reason, {p: int(v) for p, v in acts.items()})


def resolve_attention(requested: str, cfg: GPTConfig, *, platform: str, dtype: str, seq_len: int | None
                      ) -> tuple[str, str]:
    """(kernel, reason) for the attention (model.gpt.ATTENTION_KERNELS): "auto" takes cuDNN's flash kernel on an
    NVIDIA GPU with bfloat16/float16 compute when a trial lowering of its forward and backward at this shape works,
    else the XLA kernel. Asking for "cudnn" where it cannot run raises UserError with the reason."""
    if requested not in ATTENTION_CHOICES:
        raise UserError(f"unknown execution.attention '{requested}'; use one of {', '.join(ATTENTION_CHOICES)}")
    if requested == "xla":
        return "xla", "asked for"
    why_not = None
    if platform != "gpu":
        why_not = f"the cuDNN kernel needs an NVIDIA GPU (platform here: {platform})"
    elif dtype not in ("bfloat16", "float16"):
        why_not = f"the cuDNN kernel needs bfloat16 or float16 compute (train.dtype is {dtype})"
    else:
        why_not = cudnn_attention_problem(cfg, seq_len or cfg.max_seq_len, dtype)
    if why_not is None:
        return "cudnn", "asked for" if requested == "cudnn" else "NVIDIA GPU with " + dtype + " compute: fused flash kernel"
    if requested == "cudnn":
        raise UserError(f"execution.attention=cudnn cannot run here: {why_not}; use execution.attention=auto or xla")
    return "xla", why_not


def cudnn_probe_shapes(cfg: GPTConfig, seq_len: int, dtype: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(query shape, key/value shape) the model's attention hands the cuDNN kernel for one row of ``seq_len`` tokens:
    [1, T, n_heads, d_head] and [1, T, K, d_head] with K the K/V heads (grouped-query attention passes them
    unrepeated, model/attention.causal_attention)."""
    return (1, seq_len, cfg.n_heads, cfg.d_head), (1, seq_len, cfg.kv_heads, cfg.d_head)


def cudnn_attention_problem(cfg: GPTConfig, seq_len: int, dtype: str) -> str | None:
    """None when JAX lowers cuDNN causal attention (forward and gradient) for one row of ``seq_len`` tokens with the
    model's query and K/V heads (cudnn_probe_shapes) and its attention scale in ``dtype``, else the first line of why
    not (cuDNN version, head size, grouping ...)."""
    import jax
    import jax.numpy as jnp

    from model.gpt import attention_scale

    q_shape, kv_shape = cudnn_probe_shapes(cfg, seq_len, dtype)
    q = jax.ShapeDtypeStruct(q_shape, jnp.dtype(dtype))
    kv = jax.ShapeDtypeStruct(kv_shape, jnp.dtype(dtype))
    scale = attention_scale(cfg)

    def loss(q, k, v):
        out = jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True, implementation="cudnn")
        return out.astype(jnp.float32).sum()

    try:
        jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, kv, kv)
    except Exception as err:  # noqa: BLE001 - any refusal means: use the XLA kernel
        return first_line(err)
    return None


def make_placement(mode: str, cfg: GPTConfig, shape: dict[str, int], *, microbatches: int | None, seq_len: int | None,
              device_bytes: int, fsdp: bool, remat="auto", dtype: str, batch_size: int | None = None,
              attention: str = "auto", platform: str = "cpu", schedule: str = SCHEDULES[0]) -> dict:
    """The plan dict. ``microbatches`` None for a pipeline is resolved when the batch size is first seen; so is
    ``remat`` "auto" (decide by memory, decide_remat; requested_remat for the accepted values) when ``batch_size``
    (sequences per accumulation step) is not given. ``attention``: see resolve_attention; ``platform`` is the mesh's.
    ``schedule`` (SCHEDULES) is the pipeline's, recorded for the pipelined mode only."""
    if schedule not in SCHEDULES:
        raise UserError(f"unknown pipeline schedule '{schedule}'; use one of {', '.join(SCHEDULES)}")
    resolved, reason = resolve_mode(mode, cfg, shape, device_bytes)
    remat = requested_remat(remat)
    kernel, kernel_reason = resolve_attention(attention, cfg, platform=platform, dtype=dtype, seq_len=seq_len)
    plan = {
        "mode": resolved, "requested_mode": mode, "reason": reason, "mesh": dict(shape),
        "fsdp": fsdp, "requested_remat": remat, "remat": None, "compute_dtype": dtype,
        "attention": kernel, "attention_reason": kernel_reason, "platform": platform,
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
            microbatches=microbatches, schedule=schedule,
            embedding=(  # runtime/execution/pipelined.py prefixes the parameters outside the blocks it replicates
                "embedding on the first stage and head + loss on the last, per microbatch inside the pipeline"
                if schedule == "1f1b" else "embedding and head run outside the pipeline on the whole mesh"),
        )
        set_bubble(plan)
    elif microbatches not in (None, 1):
        raise UserError(f"execution.microbatches={microbatches} applies to the pipelined mode only; "
                        "other modes split a batch by gradient accumulation (accum_steps)")
    decision = decide_remat(plan, cfg, batch_size=batch_size, seq_len=seq_len)
    if decision is None:
        plan["remat"], plan["remat_reason"] = None, "decided when the batch size is known"
    else:
        decision.record(plan)
    return plan


def set_bubble(plan: dict) -> None:
    """Record the pipeline's idle fraction and in-flight microbatches per stage once M is known. Both schedules
    idle a stage (S - 1) / (M + S - 1) of the time; 1F1B keeps min(M, S - s) microbatches in flight on stage s (the
    simulator's wse/pipelined.py ``in_flight``), GPipe all M."""
    S, M = plan["mesh"]["stage"], plan.get("microbatches")
    plan["bubble_fraction"] = None if M is None else round((S - 1) / (M + S - 1), 4)
    if M is None:
        plan["in_flight"] = None
    elif plan.get("schedule", SCHEDULES[0]) == "1f1b":
        plan["in_flight"] = [min(M, S - s) for s in range(S)]
    else:
        plan["in_flight"] = [M] * S

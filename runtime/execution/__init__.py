"""Executing the GPT on a sharded JAX mesh in the wafer's execution modes — with results equal to one device's.

    from runtime.execution import build_executor
    ex = build_executor(mode, cfg, mesh, microbatches=None, dtype=jnp.float32, remat="auto", attention="auto",
                        fsdp=False, batch_size=None, seq_len=None, compiler_options=None, schedule="1f1b")

``mode``: ``data`` | ``pipelined`` | ``streaming`` | ``auto`` (stage axis > 1 -> pipelined; training state too big for
a device -> streaming; else data). ``mesh`` comes from runtime.platform.build_mesh / make_mesh (axes data, stage, model).
``batch_size`` (optional, per accumulation step) lets the plan fix the pipeline's microbatch count and the remat
decision up front; otherwise they are fixed from the first batch seen (and written into ``ex.plan``). ``seq_len``
refines the stage-balancing costs and the activation estimate. ``remat``: "auto" (default) takes the cheapest remat
policy (none < dots < full, model/remat.py) whose predicted memory fits a device, by the device cost model's memory
model (wse.devices.cost_model.MemoryModel, the planner's); ``ex.remat_decision`` is the value the executor applies,
``plan["remat"]``/``plan["remat_reason"]`` report it. A policy name forces it (model/remat.py's one parser also reads
True/False/None as full/none/auto). ``attention``: "auto"
(default) runs cuDNN's flash kernel on NVIDIA GPUs in bfloat16/float16, else the XLA kernel (``plan["attention"]``,
``plan["attention_reason"]``); "xla"/"cudnn" force one.
``compiler_options``: XLA options for every jit the executor makes. ``schedule`` (pipelined only): "1f1b" (default:
one forward, one backward; activation memory bounded by the stage count) or "gpipe" (runtime/execution/pipelined.py).

Attributes
    ex.mode             the resolved mode
    ex.plan             JSON-able dict: mode and why, mesh, stage split [[first, last], ...], layers per stage,
                        microbatches, pipeline schedule, predicted bubble fraction, in-flight microbatches per stage,
                        remat policy and why, attention kernel and why, memory kinds, byte counts
    ex.param_shardings  tree like the params of jax.sharding.NamedSharding (streaming: memory_kind pinned_host)
    ex.batch_sharding   sharding of [B, T] int32 tokens/targets and bool masks (rows over data, and over stage
                        outside the pipelined mode)

Methods
    ex.place(params)                     canonical params (numpy/jax, any placement) -> this mode's layout, placed
    ex.canonical(tree)                   params/grads in this mode's layout -> canonical gpt layout
    ex.put_batch(np_array)               a global batch identical on every process -> sharded jax.Array
    ex.put_local_batch(np_array)         this process's rows -> the global jax.Array
    ex.loss_and_grads(params, tokens, targets, mask=None) -> (loss, grads)   jitted; grads laid out like params
    ex.eval_loss(params, tokens, targets, mask=None) -> loss                 jitted, no gradients (validation)
    ex.state_shardings(optimizer)        shardings of the state dict
    ex.init_state(params, optimizer)     canonical params -> {"params", "opt_state", "step"}, placed
    ex.make_train_step(optimizer, accum_steps=1) -> step(state, tokens, targets, mask=None) -> (state, metrics)
                                         one jax.jit, explicit in/out shardings, state donated;
                                         metrics {"loss", "grad_norm", "lr" (with an optim.Optimizer)};
                                         grad_norm is before clipping; accumulation = lax.scan over row slices
    ex.export_state(state) / ex.import_state(state, optimizer)   canonical (checkpoint) layout <-> placed state
    ex.compiled_memory(step, state, tokens, targets, mask=None) -> dict of XLA memory_analysis() figures (bytes
                                         per device) plus peak_estimate

``optimizer`` is a runtime.execution.optim.Optimizer (build_optimizer: the Cerebras-GPT AdamW) or any optax
transformation. The loss is the mean next-token cross-entropy over unmasked positions of the whole batch, whatever the
split.

The files: one per mode (``data.py``, ``pipelined.py``, ``streaming.py``) over the shared step (``base.py``);
``placement.py``, a run placed on the mesh (mode, stages, microbatches, remat, attention kernel); ``sharding.py``,
logical axis names -> mesh axes -> a sharding per parameter; ``optim.py``, the Cerebras-GPT AdamW split so that each
mode applies it where the weights live; ``transfers.py``, the bytes a traced step moves between host and device.
"""

from __future__ import annotations

import jax.numpy as jnp

from runtime.execution.base import Executor, TrainStep
from runtime.execution.placement import MODES, decide_remat, device_memory_bytes, make_placement
from runtime.platform import mesh_shape

__all__ = ["FAST_COMPILE", "MODES", "Executor", "TrainStep", "build_executor"]

# XLA options that cut CPU compile time about 3x (no LLVM optimisation) at some run-time cost: for tests and
# correctness checks of tiny models, where compiling dominates. Pass as build_executor(compiler_options=...).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def build_executor(mode: str, cfg, mesh, *, microbatches: int | None = None, dtype=jnp.float32,
                   remat="auto", attention: str = "auto", fsdp: bool = False, batch_size: int | None = None,
                   seq_len: int | None = None, compiler_options: dict | None = None,
                   schedule: str = "1f1b", host_update: bool | None = None) -> Executor:
    """An executor for ``cfg`` on ``mesh`` in ``mode`` (see the module docstring). ``remat`` "auto" lets the plan
    decide (see placement.decide_remat); ``attention`` "auto" too (placement.resolve_attention). ``compiler_options`` go to
    every jax.jit the executor makes (XLA debug options, e.g. the fast-compile settings the CPU tests use).
    ``schedule`` is the pipeline schedule (pipelined.SCHEDULES: "1f1b" or "gpipe"); other modes ignore it.
    ``host_update`` (streaming only): None lets the backend decide whether the optimizer runs in host memory
    (streaming.host_compute_available), False forces the device round trip (``plan["host_update"]``).
    Raises UserError for a mode, remat policy, attention kernel or schedule that cannot run here."""
    from runtime.execution.data import DataParallelExecutor
    from runtime.execution.pipelined import PipelinedExecutor
    from runtime.execution.streaming import StreamingExecutor

    shape = mesh_shape(mesh)
    plan = make_placement(mode, cfg, shape, microbatches=microbatches, seq_len=seq_len, batch_size=batch_size,
                     device_bytes=device_memory_bytes(mesh), fsdp=fsdp, remat=remat, dtype=jnp.dtype(dtype).name,
                     attention=attention, platform=mesh.devices.flat[0].platform, schedule=schedule)
    # the remat decision travels as a value (make_placement recorded the same decision in the plan's JSON)
    decision = decide_remat(plan, cfg, batch_size=batch_size, seq_len=seq_len)
    kw = dict(dtype=dtype, fsdp=fsdp, compiler_options=compiler_options, remat=decision)
    if plan["mode"] == "pipelined":
        ex = PipelinedExecutor(cfg, mesh, plan, schedule=schedule, **kw)
    elif plan["mode"] == "streaming":
        ex = StreamingExecutor(cfg, mesh, plan, host_update=host_update, **kw)
    else:
        ex = DataParallelExecutor(cfg, mesh, plan, **kw)
    if batch_size is not None and plan["mode"] == "pipelined":
        ex.microbatches(batch_size)
    return ex

"""What a training run compiles, and the training state it saves and restores.

Exact resume: everything the next step depends on is in the checkpoint (parameters, optimizer state with its step
count, the RNG key, the resolved config; the data position is the step itself, runtime.data.loader), and the step is
a pure function of them, so a run killed at any moment and started again computes bitwise the same losses on CPU as
one that never stopped. Checkpoints hold the canonical layout (model/gpt.py), whatever mesh and mode saved them.
"""

from __future__ import annotations

from runtime.config import RunConfig


class Compiled:
    """What a run compiles: executor, optimizer, training step, evaluation loss. ``lr_in_state``: the peak learning
    rate is part of the optimizer state rather than of the compiled step (runtime.execution.optim.scale_by_peak_lr)."""

    def __init__(self, run: RunConfig, gpt, mesh, lr_in_state: bool = False):
        import jax

        from runtime.execution import build_executor

        x, t = run.execution, run.train
        self.executor = build_executor(x.mode, gpt, mesh, microbatches=x.microbatches, dtype=jax.numpy.dtype(t.dtype),
                                       remat=x.remat, attention=x.attention, fsdp=x.fsdp, schedule=x.schedule,
                                       layer_loop=x.layer_loop,
                                       batch_size=t.batch_size // t.accum_steps, seq_len=t.seq_len)
        self.optimizer = optimizer_for(run, gpt, lr_in_state)
        self.train_step = self.executor.make_train_step(self.optimizer, accum_steps=t.accum_steps)
        self.eval_loss = self.executor.eval_loss

    def with_lr_of(self, run: RunConfig, gpt) -> "Compiled":
        """These compiled programs with the optimizer of ``run``'s peak rate (lr_in_state only): its ``init`` puts
        that rate in the state, which the shared step reads; the state's structure is the same for every rate."""
        import copy

        other = copy.copy(self)
        other.optimizer = optimizer_for(run, gpt, lr_in_state=True)
        return other


def optimizer_for(run: RunConfig, gpt, lr_in_state: bool = False):
    """The run's optimizer (runtime.execution.optim.build_optimizer) from its resolved ``train`` settings."""
    from runtime.execution.optim import build_optimizer

    t = run.train
    return build_optimizer(gpt, total_steps=t.decay_steps, lr=t.lr, warmup_steps=t.warmup_steps, decay=t.decay,
                           end_fraction=t.min_lr_ratio, weight_decay=t.weight_decay, clip_norm=t.grad_clip,
                           lr_in_state=lr_in_state)


# Runs in one process that compute the same thing (a resumed run, the tutorial's train-then-train-more, tests)
# reuse the compiled step instead of compiling it again: XLA compilation is most of a short run's time on CPU.
# With ``lr_in_state`` the peak rate is not part of the key, so runs that differ only in it share one compilation.
_COMPILED: dict = {}
COMPILED_KEEP = 4


def compiled_for(run: RunConfig, gpt, mesh, lr_in_state: bool = False) -> Compiled:
    """The (cached) compiled pieces for a run: the key is everything that shapes the compiled programs."""
    t = run.train
    key = repr((gpt, tuple(d.id for d in mesh.devices.flat), tuple(mesh.devices.shape), run.execution,
                (t.decay_steps, t.batch_size, t.seq_len, None if lr_in_state else t.lr, t.warmup_steps, t.decay,
                 t.min_lr_ratio, t.weight_decay, t.grad_clip, t.accum_steps, t.dtype), lr_in_state))
    if key not in _COMPILED:
        while len(_COMPILED) >= COMPILED_KEEP:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = Compiled(run, gpt, mesh, lr_in_state)
    else:
        _COMPILED[key] = _COMPILED.pop(key)  # most recently used last
    return _COMPILED[key].with_lr_of(run, gpt) if lr_in_state else _COMPILED[key]


def save_state(ckpt, run: RunConfig, gpt, ex, state: dict, step: int, data_position: dict, run_key) -> None:
    """Start an asynchronous checkpoint of everything step ``step + 1`` depends on, in the canonical layout;
    ``data_position`` is the train loader's ``state()`` after this step's batch (its identity is checked on resume)."""
    canonical = ex.export_state(state)
    t = run.train
    ckpt.save(step, gpt, canonical["params"], canonical["opt_state"], {
        "step": step, "data": data_position, "rng": key_data(run_key), "config": run.model_dump(),
        "tokens": step * t.batch_size * t.seq_len,
    })


def restore_state(ckpt, gpt, ex, optimizer) -> tuple[dict, dict]:
    """(placed state, saved metadata) of the latest checkpoint, for this run's mesh and mode (whatever mesh and mode
    saved it). When this mode's layout is canonical too (all but uneven pipelines), Orbax reads every array straight
    into its target sharding; otherwise arrays are read replicated and re-laid out by the executor (``import_state``).
    """
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P

    from model.gpt import param_shapes

    canonical = param_shapes(gpt)
    shapes = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32), canonical,
                          is_leaf=lambda x: isinstance(x, tuple))
    opt_shapes = jax.eval_shape(optimizer.init, shapes)
    direct = ex.internal_shapes() == canonical
    if direct:
        sh = ex.state_shardings(optimizer)
    else:
        rep = NamedSharding(ex.mesh, P(), memory_kind=ex.memory_kind)
        sh = {"params": jax.tree.map(lambda _: rep, shapes), "opt_state": jax.tree.map(lambda _: rep, opt_shapes)}
    target = lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s)  # noqa: E731
    params, opt_state, meta = ckpt.restore(jax.tree.map(target, shapes, sh["params"]),
                                           jax.tree.map(target, opt_shapes, sh["opt_state"]))
    state = {"params": params, "opt_state": opt_state, "step": jnp.asarray(int(meta["step"]), jnp.int32)}
    if direct:
        state["step"] = jax.device_put(state["step"], ex.replicated)
    else:
        state = ex.import_state(state, optimizer)
    return state, meta


def key_data(key) -> list[int]:
    """A JAX PRNG key as a JSON-able list of ints."""
    import jax
    import numpy as np

    return [int(x) for x in np.asarray(jax.random.key_data(key)).ravel()]


def key_from_data(data, default):
    """The key ``key_data`` saved (``default`` when there is none)."""
    import jax
    import jax.numpy as jnp

    if not data:
        return default
    return jax.random.wrap_key_data(jnp.asarray(data, jnp.uint32).reshape(jax.random.key_data(default).shape))

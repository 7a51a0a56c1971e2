"""The rules a resolved run config keeps across its fields, each broken rule one ``UserError`` line that names the
setting and the fix: train values in range, mesh axes well formed, the batch splitting over the mesh, a pipeline's
microbatches dividing each replica's share, the ``observe`` section's own rules (runtime.config.observe). Checked by
runtime.config.recipes.resolve, before JAX starts or anything is written. Pure Python.
"""

from __future__ import annotations

from runtime.config.observe import check_observe
from runtime.errors import UserError


def check(run) -> None:
    """The rules a resolved RunConfig keeps (UserError naming the setting and the fix): train values in range, mesh
    axes well formed, the batch splitting over the mesh, the observe section (a profile window inside the run, W&B
    only where it is installed)."""
    check_train(run.train, run.gpt_config())
    check_mesh(run.mesh)
    check_layout(run)
    check_observe(run.observe, run.train.steps)


def check_train(t, cfg) -> None:
    check_ranges(t)
    if t.seq_len > cfg.max_seq_len:
        raise UserError(f"train.seq_len={t.seq_len} is beyond model '{cfg.name}' context of {cfg.max_seq_len} tokens; "
                        f"set train.seq_len={cfg.max_seq_len} or less")
    if t.batch_size % t.accum_steps:
        raise UserError(f"train.batch_size={t.batch_size} is not divisible by train.accum_steps={t.accum_steps}; "
                        "pick an accum_steps that divides the batch")


def check_ranges(t) -> None:
    """Each train setting that is set (not None) within its range, e.g. ``train.batch_size must be positive, got 0``.
    Needs no other setting, so a config is checked this way as soon as it is parsed (RunConfig.from_dict), before
    any default is derived from it or JAX starts."""
    positive = ("steps", "decay_steps", "batch_size", "seq_len", "accum_steps", "checkpoint_every", "keep",
                "eval_every", "lr")
    for name in positive:
        value = getattr(t, name)
        if value is not None and not value > 0:
            raise UserError(f"train.{name} must be positive, got {value}")
    for name in ("warmup_steps", "eval_batches", "seed", "weight_decay", "grad_clip"):
        value = getattr(t, name)
        if value is not None and not value >= 0:
            raise UserError(f"train.{name} must not be negative, got {value}")
    if not 0.0 <= t.min_lr_ratio <= 1.0:
        raise UserError(f"train.min_lr_ratio must be between 0 and 1, got {t.min_lr_ratio}")


def check_mesh(m) -> None:
    sizes = m.axes.model_dump()
    fills = [k for k, v in sizes.items() if v == -1]
    if len(fills) > 1:
        raise UserError(f"mesh.axes.{fills[0]} and mesh.axes.{fills[1]} are both -1; at most one axis may fill the rest")
    for k, v in sizes.items():
        if v == 0 or v < -1:
            raise UserError(f"mesh.axes.{k}={v} is not a size; give a positive number or -1 (fill with the rest)")
    if m.devices is not None and m.devices <= 0:
        raise UserError(f"mesh.devices must be positive, got {m.devices}")


def check_layout(run) -> None:
    """The batch against the mesh, checked when the config is resolved (before JAX starts or anything is written):
    each accumulation step's sequences must split evenly over the data-parallel replicas (``data``, and ``stage``
    outside the pipelined mode), and a pipeline's microbatches must divide each replica's share. On an accelerator
    with ``mesh.devices`` unset the device count is known only once JAX starts; the executor checks it then."""
    n = run.devices()
    if n is None:
        return
    from runtime.platform import resolve_axes

    axes = resolve_axes(run.mesh.axes.model_dump(), n)
    t, x = run.train, run.execution
    pipelined = x.mode == "pipelined" or (x.mode == "auto" and axes["stage"] > 1)
    replicas = axes["data"] * (1 if pipelined else axes["stage"])
    per_step = t.batch_size // t.accum_steps
    where = f"mesh data={axes['data']}" + ("" if pipelined or axes["stage"] == 1 else f" x stage={axes['stage']}")
    if per_step % replicas:
        multiple = replicas * t.accum_steps
        below = t.batch_size // multiple * multiple
        near = f"{below} or {below + multiple}" if below else str(multiple)
        raise UserError(
            f"train.batch_size={t.batch_size} (with train.accum_steps={t.accum_steps}: {per_step} sequences per step) "
            f"does not split over the {replicas} data-parallel replicas ({where}); use a train.batch_size that is a "
            f"multiple of {multiple}, e.g. {near}")
    if x.microbatches is not None:
        if not pipelined:
            raise UserError(f"execution.microbatches={x.microbatches} applies to the pipelined mode only; leave it "
                            "unset, or set execution.mode=pipelined with mesh.axes.stage > 1")
        local = per_step // replicas
        if x.microbatches <= 0 or local % x.microbatches:
            divisors = [m for m in range(1, local + 1) if local % m == 0]
            raise UserError(f"execution.microbatches={x.microbatches} does not divide the {local} sequences each of "
                            f"the {replicas} replicas runs per step; use one of {', '.join(map(str, divisors))}")

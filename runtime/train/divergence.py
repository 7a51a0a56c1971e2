"""A run that diverged: what to say, and which command continues it.

The loop reads a flag with each step's loss (runtime.execution.base: the loss and the gradient norm are both finite)
and every checkpoint is checked for NaN and infinity before it is written (runtime.checkpoint.store), so a diverged
run never saves a non-finite step, and keeping old checkpoints never deletes the last finite one for it.

Which checkpoint to continue from. Step ``k``'s loss and gradients are computed from the weights of step ``k - 1``,
before the update, so when they are not finite the weights of step ``k - 1`` overflow on batch ``k`` whatever the
learning rate: resuming from a checkpoint of step ``k - 1`` would diverge again at step ``k``. The advice is then the
checkpoint before it (delete step ``k - 1``), or a new run when there is none. When only the weights were not finite
(the update overflowed), or the last checkpoint is older than ``k - 1``, a lower learning rate from the last
checkpoint changes what follows, and resuming there is the advice. The optimisation settings may change on resume
(runtime.config.recipes.RESUME_KEPT).
"""

from __future__ import annotations

import math
import shlex

from runtime.errors import Diverged


def what_diverged(metrics: dict) -> str:
    """``the loss is nan`` or ``the loss is 6.8e+09 but the gradient norm is nan``, from a step's metrics."""
    loss, norm = metrics["loss"], metrics.get("grad_norm", float("nan"))
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    return f"the loss is {loss:.4g} but the gradient norm is {norm}"


def diverged(step: int, what: dict | str, ckpt, lower: float) -> Diverged:
    """The one line for a run that produced a NaN or an infinity at ``step``: ``what`` is the step's metrics (its loss
    or gradient norm was not finite) or a sentence (the weights about to be saved were not). Names the last
    checkpoint, where to continue (see the module doc) and ``lower``, a learning rate to continue with."""
    from runtime.checkpoint.diagnose import previous_complete

    ckpt.wait()  # the previous step's asynchronous save, if any, is complete before it is named
    last = ckpt.latest_step()
    from_weights = isinstance(what, dict)
    detail = what_diverged(what) if from_weights else what
    head = f"training diverged at step {step}: {detail}; nothing of step {step} was saved"
    rate = f"a lower learning rate (train.lr={lower:g})"
    kwargs = {"step": step, "checkpoint": last, "lr": lower, "detail": detail}
    if last is None:
        return Diverged(f"{head} and no checkpoint was written; start again with {rate}", **kwargs)
    if not (from_weights and last == step - 1):
        return Diverged(f"{head}; continue from the checkpoint of step {last} (its weights are finite) with {rate} or a "
                        "longer warmup (train.warmup_steps)", **kwargs)
    poisoned = f"{head}; the last checkpoint, step {last}, holds the weights that overflowed, so it diverges again " \
               "whatever the learning rate"
    previous = previous_complete(ckpt.directory, last)
    if previous is not None:
        return Diverged(f"{poisoned}; delete it and continue from step {previous} with {rate}",
                        delete=str(ckpt.directory / str(last)), **kwargs)
    new_dir = f"{ckpt.run_dir}-lr{lower:g}"
    return Diverged(f"{poisoned}, and no checkpoint before it is kept; start a new run with {rate}", new_run_dir=new_dir,
                    **kwargs)


def continue_command(err: Diverged, command: list[str], overrides: list[str]) -> str:
    """The shell line that continues ``err``'s run: ``wse <command> <overrides>`` with ``train.lr`` (and
    ``train.run_dir`` for a new run) replaced, after deleting a poisoned checkpoint when the advice says so."""
    replaced = {"train.lr": f"train.lr={err.lr:g}"}
    if err.new_run_dir:
        replaced["train.run_dir"] = f"train.run_dir={err.new_run_dir}"
    kept = [o for o in overrides if o.partition("=")[0].strip() not in replaced]
    line = shlex.join(["wse", *command, *kept, *replaced.values()])
    return f"rm -r {shlex.quote(err.delete)} && {line}" if err.delete else line

"""Metrics where people look: TensorBoard event files and Weights & Biases, as observers of the training loop.

Both take the records the loop reports (runtime.train.observers: ``train`` records after each step, ``eval``
records after each evaluation) and write the same figures under the same names:

- ``train/loss``: the step's mean cross-entropy, nats per token;
- ``train/lr``: the step's learning rate (under muP, the base rate's schedule);
- ``train/grad_norm``: the global L2 norm of the gradients before clipping;
- ``train/tokens_per_s``: tokens per second of the step (the first step of a process includes compiling);
- ``train/mfu``: model FLOP utilisation, 6N x tokens/s / peak FLOP/s, a fraction (0..1);
- ``eval/val_loss``, ``eval/val_perplexity``: mean validation loss in nats per token, and exp of it.

The x axis is the step (1-based, as in ``metrics.jsonl``) and each point carries the record's wall time. Only process
0 of a multi-process run writes. ``observe.tensorboard`` and ``observe.wandb`` switch them (runtime.config.observe).
"""

from __future__ import annotations

import math
from pathlib import Path

from runtime.train.observers import TENSORBOARD_DIR, WANDB_DIR, Observer, RunContext

# The W&B run id of a run dir, kept so that a resumed run goes on in the same W&B run.
WANDB_ID_FILE = "run-id"
# TensorBoard's event writer flushes at least this often (seconds), so a running job's curves stay current.
FLUSH_SECONDS = 10


def scalars(record: dict) -> dict[str, float]:
    """``{"train/loss": 5.1, ...}``: the figures of one loop record under their sink names (see the module doc);
    {} for a record of another kind. Non-finite values are left out."""
    kind = record.get("kind")
    if kind == "train":
        keys = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu")
    elif kind == "eval":
        keys = ("val_loss", "val_perplexity")
    else:
        return {}
    return {f"{kind}/{k}": float(record[k]) for k in keys
            if isinstance(record.get(k), (int, float)) and math.isfinite(record[k])}


class TensorBoard(Observer):
    """Event files in ``<run dir>/tensorboard/`` (``tensorboard --logdir <run dir>/tensorboard``), through
    tensorboardX (no TensorFlow). A resumed run writes a new event file that starts at the step after its
    checkpoint and tells TensorBoard to drop the killed run's later points (``purge_step``), as ``metrics.jsonl``
    drops them."""

    def __init__(self):
        self.writer = None

    def start(self, ctx: RunContext) -> None:
        if not ctx.lead:
            return
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(ctx.run_dir / TENSORBOARD_DIR), flush_secs=FLUSH_SECONDS,
                                    purge_step=ctx.start + 1 if ctx.start else None)

    def record(self, ctx: RunContext, record: dict) -> None:
        if self.writer is None:
            return
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, global_step=int(record["step"]), walltime=record.get("time"))

    def end(self, ctx: RunContext) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandB(Observer):
    """A Weights & Biases run (``observe.wandb`` online or offline) in project ``observe.wandb_project``, named after
    the run dir, its files in ``<run dir>/wandb/``, with the resolved run config as its config. A resumed run goes on
    in the same W&B run (its id is kept in ``<run dir>/wandb/run-id``). Needs the ``wandb`` package (checked when
    the config is resolved: runtime.config.observe.check_observe)."""

    def __init__(self, mode: str, project: str):
        self.mode, self.project, self.run = mode, project, None

    def start(self, ctx: RunContext) -> None:
        if not ctx.lead:
            return
        import wandb

        root = ctx.run_dir / WANDB_DIR
        root.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=self.project, name=ctx.run_dir.name, dir=str(ctx.run_dir), mode=self.mode,
                              id=wandb_run_id(root, wandb), resume="allow", config=ctx.run_config.model_dump())

    def record(self, ctx: RunContext, record: dict) -> None:
        values = scalars(record)
        if self.run is not None and values:
            self.run.log(values, step=int(record["step"]))

    def end(self, ctx: RunContext) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if ctx.finished else 1)
            self.run = None


def wandb_run_id(root: Path, wandb) -> str:
    """The W&B run id kept in ``root/run-id``; a new one (``wandb.util.generate_id``) for a new run dir."""
    path = root / WANDB_ID_FILE
    if path.is_file() and path.read_text(encoding="utf-8").strip():
        return path.read_text(encoding="utf-8").strip()
    run_id = wandb.util.generate_id()
    path.write_text(run_id + "\n", encoding="utf-8")
    return run_id


def reporting_observers(run_config) -> list[Observer]:
    """The sinks and the profiler the run config's ``observe`` section switches on, in the order the loop calls them:
    the profile window first (it starts before a step's work and stops right after it), then TensorBoard and W&B."""
    from runtime.train.profiling import ProfileWindow

    o = run_config.observe
    out: list[Observer] = []
    window = o.profile_window()
    if window is not None:
        out.append(ProfileWindow(*window))
    if o.tensorboard:
        out.append(TensorBoard())
    if o.wandb != "off":
        out.append(WandB(o.wandb, o.wandb_project))
    return out

"""Everything the training loop reports goes through observers: one list the loop calls, one class per sink.

The loop (runtime.train.loop) knows nothing of files, consoles or plots. After each step it hands the step's record
(``{"kind": "train", "step", "loss", "tokens_per_s", "mfu", "grad_norm", "lr", "time"}``) to ``RunContext.emit``,
which passes it to every observer's ``record``; then it calls every observer's ``step``, where an observer may do
work of its own and emit more records (``Evaluation`` emits ``{"kind": "eval", "step", "val_loss",
"val_perplexity", "time"}``). ``start`` comes before the first step, ``end`` after the last (also when the run stops
with an error: ``ctx.finished`` says which). A new sink is one more class: TensorBoard and W&B are in
runtime.train.sinks, the profiler window in runtime.train.profiling.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"
# TensorBoard's log dir (event files, profiles) and W&B's files, inside the run dir (runtime.train.sinks, profiling).
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
# Without a terminal, training progress is one plain stderr line this often (and at the last step).
PLAIN_PROGRESS_SECONDS = 10.0


@dataclass
class RunContext:
    """What observers may read: the resolved run config, the model, the executor, the step range, the current
    training state (placed on the mesh), whether this process leads (process 0 writes files), and ``emit``."""

    run_config: object
    gpt: object
    executor: object
    start: int
    run_dir: Path
    lead: bool = True
    state: dict | None = None
    finished: bool = False
    observers: list = field(default_factory=list)
    data: dict = field(default_factory=dict)  # what it trains on (runtime.train.summary.data_facts)
    from_weights: bool = False  # a fresh run starts from given weights (fine-tuning), not from an initialisation

    @property
    def steps(self) -> int:
        return self.run_config.train.steps

    def emit(self, record: dict) -> None:
        """Report ``record`` to every observer."""
        for obs in self.observers:
            obs.record(self, record)


class Observer:
    """A sink of the loop's reports. Override what you need; every method does nothing by default."""

    def start(self, ctx: RunContext) -> None:
        pass

    def record(self, ctx: RunContext, record: dict) -> None:
        pass

    def step(self, ctx: RunContext, step: int) -> None:
        pass

    def end(self, ctx: RunContext) -> None:
        pass


class MetricsLog(Observer):
    """``metrics.jsonl`` in the run dir: one JSON object per record. A resumed run first drops the records of steps
    after the checkpoint it resumed from (the killed run's steps that are about to be recomputed)."""

    def __init__(self):
        self._file = None

    def start(self, ctx: RunContext) -> None:
        if not ctx.lead:  # one writer per run: process 0 of a multi-process run
            return
        path = ctx.run_dir / METRICS_FILE
        if path.exists():
            keep = [line for line in path.read_text(encoding="utf-8").splitlines() if _record_step(line) <= ctx.start]
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
            os.replace(tmp, path)
        self._file = open(path, "a", encoding="utf-8")

    def record(self, ctx: RunContext, record: dict) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def end(self, ctx: RunContext) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _record_step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", math.inf))
    except (ValueError, AttributeError):
        return math.inf  # a line cut by a kill: dropped


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` (lines that do not parse, e.g. one cut by a kill, are skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class LossPlot(Observer):
    """``loss.png`` in the run dir at the end of a run: training and validation loss against step, from the whole
    ``metrics.jsonl`` (across resumes)."""

    def end(self, ctx: RunContext) -> None:
        if ctx.lead and ctx.finished:
            plot_losses(ctx.run_dir / METRICS_FILE, ctx.run_dir / LOSS_PLOT)


def plot_losses(metrics_path: Path, out: Path) -> Path | None:
    """Training and validation loss against step as a PNG at ``out`` (written atomically); None without metrics."""
    if not metrics_path.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train"]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("kind") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title(f"{out.parent.name}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out


class Evaluation(Observer):
    """Validation every ``train.eval_every`` steps and at the last step (also when a run has nothing left to train):
    the mean next-token loss over the targets of the first ``train.eval_batches`` batches of the validation
    loader's windows (the same batches every time; batches that together hold every window once, so an
    ``eval_batches`` at least ``loader.covering_batches`` is the whole validation split, the figure the tutorial's
    ``model.evaluate()`` gives). ``last`` holds the latest (loss, perplexity), ``tokens`` and ``coverage`` the
    targets it averaged over and their share of the split's."""

    def __init__(self, loader, eval_loss: Callable, put_batch: Callable):
        self.loader, self.eval_loss, self.put_batch = loader, eval_loss, put_batch
        self.last: tuple[float | None, float | None] = (None, None)
        self.tokens, self.coverage = 0, 0.0

    def step(self, ctx: RunContext, step: int) -> None:
        if step % ctx.run_config.train.eval_every == 0 or step == ctx.steps:
            self._evaluate(ctx, step)

    def end(self, ctx: RunContext) -> None:
        if ctx.finished and ctx.start >= ctx.steps:  # nothing left to train: still report
            self._evaluate(ctx, ctx.start, emit=False)

    def _evaluate(self, ctx: RunContext, step: int, emit: bool = True) -> None:
        n = min(ctx.run_config.train.eval_batches, self.loader.covering_batches)
        total, tokens = 0.0, 0
        for i in range(n):
            weight = self.loader.covering_targets(i)  # batch means weighted by their targets: a mean over tokens
            total += weight * float(self.eval_loss(ctx.state["params"], *self.put_batch(self.loader.covering_batch(i))))
            tokens += weight
        loss = total / max(tokens, 1)
        self.last = (loss, math.exp(min(loss, 700.0)))
        self.tokens, self.coverage = tokens, n / self.loader.covering_batches
        if emit:
            ctx.emit({"kind": "eval", "step": step, "val_loss": loss, "val_perplexity": self.last[1],
                      "val_tokens": tokens, "time": time.time()})


class Progress(Observer):
    """Training progress (step, loss, tokens/s, MFU) and validation lines. ``console``: a rich Console (a progress
    bar), ``"plain"`` (stderr is not a terminal: a log file, a pipe, a batch job) a plain line on stderr every
    PLAIN_PROGRESS_SECONDS and at the last step, so that a redirected run is never silent for minutes."""

    def __init__(self, console):
        self.console, self._bar, self._last = console, None, time.perf_counter()

    def start(self, ctx: RunContext) -> None:
        from runtime.train.summary import start_lines

        if ctx.lead:
            for line in start_lines(ctx):
                self._note(line)
        if self.console == "plain":
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        self._bar = Bar(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                        TimeRemainingColumn(), console=self.console, transient=False)
        self._task = self._bar.add_task("train", total=ctx.steps, completed=ctx.start, info="compiling ...")
        self._bar.start()

    def record(self, ctx: RunContext, record: dict) -> None:
        if record.get("kind") == "eval":
            self._note(f"step {record['step']}: validation loss {record['val_loss']:.4f}, "
                       f"perplexity {record['val_perplexity']:.2f}")
            return
        step = record["step"]
        info = f"loss {record['loss']:.4f}  {record['tokens_per_s']:,.0f} tok/s  MFU {100 * record['mfu']:.1f}%"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
        elif step == ctx.steps or time.perf_counter() - self._last >= PLAIN_PROGRESS_SECONDS:
            self._last = time.perf_counter()
            print(f"train step {step}/{ctx.steps}  {info}", file=sys.stderr, flush=True)

    def _note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, highlight=False)
        elif self.console != "plain":
            self.console.print(text, highlight=False, soft_wrap=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def end(self, ctx: RunContext) -> None:
        if self._bar is not None:
            self._bar.stop()


def progress_console(console=None, progress: bool | None = None):
    """Where progress goes: ``console`` if given; a rich Console on stderr when ``progress`` is True or stderr is a
    terminal; ``"plain"`` lines when it is redirected; None (no progress) for ``progress=False``."""
    if progress is False:
        return None
    if console is not None:
        return console
    if progress or sys.stderr.isatty():
        from rich.console import Console

        return Console(stderr=True)
    return "plain"


class OnStep(Observer):
    """Calls ``fn(record)`` with each training step's record (the tutorial's and the tests' hook)."""

    def __init__(self, fn: Callable[[dict], None]):
        self.fn = fn

    def record(self, ctx: RunContext, record: dict) -> None:
        if record.get("kind") == "train":
            self.fn(record)

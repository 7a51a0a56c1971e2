"""A study's points: one model trained once, each in its own run dir under ``<out>/points/``, by the trainer `wse train`
uses (runtime.train.Trainer), so a study stopped at any moment resumes where it stopped.

- A point is *finished* when its run dir holds the checkpoint of its last step and the evaluation of that step in
  ``metrics.jsonl``: it is read back from there, never trained again.
- A point with an earlier checkpoint resumes from it (the trainer's own exact resume).
- A point whose loss or gradient norm went non-finite (runtime.errors.Diverged, raised by the trainer before anything
  non-finite is saved) is recorded in ``<out>/diverged.json`` and counts as diverged from then on; a learning-rate
  sweep expects some.

Every point of one process shares JAX's start-up, and points that differ only in their learning rate share one
compiled step (``Trainer(lr_in_state=True)``): that is what lets a 40-point sweep fit in minutes on two CPU cores.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

POINTS_DIR = "points"
DIVERGED_FILE = "diverged.json"
# Points of at least this many steps also checkpoint at each quarter, so a stopped study resumes inside them.
CHECKPOINT_QUARTERS_FROM = 1000


@dataclass(frozen=True)
class Point:
    """One model to train: ``name`` (its run dir and model name), GPTConfig ``model`` fields, ``steps`` at peak rate
    ``lr``, and ``info``: what the study reports about it (width, parametrisation, parameters ...)."""

    name: str
    model: dict
    steps: int
    lr: float
    info: dict = field(default_factory=dict)


@dataclass
class Outcome:
    """What a point gave: ``status`` trained, reused (read from its finished run dir) or diverged; its final
    validation and training loss (None when diverged), wall seconds and this process's CPU seconds here (0 when
    reused: on a shared machine the CPU seconds say what the point cost, the wall seconds what the load added)."""

    point: Point
    status: str
    val_loss: float | None
    train_loss: float | None
    seconds: float = 0.0
    diverged_step: int | None = None
    cpu_seconds: float = 0.0
    diverged_detail: str | None = None  # what was not finite (runtime.train.divergence.what_diverged)

    def describe(self) -> dict:
        return {"name": self.point.name, **self.point.info, "lr": self.point.lr, "steps": self.point.steps,
                "status": self.status, "val_loss": self.val_loss, "train_loss": self.train_loss,
                "seconds": round(self.seconds, 2), "cpu_seconds": round(self.cpu_seconds, 2),
                "diverged_step": self.diverged_step, "diverged_detail": self.diverged_detail}


def model_fields(name: str, layers: int, width: int, d_head: int, vocab: int, seq_len: int, param: str) -> dict:
    """GPTConfig fields of a study model: Cerebras-GPT's architecture (FFN 4 x width) at this size; ``param`` mup is
    Cerebras-GPT-muP exactly as the published muP presets (model/presets.py: base width 256, init std 0.08,
    embedding multiplier 10, hidden matrices at lr / m_w, attention logits / d_head, output logits / m_w)."""
    fields = dict(name=name, n_layers=layers, d_model=width, n_heads=width // d_head, d_head=d_head, d_ffn=4 * width,
                  vocab_size=vocab, max_seq_len=seq_len)
    if param == "mup":
        fields.update(mup=True, init_std=0.08)
    return fields


def lr_label(lr: float) -> str:
    """A learning rate as run dirs name it: 2^k when it is one (lr2^-9), else 4 significant digits (lr0.0015)."""
    k = math.log2(lr)
    return f"lr2^{round(k)}" if abs(k - round(k)) < 1e-9 else f"lr{lr:.4g}"


class Sweep:
    """Trains (or reads back) points in ``out/points``, on ``data`` (runtime.study.vocabulary.StudyData) with the
    study's ``settings``, printing one progress line per point to stderr."""

    def __init__(self, out: Path, data, settings, *, stream=None):
        self.out, self.data, self.settings = Path(out), data, settings
        self.stream = stream or sys.stderr
        self.diverged = self._read_diverged()

    def run_dir(self, point: Point) -> Path:
        return self.out / POINTS_DIR / point.name

    def run(self, points: list[Point], *, first: int = 1, total: int | None = None) -> list[Outcome]:
        """Each point's outcome, in order; progress lines count from ``first`` of ``total``."""
        total = total or len(points)
        outcomes = []
        for i, point in enumerate(points, start=first):
            outcome = self.outcome(point)
            outcomes.append(outcome)
            self.say(f"[{i:>{len(str(total))}}/{total}] {progress_line(outcome)}")
        return outcomes

    def outcome(self, point: Point) -> Outcome:
        """A finished or diverged point read back, else the point trained (resumed from its last checkpoint)."""
        if point.name in self.diverged:
            record = self.diverged[point.name]
            return Outcome(point, "diverged", None, None, diverged_step=record["step"],
                           diverged_detail=record.get("detail"))
        done = finished_losses(self.run_dir(point), point.steps)
        if done is not None:
            return Outcome(point, "reused", *done)
        return self.train(point)

    def train(self, point: Point) -> Outcome:
        from runtime.config import from_dict
        from runtime.errors import Diverged
        from runtime.train import Trainer

        t0, c0 = time.perf_counter(), time.process_time()
        try:
            result = Trainer(from_dict(self.run_tree(point)), progress=False, lr_in_state=True).run()
        except Diverged as err:  # an outcome of the sweep, not a failure of the study
            self.diverged[point.name] = {"step": err.step, "detail": err.detail, "message": str(err)}
            self._write_diverged()
            return Outcome(point, "diverged", None, None, time.perf_counter() - t0, err.step,
                           time.process_time() - c0, err.detail)
        return Outcome(point, "trained", result["val_loss"], result["final_loss"], time.perf_counter() - t0,
                       cpu_seconds=time.process_time() - c0)

    def run_tree(self, point: Point) -> dict:
        """The point's run config (runtime.config schema) as a nested dict."""
        s = self.settings
        quarters = point.steps >= CHECKPOINT_QUARTERS_FROM
        return {"model": point.model, "data": str(self.data.directory),
                "mesh": {"platform": s.platform, "devices": s.devices}, "execution": {"mode": "data"},
                "train": {"steps": point.steps, "batch_size": s.batch_size, "seq_len": s.seq_len, "lr": point.lr,
                          "dtype": s.dtype, "seed": s.seed, "run_dir": str(self.run_dir(point)), "keep": 1,
                          "checkpoint_every": point.steps // 4 if quarters else point.steps,
                          "eval_every": point.steps, "eval_batches": s.eval_batches}}

    def say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def _read_diverged(self) -> dict:
        path = self.out / DIVERGED_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def _write_diverged(self) -> None:
        path = self.out / DIVERGED_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.diverged, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)


def finished_losses(run_dir: Path, steps: int) -> tuple[float, float | None] | None:
    """(final validation loss, final training loss) of a run dir that holds the checkpoint of step ``steps`` and the
    evaluation of that step; None when the point is not finished (or was never started)."""
    from runtime.train import METRICS_FILE, read_metrics

    metrics = run_dir / METRICS_FILE
    if not metrics.is_file() or not (run_dir / "checkpoints").is_dir():
        return None
    from runtime.checkpoint import latest_step

    if latest_step(run_dir) != steps:
        return None
    records = read_metrics(metrics)
    val = [r["val_loss"] for r in records if r.get("kind") == "eval" and r.get("step") == steps]
    train = [r["loss"] for r in records if r.get("kind") == "train" and r.get("step") == steps]
    return (val[-1], train[-1] if train else None) if val else None


def progress_line(outcome: Outcome) -> str:
    """``sp  w64  lr2^-9  trained in 7.4 s: validation loss 5.0458 (training 5.0972)``."""
    p = outcome.point
    what = " ".join(str(v) for v in p.info.get("label", [p.name]))
    if outcome.status == "diverged":
        return f"{what}  diverged at step {outcome.diverged_step} ({outcome.diverged_detail or 'not finite'})"
    how = (f"trained in {outcome.seconds:.1f} s ({outcome.cpu_seconds:.1f} CPU-s)" if outcome.status == "trained"
           else "reused (finished run dir)")
    train = f" (training {outcome.train_loss:.4f})" if outcome.train_loss is not None else ""
    return f"{what}  {how}: validation loss {outcome.val_loss:.4f}{train}"

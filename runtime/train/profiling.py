"""Profiles: a ``jax.profiler`` trace of a window of training steps (``observe.profile_steps=START:END``), and the
trace helper `wse bench --profile` uses for one row.

A trace lands in ``<log dir>/plugins/profile/<time>/``: ``*.xplane.pb`` (TensorBoard's profile plugin, XProf:
``pip install tensorboard tensorboard-plugin-profile`` then ``tensorboard --logdir <log dir>``), ``*.trace.json.gz``
and ``perfetto_trace.json.gz`` (open it at ui.perfetto.dev, nothing to install). For a run the log dir is the run
dir's ``tensorboard/``, so TensorBoard shows the scalars and the profile side by side. Only process 0 of a
multi-process run traces (it runs the same program as the others).
"""

from __future__ import annotations

from pathlib import Path

from runtime.errors import UserError
from runtime.train.observers import TENSORBOARD_DIR, Observer, RunContext

PERFETTO_FILE = "perfetto_trace.json.gz"


class Trace:
    """One ``jax.profiler`` trace into ``log_dir``: ``start()`` ... ``stop()`` (or ``with Trace(dir) as t:``);
    afterwards ``folder`` is the trace's folder (``<log_dir>/plugins/profile/<time>``). Raises UserError when
    another trace is already running in this process (JAX allows one at a time)."""

    def __init__(self, log_dir: str | Path):
        self.log_dir, self.folder, self.active = Path(log_dir), None, False

    def start(self) -> "Trace":
        import jax

        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            jax.profiler.start_trace(str(self.log_dir), create_perfetto_trace=True)
        except RuntimeError as err:
            raise UserError(f"cannot start a profile in '{self.log_dir}': {err}") from None
        self.active = True
        return self

    def stop(self) -> Path | None:
        """End the trace, write its files; returns the folder they are in (None if no trace was running)."""
        import jax

        if not self.active:
            return None
        self.active = False
        jax.profiler.stop_trace()
        folders = [p for p in (self.log_dir / "plugins" / "profile").iterdir() if p.is_dir()]
        self.folder = max(folders, key=lambda p: p.stat().st_mtime) if folders else None
        return self.folder

    def __enter__(self) -> "Trace":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ProfileWindow(Observer):
    """Traces training steps ``first``..``last`` (inclusive, 1-based) into ``<run dir>/tensorboard``: the trace
    starts before step ``first`` is dispatched (at the run's start, or after step ``first - 1``) and stops once step
    ``last`` is done (its loss read, its checkpoint, if any, started). A resumed run traces the part of the window it
    still has to run; a run that stops early ends the trace with it. ``folder`` is where the trace went (None when
    none was taken)."""

    def __init__(self, first: int, last: int):
        self.first, self.last = first, last
        self.trace: Trace | None = None
        self.folder: Path | None = None

    def start(self, ctx: RunContext) -> None:
        if self.first <= ctx.start + 1 <= self.last:
            self._begin(ctx)

    def step(self, ctx: RunContext, step: int) -> None:
        if step == self.first - 1:
            self._begin(ctx)
        if step == self.last:
            self._finish()

    def end(self, ctx: RunContext) -> None:
        self._finish()

    def _begin(self, ctx: RunContext) -> None:
        if ctx.lead and self.trace is None:
            self.trace = Trace(ctx.run_dir / TENSORBOARD_DIR).start()

    def _finish(self) -> None:
        if self.trace is not None:
            self.folder = self.trace.stop()
            self.trace = None

"""The training loop behind `wse train`, `wse finetune` and the tutorial's ``model.train``/``model.fine_tune``.

``Trainer(run_config, recipe=..., data=..., init_params=...).run()`` trains one run:

1. builds the mesh (before anything else touches JAX: emulated devices, jax.distributed);
2. opens the run dir (runtime.train.rundir): fresh, resumed, or refused before anything is written; the config is
   resolved there once (runtime.config.recipes) and the loop never changes it;
3. compiles the executor, optimizer and step (runtime.train.state), restores the latest checkpoint or starts fresh;
4. steps: one jitted, donated step per global batch (global batch ``k`` feeds step ``k + 1``: the data position is
   the step), the next batch read and placed while the devices run this one, a guard on non-finite loss,
   asynchronous checkpoints every ``train.checkpoint_every`` steps and at the end;
5. reports through observers (runtime.train.observers): the metrics log, progress lines, evaluation, the loss plot,
   and what the run's ``observe`` section switches on (TensorBoard, W&B, a profile window: runtime.train.sinks).

JAX's persistent compilation cache is set up before anything compiles (runtime.platform.compile_cache).

Throughput is tokens/s and MFU = 6N x tokens/s / peak, with the peak's source (runtime.train.throughput).
"""

from __future__ import annotations

import math
import time
from typing import Callable

from runtime.config import RunConfig, load_config
from runtime.config.recipes import Recipe, resolve, run_dir_of
from runtime.errors import Diverged, TrainingStopped, UserError
from runtime.platform.storage import writing
from runtime.train import observers as obs
from runtime.train.divergence import diverged
from runtime.train.faults import RunDirLock, StopSignals, signal_name
from runtime.train.rundir import open_run, write_config
from runtime.train.sinks import reporting_observers
from runtime.train.sources import PretrainingData
from runtime.train.state import compiled_for, key_from_data, restore_state, save_state
from runtime.train.summary import data_facts, epochs
from runtime.train.throughput import peak_flops


class Trainer:
    """One training run. ``Trainer(run_config).run()`` -> the result dict `wse train --json` prints.

    ``run_config``: the requested (unresolved) config: settings it leaves unset come from ``recipe`` (a job's
    settings, runtime.config.recipes), the run dir's checkpoint, the preset; ``data``: where batches come from (default:
    ``run.data`` as a token dataset, runtime.train.sources.PretrainingData; fine-tuning gives ExampleData);
    ``init_params``: canonical parameters to start a fresh run from (a resumed run ignores them); ``observers``: more
    sinks for the loop's reports (runtime.train.observers.Observer); ``console``/``progress``: where progress goes
    (default: stderr when it is a terminal, plain lines when not; ``progress=False``: none); ``on_step``: called with
    each step's record; ``lr_in_state``: the peak learning rate is held in the optimizer state, so that runs of one
    process that differ only in it share one compiled step (a learning-rate sweep; runtime.train.state). A run dir
    trained so must be resumed so: its checkpoints hold that state.

    After ``run``: ``result``, ``params()`` (canonical parameters), ``state``, ``executor``, ``run_config`` (the
    resolved config) and ``sources`` (where each of its settings came from).
    """

    def __init__(self, run: RunConfig, *, recipe: Recipe | None = None, data=None, init_params=None,
                 observers: list | None = None, console=None, progress: bool | None = None,
                 on_step: Callable[[dict], None] | None = None, lr_in_state: bool = False):
        self.requested, self.recipe, self.lr_in_state = run, recipe, lr_in_state
        self.run_config, self.sources = resolve(run, recipe)  # before the run dir is read; run() resolves once more
        self.gpt = self.run_config.gpt_config()
        self.run_dir = run_dir_of(run, recipe)
        self.data = data if data is not None else PretrainingData()
        self.init_params = init_params
        self.observers = list(observers or [])
        console = obs.progress_console(console, progress)
        if console is not None:
            self.observers.append(obs.Progress(console))
        if on_step is not None:
            self.observers.append(obs.OnStep(on_step))
        self.result: dict | None = None
        self.changes: dict = {}

    def run(self) -> dict:
        """Train from the run dir's latest checkpoint (or from scratch) to ``train.steps``; returns the result."""
        import jax

        from runtime.checkpoint import RunCheckpoints
        from runtime.platform import build_run_mesh, use_compile_cache

        use_compile_cache(self.run_config.execution.compile_cache)  # before anything compiles
        mesh = build_run_mesh(self.requested)  # first: emulated devices and jax.distributed precede any JAX use
        lead = jax.process_index() == 0
        ckpt = RunCheckpoints(self.run_dir, keep=self.run_config.train.keep)
        lock = None
        # metrics, plots, config.yaml, the lock: a full or read-only run dir is one line (checkpoints say more)
        with writing(self.run_dir, what="writing the run dir", readonly_fix="choose another train.run_dir",
                     fix="free space or move train.run_dir, then run the same command"):
            try:
                open_run(self.requested, ckpt, self.recipe)  # refuses a run dir that is not ours before writing anything
                lock = RunDirLock(self.run_dir).acquire() if lead else None  # one run per run dir
                opened = open_run(self.requested, ckpt, self.recipe)  # again under the lock: another run may have saved
                self.run_config, self.sources, self.changes = opened.config, opened.sources, opened.changes
                train_loader, val_loader = self.data.loaders(self.run_config, jax.process_index(), jax.process_count())
                parts = compiled_for(self.run_config, self.gpt, mesh, self.lr_in_state)
                state, start, run_key = self._initial_state(parts, ckpt, opened.resume_step, train_loader)
                ctx = obs.RunContext(self.run_config, self.gpt, parts.executor, start, self.run_dir, lead=lead,
                                     state=state, data=data_facts(self.run_config, train_loader, val_loader),
                                     from_weights=self.init_params is not None)
                if ctx.lead:
                    write_config(self.run_dir, self.run_config)
                with StopSignals() as signals:
                    summary = self._train(ctx, parts, train_loader, val_loader, ckpt, run_key, signals)
            finally:
                ckpt.close()  # waits for the last asynchronous save
                if lock is not None:
                    lock.release()
        self.state, self.executor = ctx.state, parts.executor
        if summary.get("stopped"):
            signum, step = summary["stopped"]
            raise TrainingStopped(f"stopped by {signal_name(signum)} after step {step} of {self.run_config.train.steps}: "
                                  f"its checkpoint is saved in {self.run_dir}; run the same command to resume",
                                  128 + signum)
        self.result = self._result(mesh, ctx, summary, ckpt)
        return self.result

    def params(self):
        """The trained parameters in the canonical layout (after ``run``), e.g. for generation."""
        return self.executor.canonical(self.state["params"])

    def _initial_state(self, parts, ckpt, resume_step, train_loader):
        """(placed state, start step, RNG key): fresh, or the checkpoint's with the loader seeked to its step."""
        import jax

        init_key, run_key = jax.random.split(jax.random.key(self.run_config.train.seed))
        ex, optimizer = parts.executor, parts.optimizer
        if resume_step is None:
            return ex.init_state(self._fresh_params(init_key), optimizer), 0, run_key
        state, meta = restore_state(ckpt, self.gpt, ex, optimizer)
        start = int(meta["step"])
        if meta.get("data"):
            train_loader.check(meta["data"])  # same data, batch, window and seed; the position is the step
        train_loader.seek(start)
        return state, start, key_from_data(meta.get("rng"), run_key)

    def _fresh_params(self, key):
        from model.gpt import check_params, initial_params

        if self.init_params is not None:
            try:
                check_params(self.gpt, self.init_params)
            except ValueError as err:
                raise UserError(f"the starting parameters do not fit model '{self.gpt.name}': {err}") from None
            return self.init_params
        return initial_params(self.gpt, key)

    def _train(self, ctx, parts, train_loader, val_loader, ckpt, run_key, signals) -> dict:
        """The observers around the step loop; the loop's summary."""
        ex, t = parts.executor, self.run_config.train
        evaluation = None
        if t.eval_batches > 0 and val_loader is not None:
            evaluation = obs.Evaluation(val_loader, parts.eval_loss, lambda b: place(ex, b))
        ctx.observers = [obs.MetricsLog(), *reporting_observers(self.run_config), *self.observers,
                         *([evaluation] if evaluation else []), obs.LossPlot()]
        for o in ctx.observers:
            o.start(ctx)
        try:
            summary = self._loop(ctx, parts, train_loader, ckpt, run_key, signals)
            ctx.finished = not summary.get("stopped")
        finally:
            for o in reversed(ctx.observers):
                o.end(ctx)
        last = evaluation.last if evaluation else (None, None)
        return {**summary, "val_loss": last[0], "val_perplexity": last[1],
                "val_tokens": evaluation.tokens if evaluation else 0,
                "val_coverage": evaluation.coverage if evaluation else 0.0}

    def _loop(self, ctx, parts, train_loader, ckpt, run_key, signals) -> dict:
        """Steps ``start+1 .. train.steps``, or up to the step a stop signal arrived in (``stopped``: (signal, step),
        that step checkpointed); the losses and throughput."""
        import jax

        t, ex = self.run_config.train, parts.executor
        stopped = None
        peak = peak_flops(t.dtype, list(ex.mesh.devices.flat))
        tokens_per_step, flops_per_token = t.batch_size * t.seq_len, self.gpt.flops_per_token_6n()
        losses, times = [], []
        pending = place(ex, next(train_loader)) if ctx.start < t.steps else None
        for step in range(ctx.start + 1, t.steps + 1):
            batch, t0 = pending, time.perf_counter()
            ctx.state, metrics = parts.train_step(ctx.state, *batch)  # dispatched asynchronously
            # read and transfer the next batch while the devices run this step
            pending = place(ex, next(train_loader)) if step < t.steps else None
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}  # waits for the step: one transfer
            dt = time.perf_counter() - t0
            if not metrics.get("finite", 1.0) or not math.isfinite(metrics["loss"]):  # before anything is saved
                raise diverged(step, metrics, ckpt, self._lower_lr())
            loss = metrics["loss"]
            losses.append(loss)
            times.append(dt)
            record = {"kind": "train", "step": step, "loss": loss, "tokens_per_s": tokens_per_step / dt,
                      "mfu": peak.mfu(flops_per_token * tokens_per_step / dt), "time": time.time()}
            ctx.emit({**record, **{k: float(metrics[k]) for k in ("grad_norm", "lr") if k in metrics}})
            stop = signals.agreed(jax.process_count()) if step < t.steps else None
            if stop or step % t.checkpoint_every == 0 or step == t.steps:
                try:
                    save_state(ckpt, self.run_config, self.gpt, ex, ctx.state, step, train_loader.state(step), run_key)
                except Diverged as err:  # weights not finite although the loss and gradient norm were
                    raise diverged(step, err.detail, ckpt, self._lower_lr()) from None
            if stop:
                stopped = (stop, step)
                break
            for o in ctx.observers:
                o.step(ctx, step)
        steady = times[1:] if len(times) > 1 else times  # the first step pays for compilation
        tps = tokens_per_step * len(steady) / sum(steady) if steady else None
        return {"stopped": stopped, "losses": losses, "final_loss": losses[-1] if losses else None, "tokens_per_s": tps,
                "mfu": peak.mfu(flops_per_token * tps) if tps else None, "mfu_peak_flops": peak.flops,
                "mfu_peak_source": peak.source, "flops_per_token_6n": flops_per_token}

    def _lower_lr(self) -> float:
        """A learning rate to continue a diverged run with: a tenth of its own, and no more than the preset recipe's
        when it ran above that."""
        lr = self.run_config.train.lr
        lower = lr / 10 if lr <= self.gpt.learning_rate else min(lr / 10, self.gpt.learning_rate)
        return float(f"{lower:.3g}")

    def _result(self, mesh, ctx, summary: dict, ckpt) -> dict:
        import jax

        t = self.run_config.train
        summary = {k: v for k, v in summary.items() if k != "stopped"}
        return {
            "steps": t.steps, "start_step": ctx.start, **summary, "mode": ctx.executor.mode,
            "mesh": {a: int(s) for a, s in zip(mesh.axis_names, mesh.devices.shape)}, "plan": ctx.executor.plan,
            "processes": jax.process_count(), "process_index": jax.process_index(),
            "run_dir": str(self.run_dir), "model": self.gpt.name, "parameters": self.gpt.parameters,
            "batch_size": t.batch_size, "seq_len": t.seq_len, "tokens_per_step": t.batch_size * t.seq_len,
            "train_data": ctx.data, "epochs": epochs(t.steps, t.batch_size, ctx.data["windows"]),
            "checkpoint_step": ckpt.latest_step(), "config": self.run_config.flat(), "config_sources": dict(self.sources),
            "resume_changes": dict(self.changes),
        }


def place(ex, batch) -> list:
    """A loader batch ``(inputs, targets[, mask])`` as int32/int32/bool arrays placed on the executor's mesh
    (this process's rows); the mask is None when every position counts."""
    import numpy as np

    inputs, targets, *rest = batch
    mask = np.asarray(rest[0], bool) if rest and rest[0] is not None else None
    arrays = (np.asarray(inputs, np.int32), np.asarray(targets, np.int32), mask)
    return [None if a is None else ex.put_local_batch(a) for a in arrays]


def train(config: RunConfig | str | None = None, overrides: list[str] | tuple[str, ...] = (), **kwargs) -> dict:
    """Convenience: ``train("run.yaml", ["train.steps=20"])`` or ``train(load_config(...))`` -> result dict."""
    run = config if isinstance(config, RunConfig) else load_config(config, overrides)
    return Trainer(run, **kwargs).run()

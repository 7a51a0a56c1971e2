"""The training loop behind `wse train` (and fine-tuning, and the tutorial's ``model.train``).

One ``Trainer`` owns a run: it resolves the run config, refuses a run dir that belongs to another model or another
data/optimisation setup before touching it, builds the mesh, the executor (runtime.execution) and the optimizer
(runtime.optim), restores the latest checkpoint of the run dir (onto whatever mesh and mode this run uses), and then
steps: one jitted, donated step per global batch, a guard on non-finite loss, asynchronous checkpoints every
``train.checkpoint_every`` steps, validation every ``train.eval_every`` steps and at the end, metrics as JSONL and a
loss-curve PNG in the run dir.

Exact resume: everything the next step depends on is in the checkpoint (parameters, optimizer state with its step
count, the loader's position, the RNG key, the resolved config), and the step is a pure function of them, so a run
killed at any moment and started again computes bitwise the same losses on CPU as one that never stopped.

Throughput is reported as tokens/s and MFU = 6N x tokens/s / peak, where the peak is stated with its source (see
``peak_flops``): a published figure for known accelerators, otherwise a dense matmul measured on this machine.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

from runtime.config import RunConfig, load_config, resume_conflicts
from runtime.errors import UserError

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"
CONFIG_FILE = "config.yaml"
# Without a terminal, training progress is one plain stderr line this often (and at the last step).
PLAIN_PROGRESS_SECONDS = 10.0
# Published dense peak FLOP/s per device (bf16, and TF32 tensor cores for float32 matmuls) from the vendors' data
# sheets; used for MFU when the device kind matches (nominal_peak: the first name the device kind contains, so the
# variants come before their family). Anything else is measured (see peak_flops).
NOMINAL_PEAK = {
    "H100 PCIe": {"bfloat16": 756e12, "float32": 378e12},  # NVIDIA H100 PCIe data sheet
    "H200 NVL": {"bfloat16": 835e12, "float32": 418e12},  # NVIDIA H200 NVL data sheet
    "H100 NVL": {"bfloat16": 835e12, "float32": 418e12},  # NVIDIA H100 NVL data sheet
    "H200": {"bfloat16": 989.4e12, "float32": 494.7e12},  # NVIDIA H200 SXM data sheet: dense bf16 / TF32 tensor core
    "H100": {"bfloat16": 989.4e12, "float32": 494.7e12},  # NVIDIA H100 SXM data sheet (same figures)
    "A100": {"bfloat16": 312e12, "float32": 156e12},  # NVIDIA A100 data sheet: dense bf16 / TF32
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12},  # Google Cloud TPU v4 documentation
    "TPU v5e": {"bfloat16": 197e12, "float32": 197e12},  # Google Cloud TPU v5e documentation
}


def nominal_peak(device_kind: str, dtype: str) -> tuple[str, float] | None:
    """(table name, dense peak FLOP/s of one device in ``dtype``) from NOMINAL_PEAK for a device kind such as
    "NVIDIA H200", or None when the device is not listed."""
    for name, peaks in NOMINAL_PEAK.items():
        if name.lower() in device_kind.lower():
            return name, peaks[dtype]
    return None


# The matmul timed when no nominal peak applies: 1024^3 x 2 = 2.1 GFLOP, a few tens of ms on a 2-core CPU.
PEAK_MATMUL_SIZE = 1024


# ----------------------------------------------------------------------------------------------------------------
# Mesh and throughput accounting.


def build_run_mesh(run: RunConfig):
    """The run's mesh (runtime.mesh.build_mesh). Call it before anything else touches JAX: on CPU it sets the
    emulated device count, and it joins a multi-process run, both of which only work before JAX's backend starts."""
    from runtime.mesh import build_mesh

    m = run.mesh
    return build_mesh(m.platform, run.devices(), m.axes.model_dump(), coordinator=m.coordinator_address,
                      num_processes=m.num_processes, process_id=m.process_id)


def peak_flops(dtype: str, devices: list) -> tuple[float, str]:
    """(peak FLOP/s of the whole mesh, how it was obtained) for MFU.

    Known accelerators: the published dense peak per device times the device count. Otherwise (CPU, unknown GPUs):
    a ``PEAK_MATMUL_SIZE`` square matmul in ``dtype`` timed on one device, best of 3; on CPU the emulated devices
    share the host's cores, so the host's measured rate is the peak of the whole mesh, not one device's.
    """
    key = (dtype, tuple(d.id for d in devices), devices[0].platform)
    if key not in _PEAKS:
        _PEAKS[key] = _peak_flops(dtype, devices)
    return _PEAKS[key]


_PEAKS: dict = {}  # measured once per process and mesh


def _peak_flops(dtype: str, devices: list) -> tuple[float, str]:
    import jax
    import jax.numpy as jnp

    known = nominal_peak(str(getattr(devices[0], "device_kind", "")), dtype)
    if known is not None:
        name, peak = known
        return peak * len(devices), f"nominal {name} {dtype} peak x {len(devices)} devices"
    n = PEAK_MATMUL_SIZE
    local = [d for d in devices if d.process_index == jax.process_index()] or devices
    a = jax.device_put(jnp.ones((n, n), dtype), local[0])
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    rate = 2 * n ** 3 / best
    if devices[0].platform == "cpu":
        return rate, f"measured {n}^3 {dtype} matmul on this host ({rate / 1e9:.1f} GFLOP/s; emulated devices share it)"
    return rate * len(devices), f"measured {n}^3 {dtype} matmul x {len(devices)} devices"


# ----------------------------------------------------------------------------------------------------------------
# Data.


def open_data(run: RunConfig, process_index: int = 0, process_count: int = 1):
    """(train Loader, validation Loader or None, dataset directory) for ``run.data``; UserError when the data's
    vocabulary is larger than the model's.

    ``builtin`` is the python-docs corpus, prepared once into the cache (runtime.data.prepare_builtin). The
    validation loader reads the held-out split in file order (no shuffle), so every evaluation sees the same batches.
    """
    from runtime.data import Loader, TokenDataset, prepare_builtin

    t = run.train
    directory = prepare_builtin() if run.data == "builtin" else Path(run.data)
    dataset, cfg = TokenDataset(directory, "train"), run.gpt_config()
    if dataset.vocab_size > cfg.vocab_size:  # jnp.take would silently clamp the larger ids
        raise UserError(f"the data was tokenized into {dataset.vocab_size} ids but model '{cfg.name}' has a vocabulary "
                        f"of {cfg.vocab_size}; use a model with vocab_size >= {dataset.vocab_size} or re-tokenize the "
                        "data (`wse data --tokenizer`)")
    train = Loader(dataset, t.batch_size, t.seq_len, seed=t.seed,
                   process_index=process_index, process_count=process_count)
    try:
        val = Loader(TokenDataset(directory, "val"), t.batch_size, t.seq_len, seed=t.seed, shuffle=False,
                     process_index=process_index, process_count=process_count)
    except UserError:
        val = None  # no or too small a validation split: evaluation is reported as skipped
    return train, val, directory


# ----------------------------------------------------------------------------------------------------------------


class Trainer:
    """One training run. ``Trainer(run_config).run()`` -> the result dict `wse train --json` prints.

    Hooks for callers that train something other than pre-training on ``run.data`` (fine-tuning, the tutorial):

    - ``train_loader``: an iterator of ``(inputs, targets)`` or ``(inputs, targets, mask)`` NumPy batches ([rows,
      seq_len]; this process's rows of the global batch; mask True where the loss counts) with ``state()`` ->
      JSON-able dict and ``restore(state)``, so that its position is checkpointed (runtime.data.Loader is one);
    - ``val_loader``: ``batch(0, i)`` gives validation batch ``i`` (same forms), ``steps_per_epoch`` how many exist;
    - ``init_params``: canonical parameters to start a fresh run from (ignored when the run dir has a checkpoint:
      resuming wins);
    - ``console``/``progress``: where the progress bar goes (default: stderr when it is a terminal; False: none);
    - ``on_step``: called with each step's metrics record.

    After ``run``: ``result`` (the dict), ``params()`` (canonical parameters), ``state`` and ``executor``.
    """

    def __init__(self, run: RunConfig, *, train_loader=None, val_loader=None, init_params=None,
                 console=None, progress: bool | None = None, on_step: Callable[[dict], None] | None = None):
        self._requested = run
        self.run_config = run.resolve()
        self.gpt = self.run_config.gpt_config()
        self.run_dir = Path(self.run_config.train.run_dir)
        self._train_loader, self._val_loader, self._init_params = train_loader, val_loader, init_params
        self.console, self.progress, self.on_step = console, progress, on_step
        self.result: dict | None = None

    # ----- the run --------------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train from the run dir's latest checkpoint (or from scratch) to ``train.steps``; returns the result."""
        import jax

        from runtime.checkpoint import RunCheckpoints

        mesh = build_run_mesh(self.run_config)  # first: emulated devices and jax.distributed precede any JAX use
        ckpt = RunCheckpoints(self.run_dir, keep=self.run_config.train.keep)
        try:
            resume = self._check_resume(ckpt)  # refuses before anything is built or written
            train_loader, val_loader = self._loaders()  # so does data the model cannot take
            ex, optimizer, state, start, run_key = self._build(mesh, ckpt, resume)
            if self._loader_state is not None:
                train_loader.restore(self._loader_state)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            lead = jax.process_index() == 0
            if lead:
                (self.run_dir / CONFIG_FILE).write_text(_yaml(self.run_config.model_dump()), encoding="utf-8")
            log = _MetricsLog(self.run_dir / METRICS_FILE, start, enabled=lead)
            try:
                state, summary = self._loop(ex, optimizer, state, start, run_key, train_loader, val_loader, ckpt, log)
            finally:
                log.close()
        finally:
            ckpt.close()  # waits for the last asynchronous save
        if lead:
            plot_losses(self.run_dir / METRICS_FILE, self.run_dir / LOSS_PLOT)
        self.state, self.executor = state, ex
        t = self.run_config.train
        self.result = {
            "steps": t.steps, "start_step": start, **summary, "mode": ex.mode,
            "mesh": {a: int(s) for a, s in zip(mesh.axis_names, mesh.devices.shape)}, "plan": ex.plan,
            "run_dir": str(self.run_dir), "model": self.gpt.name, "parameters": self.gpt.parameters,
            "batch_size": t.batch_size, "seq_len": t.seq_len, "tokens_per_step": t.batch_size * t.seq_len,
            "checkpoint_step": ckpt.latest_step(),
        }
        return self.result

    def params(self):
        """The trained parameters in the canonical layout (after ``run``), e.g. for generation."""
        return self.executor.canonical(self.state["params"])

    def _build(self, mesh, ckpt, resume):
        """(executor, optimizer, placed state, start step, RNG key): fresh or restored from ``resume``."""
        import jax

        t = self.run_config.train
        self._parts = _components(self.run_config, self.gpt, mesh)
        ex, optimizer = self._parts.executor, self._parts.optimizer
        init_key, run_key = jax.random.split(jax.random.key(t.seed))
        self._loader_state = None
        if resume is None:
            return ex, optimizer, ex.init_state(self._fresh_params(init_key), optimizer), 0, run_key
        state, tstate = self._restore(ckpt, ex, optimizer)
        self._loader_state = tstate.get("data")
        return ex, optimizer, state, int(tstate["step"]), _key_from_data(tstate.get("rng"), run_key)

    def _loop(self, ex, optimizer, state, start, run_key, train_loader, val_loader, ckpt, log):
        """Steps ``start+1 .. train.steps`` with the guard, checkpoints and evaluations; (state, summary)."""
        t = self.run_config.train
        step_fn = self._parts.train_step
        eval_fn = self._parts.eval_loss if t.eval_batches > 0 and val_loader is not None else None
        peak, peak_source = peak_flops(t.dtype, list(ex.mesh.devices.flat))
        tokens_per_step, flops_per_token = t.batch_size * t.seq_len, self.gpt.flops_per_token_6n()
        losses, times, val = [], [], (None, None)
        bar = _Progress(self._console(), start, t.steps)

        def prefetch():
            """The next batch, placed on the devices, and the loader position after it (what a checkpoint saves)."""
            batch = [None if a is None else ex.put_local_batch(a) for a in _split(next(train_loader))]
            return batch, train_loader.state()

        try:
            pending = prefetch() if start < t.steps else None
            for step in range(start + 1, t.steps + 1):
                (batch, data_position), t0 = pending, time.perf_counter()
                state, metrics = step_fn(state, *batch)  # dispatched asynchronously
                # read and transfer the next batch while the devices run this step
                pending = prefetch() if step < t.steps else None
                loss = float(metrics["loss"])  # waits for the step
                dt = time.perf_counter() - t0
                if not math.isfinite(loss):
                    last = ckpt.latest_step()
                    kept = f"the checkpoint of step {last} is intact" if last is not None else "no checkpoint was written"
                    raise UserError(f"loss is {loss} at step {step}: training diverged; lower train.lr or raise "
                                    f"train.warmup_steps ({kept})")
                losses.append(loss)
                times.append(dt)
                record = {"kind": "train", "step": step, "loss": loss, "tokens_per_s": tokens_per_step / dt,
                          "mfu": flops_per_token * tokens_per_step / dt / peak, "time": time.time()}
                record.update({k: float(metrics[k]) for k in ("grad_norm", "lr") if k in metrics})
                log.write(record)
                if self.on_step is not None:
                    self.on_step(record)
                bar.update(step, loss, record["tokens_per_s"], record["mfu"])
                if step % t.checkpoint_every == 0 or step == t.steps:
                    self._save(ckpt, ex, state, step, data_position, run_key)
                if eval_fn is not None and (step % t.eval_every == 0 or step == t.steps):
                    val = self._evaluate(eval_fn, state, val_loader, ex)
                    log.write({"kind": "eval", "step": step, "val_loss": val[0], "val_perplexity": val[1],
                               "time": time.time()})
                    bar.note(f"step {step}: validation loss {val[0]:.4f}, perplexity {val[1]:.2f}")
            if start >= t.steps and eval_fn is not None:
                val = self._evaluate(eval_fn, state, val_loader, ex)  # nothing left to train: still report
        finally:
            bar.close()
        steady = times[1:] if len(times) > 1 else times  # the first step pays for compilation
        tps = tokens_per_step * len(steady) / sum(steady) if steady else None
        return state, {
            "losses": losses, "final_loss": losses[-1] if losses else None, "tokens_per_s": tps,
            "mfu": flops_per_token * tps / peak if tps else None, "mfu_peak_flops": peak,
            "mfu_peak_source": peak_source, "flops_per_token_6n": flops_per_token,
            "val_loss": val[0], "val_perplexity": val[1],
        }

    def _save(self, ckpt, ex, state, step, data_position: dict, run_key) -> None:
        """Start an asynchronous checkpoint of everything the next step depends on (canonical layout);
        ``data_position`` is the train loader's state() after this step's batch."""
        canonical = ex.export_state(state)
        ckpt.save(step, self.gpt, canonical["params"], canonical["opt_state"], {
            "step": step, "data": data_position, "rng": _key_data(run_key),
            "config": self.run_config.model_dump(), "tokens": step * self.run_config.train.batch_size
            * self.run_config.train.seq_len,
        })

    # ----- pieces -----------------------------------------------------------------------------------------------
    def _check_resume(self, ckpt) -> int | None:
        """The step to resume from (None: fresh), refusing a run dir whose checkpoint this run cannot continue."""
        from runtime.checkpoint import describe_model, same_model

        step = ckpt.latest_step()
        if step is None:
            _check_fresh_run_dir(self.run_dir)
            return None
        saved_model, tstate = ckpt.read_meta(step)
        if not same_model(saved_model, self.gpt):
            raise UserError(f"train.run_dir '{self.run_dir}' holds checkpoints of model {describe_model(saved_model)}, "
                            f"not {describe_model(self.gpt)}; choose another train.run_dir")
        self.run_config = self._requested.resolve(saved=tstate.get("config"))  # unset settings continue as saved
        conflicts = resume_conflicts(tstate.get("config", {}), self.run_config)
        if conflicts:
            from runtime.config import flatten

            saved = flatten(tstate["config"])
            k = conflicts[0]
            raise UserError(f"train.run_dir '{self.run_dir}' was trained with {k}={saved[k]!r} but this run sets "
                            f"{k}={self.run_config.flat()[k]!r}; resume with the same value or choose another train.run_dir")
        return step

    def _fresh_params(self, key):
        from model.gpt import check_params

        if self._init_params is not None:
            try:
                check_params(self.gpt, self._init_params)
            except ValueError as err:
                raise UserError(f"the starting parameters do not fit model '{self.gpt.name}': {err}") from None
            return self._init_params
        return _init_params_jit()(self.gpt, key)

    def _restore(self, ckpt, ex, optimizer):
        """The latest checkpoint, placed for this run's mesh and mode (whatever mesh and mode saved it).

        Checkpoints hold the canonical layout. When this mode's layout is canonical too (all but uneven pipelines),
        Orbax reads every array straight into its target sharding; otherwise arrays are read replicated and
        re-laid out by the executor (``import_state``).
        """
        import jax
        import jax.numpy as jnp
        from jax.sharding import NamedSharding, PartitionSpec as P

        from model.gpt import param_shapes

        canonical = param_shapes(self.gpt)
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
        params, opt_state, tstate = ckpt.restore(jax.tree.map(target, shapes, sh["params"]),
                                                 jax.tree.map(target, opt_shapes, sh["opt_state"]))
        state = {"params": params, "opt_state": opt_state, "step": jnp.asarray(int(tstate["step"]), jnp.int32)}
        if direct:
            state["step"] = jax.device_put(state["step"], ex.replicated)
        else:
            state = ex.import_state(state, optimizer)
        return state, tstate

    def _loaders(self):
        import jax

        if self._train_loader is not None:
            return self._train_loader, self._val_loader
        train, val, _ = open_data(self.run_config, jax.process_index(), jax.process_count())
        return train, val

    def _evaluate(self, eval_fn, state, val_loader, ex) -> tuple[float, float]:
        """(loss, perplexity): mean validation loss over the first ``train.eval_batches`` batches of the
        validation split (the same batches every time)."""
        n = min(self.run_config.train.eval_batches, getattr(val_loader, "steps_per_epoch", self.run_config.train.eval_batches))
        total = 0.0
        for i in range(n):
            batch = [None if a is None else ex.put_local_batch(a) for a in _split(val_loader.batch(0, i))]
            total += float(eval_fn(state["params"], *batch))
        loss = total / max(n, 1)
        return loss, math.exp(min(loss, 700.0))

    def _console(self):
        if self.progress is False:
            return None
        if self.console is not None:
            return self.console
        if self.progress or sys.stderr.isatty():
            from rich.console import Console

            return Console(stderr=True)
        return "plain"  # redirected: plain log lines (see _Progress)


def _check_fresh_run_dir(run_dir: Path) -> None:
    """A run dir without checkpoints must be new, empty, or one of ours (a run killed before its first checkpoint);
    anything else is somebody's data that a training run must not write into."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise UserError(f"train.run_dir '{run_dir}' is a file; give a directory path")
    ours = {"checkpoints", METRICS_FILE, LOSS_PLOT, CONFIG_FILE}
    entries = {p.name for p in run_dir.iterdir()}
    if entries - ours:
        if any(name.isdigit() and (run_dir / name / "model").is_dir() for name in entries):
            raise UserError(f"train.run_dir '{run_dir}' holds a model checkpoint, not a training run; to start from it "
                            "use `wse finetune --from` it, or choose another train.run_dir")
        raise UserError(f"train.run_dir '{run_dir}' is a non-empty directory that is not a training run; "
                        "choose a new or empty train.run_dir")


def train(config: RunConfig | str | None = None, overrides: list[str] | tuple[str, ...] = (), **kwargs) -> dict:
    """Convenience: ``train("run.yaml", ["train.steps=20"])`` or ``train(load_config(...))`` -> result dict."""
    run = config if isinstance(config, RunConfig) else load_config(config, overrides)
    return Trainer(run, **kwargs).run()


# ----------------------------------------------------------------------------------------------------------------
# Helpers.


class _Components:
    """What a run compiles: executor, optimizer, training step, evaluation loss."""

    def __init__(self, run: RunConfig, gpt, mesh):
        import jax

        from runtime.execution import build_executor
        from runtime.optim import build_optimizer

        x, t = run.execution, run.train
        self.executor = build_executor(x.mode, gpt, mesh, microbatches=x.microbatches, dtype=jax.numpy.dtype(t.dtype),
                                       remat=x.remat, attention=x.attention, fsdp=x.fsdp, batch_size=t.batch_size // t.accum_steps,
                                       seq_len=t.seq_len)
        self.optimizer = build_optimizer(gpt, total_steps=t.decay_steps, lr=t.lr, warmup_steps=t.warmup_steps,
                                         decay=t.decay, end_fraction=t.min_lr_ratio, weight_decay=t.weight_decay,
                                         clip_norm=t.grad_clip)
        self.train_step = self.executor.make_train_step(self.optimizer, accum_steps=t.accum_steps)
        self.eval_loss = self.executor.eval_loss


# Runs in one process that compute the same thing (a resumed run, the tutorial's train-then-train-more, tests)
# reuse the compiled step instead of compiling it again: XLA compilation is most of a short run's time on CPU.
_COMPONENTS: dict = {}
_COMPONENTS_KEEP = 4


def _components(run: RunConfig, gpt, mesh) -> _Components:
    """The (cached) components for a run: the key is everything that shapes the compiled programs."""
    t = run.train
    key = (gpt, tuple(d.id for d in mesh.devices.flat), tuple(mesh.devices.shape), run.execution,
           (t.decay_steps, t.batch_size, t.seq_len, t.lr, t.warmup_steps, t.decay, t.min_lr_ratio, t.weight_decay,
            t.grad_clip, t.accum_steps, t.dtype))
    key = repr(key)
    if key not in _COMPONENTS:
        while len(_COMPONENTS) >= _COMPONENTS_KEEP:
            _COMPONENTS.pop(next(iter(_COMPONENTS)))
        _COMPONENTS[key] = _Components(run, gpt, mesh)
    else:
        _COMPONENTS[key] = _COMPONENTS.pop(key)  # most recently used last
    return _COMPONENTS[key]


@functools.cache
def _init_params_jit():
    """model.gpt.init_params as one jitted computation (eagerly it compiles one program per tensor), kept for the
    process so that every run of the same model reuses the compilation."""
    import jax

    from model.gpt import init_params

    return jax.jit(init_params, static_argnums=0)


def _split(batch) -> tuple:
    """(inputs, targets, mask or None) as int32/int32/bool arrays; no mask means every position counts."""
    import numpy as np

    inputs, targets, *rest = batch
    mask = np.asarray(rest[0], bool) if rest and rest[0] is not None else None
    return np.asarray(inputs, np.int32), np.asarray(targets, np.int32), mask


def _key_data(key) -> list[int]:
    import jax
    import numpy as np

    return [int(x) for x in np.asarray(jax.random.key_data(key)).ravel()]


def _key_from_data(data, default):
    import jax
    import jax.numpy as jnp

    if not data:
        return default
    return jax.random.wrap_key_data(jnp.asarray(data, jnp.uint32).reshape(jax.random.key_data(default).shape))


def _yaml(tree: dict) -> str:
    import yaml

    return yaml.safe_dump(tree, sort_keys=False)


class _MetricsLog:
    """``metrics.jsonl`` in the run dir: one JSON object per line. A resumed run first drops the records of steps
    after the checkpoint it resumed from (the killed run's steps that are about to be recomputed)."""

    def __init__(self, path: Path, start_step: int, enabled: bool = True):
        self.path, self._file = path, None
        if not enabled:  # one writer per run: process 0 of a multi-process run
            return
        if path.exists():
            keep = [line for line in path.read_text(encoding="utf-8").splitlines() if _record_step(line) <= start_step]
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
            os.replace(tmp, path)
        self._file = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _record_step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", math.inf))
    except (ValueError, AttributeError):
        return math.inf  # a line cut by a kill: dropped


def read_metrics(path: str | Path) -> list[dict]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def plot_losses(metrics_path: Path, out: Path) -> Path | None:
    """Training and validation loss against step, from the run's metrics (all of it, across resumes)."""
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


class _Progress:
    """Training progress (step, loss, tokens/s, MFU): a rich progress bar on a console; ``console="plain"`` (stderr is
    not a terminal: a log file, a pipe, a batch job) a plain line on stderr every PLAIN_PROGRESS_SECONDS and at the
    last step, so that a redirected run is never silent for minutes; None: nothing."""

    def __init__(self, console, start: int, total: int):
        self._bar = self._plain = None
        self._total, self._last = total, time.perf_counter()
        if console is None:
            return
        if console == "plain":
            self._plain = True
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                             TimeRemainingColumn(), console=console, transient=False)
        self._task = self._bar.add_task("train", total=total, completed=start, info="compiling ...")
        self._bar.start()

    def update(self, step: int, loss: float, tps: float, mfu: float) -> None:
        info = f"loss {loss:.4f}  {tps:,.0f} tok/s  MFU {100 * mfu:.1f}%"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
        elif self._plain and (step == self._total or time.perf_counter() - self._last >= PLAIN_PROGRESS_SECONDS):
            self._last = time.perf_counter()
            print(f"train step {step}/{self._total}  {info}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)
        elif self._plain:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()

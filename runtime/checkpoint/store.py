"""Checkpoints: one Orbax format for everything that holds model weights.

A checkpoint directory is an Orbax ``CheckpointManager`` directory (``<dir>/<step>/<item>``) with the items
- ``model``: the GPTConfig fields (JSON), so a checkpoint says what model it is;
- ``params``: the parameters in the canonical stacked layout (model/gpt.py), whatever the execution plan was;
- ``integrity``: checksums of every saved array (JSON), because a garbled data file can decode into plausible wrong
  numbers without any error from the storage layer (measured: flipping bytes inside Orbax's compressed chunk file
  restored silently different values);
- for training runs, ``opt_state`` (the optimizer state, same canonical layout) and ``train_state`` (JSON: step,
  data position, RNG key, the resolved run config).
``wse convert --from-hf`` writes step 0 with ``model`` + ``params``; training runs write ``<run>/checkpoints``.
``load_model`` reads either (a run dir or a checkpoint dir) and takes the latest complete step: Orbax writes each
step to ``<step>.orbax-checkpoint-tmp`` and renames it when complete, so a half-written step (a process killed
mid-save) is never picked, and the next save in that run clears the leftover.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

from model.errors import first_line
from runtime.checkpoint.integrity import tree_checksums, verify_checksums
from runtime.errors import UserError, disk_full

MODEL_ITEM, PARAMS_ITEM = "model", "params"
OPT_ITEM, TRAIN_ITEM, INTEGRITY_ITEM = "opt_state", "train_state", "integrity"
# GPTConfig fields that are the published training recipe rather than the network: two configs that differ only in
# these (or the name) describe the same weights.
# How to get out of a damaged step, in every error about one.
_FIX = "restore it from a copy, or delete that step's directory to fall back to the previous checkpoint"
_RECIPE_FIELDS = ("name", "batch_size", "learning_rate", "lr_decay", "adam_eps")


def checkpoint_dir(path: str | Path) -> Path:
    """The CheckpointManager directory for a run dir (``<run>/checkpoints``) or a checkpoint dir itself."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        return path / "checkpoints"
    return path


def manager(directory: str | Path, *, keep: int | None = None, read_only: bool = False, async_save: bool = True):
    """An Orbax CheckpointManager; ``read_only`` ones never create, clean or delete anything."""
    import orbax.checkpoint as ocp

    if read_only:
        _quiet_read_only_warning()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else keep, create=not read_only, read_only=read_only,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=not read_only,
        save_interval_steps=0 if read_only else 1,
    )
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def _quiet_read_only_warning() -> None:
    """Orbax logs a warning every time a read-only manager opens; reading a checkpoint is not worth a warning."""
    import logging

    logger = logging.getLogger("absl")
    if not any(isinstance(f, _DropReadOnly) for f in logger.filters):
        logger.addFilter(_DropReadOnly())


class _DropReadOnly:
    def filter(self, record) -> bool:
        return not str(record.msg).startswith("Given directory is read only")


# ----------------------------------------------------------------------------------------------------------------
# Model-only checkpoints (convert, generate, eval).


def save_model(directory: str | Path, cfg, params, step: int = 0) -> Path:
    """Write a model-only checkpoint (config + parameters) at ``step``; refuses to overwrite an existing one."""
    import orbax.checkpoint as ocp

    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise UserError(f"output directory '{directory}' is not empty; choose a new --out directory")
    mgr = manager(directory, async_save=False)
    mgr.save(step, args=ocp.args.Composite(**{
        MODEL_ITEM: ocp.args.JsonSave(cfg.model_dump()),
        PARAMS_ITEM: ocp.args.StandardSave(params),
        INTEGRITY_ITEM: ocp.args.JsonSave({PARAMS_ITEM: tree_checksums(params)}),
    }))
    mgr.wait_until_finished()
    mgr.close()
    return directory


def latest_step(directory: str | Path) -> int | None:
    d = checkpoint_dir(directory)
    if not d.is_dir():
        return None
    mgr = manager(d, read_only=True)
    try:
        return mgr.latest_step()
    finally:
        mgr.close()


def load_model(path: str | Path, step: int | None = None, shardings: Any = None):
    """(GPTConfig, params) from a checkpoint or run directory (latest step unless ``step`` is given).

    ``shardings``: an optional pytree of ``jax.sharding.Sharding`` (same tree as the parameters) to restore directly
    onto a mesh; by default arrays land on the default device.
    """
    import jax

    from model.gpt import param_shapes

    d = checkpoint_dir(path)
    if not d.is_dir():
        raise UserError(f"checkpoint '{path}' does not exist; give a directory written by `wse train` or `wse convert`")
    mgr = manager(d, read_only=True)
    try:
        step = mgr.latest_step() if step is None else step
        if step is None:
            raise UserError(f"'{path}' holds no complete checkpoint; give a directory written by `wse train` or `wse convert`")
        cfg = _read_model(mgr, step, path)
        shapes = param_shapes(cfg)
        is_shape = lambda x: isinstance(x, tuple)  # noqa: E731
        if shardings is None:
            dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            shardings = jax.tree.map(lambda s: dev, shapes, is_leaf=is_shape)
        abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s, "float32", sharding=sh), shapes, shardings,
                                is_leaf=is_shape)
        params = _restore_item(mgr, step, PARAMS_ITEM, abstract, path)
        verify_checksums(PARAMS_ITEM, params, _read_json(mgr, step, INTEGRITY_ITEM, path, optional=True).get(PARAMS_ITEM),
                         f"checkpoint '{path}' step {step}", _FIX)
        return cfg, params
    finally:
        mgr.close()


def same_model(a, b) -> bool:
    """Whether two GPTConfigs describe the same network (recipe defaults and the name may differ)."""
    strip = lambda c: {k: v for k, v in c.model_dump().items() if k not in _RECIPE_FIELDS}  # noqa: E731
    return strip(a) == strip(b)


def describe_model(cfg) -> str:
    return f"'{cfg.name}' ({cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.parameters:,} parameters)"


# ----------------------------------------------------------------------------------------------------------------
# Training checkpoints.


class RunCheckpoints:
    """The checkpoints of one training run: ``<run_dir>/checkpoints``, one step per save, ``keep`` most recent kept.

    Reading never writes: the writable Orbax manager (which creates directories and clears leftovers of a killed
    save) is opened only by the first ``save``, so a run refused at start-up (another model's checkpoint, a corrupt
    one, a conflicting config) leaves the directory exactly as it was. Saves are asynchronous: ``save`` returns once
    the arrays are copied off the devices (so the caller may donate them to the next step) and the files are written
    in the background; ``wait`` blocks until they are complete.
    """

    def __init__(self, run_dir: str | Path, *, keep: int | None = 3, async_save: bool = True):
        self.run_dir = Path(run_dir)
        self.directory = self.run_dir / "checkpoints"
        self.keep, self.async_save = keep, async_save
        self._writer = None

    # ----- reading ------------------------------------------------------------------------------------------------
    def latest_step(self) -> int | None:
        if self._writer is not None:
            return self._writer.latest_step()
        return latest_step(self.directory) if self.directory.is_dir() else None

    def read_meta(self, step: int | None = None) -> tuple[Any, dict]:
        """(GPTConfig, train_state dict) of a step (default: the latest), without touching the arrays."""
        step = self._step(step)
        mgr = manager(self.directory, read_only=True)
        try:
            cfg = _read_model(mgr, step, self.run_dir)
            state = _read_json(mgr, step, TRAIN_ITEM, self.run_dir, optional=True)
            if not state:
                raise UserError(f"'{self.directory}' step {step} is a model-only checkpoint, not a training run; "
                                "fine-tune from it or choose another train.run_dir")
            return cfg, state
        finally:
            mgr.close()

    def restore(self, params_target, opt_target, step: int | None = None) -> tuple[Any, Any, dict]:
        """(params, opt_state, train_state) of a step, placed as the targets say.

        The targets are pytrees of arrays or ``jax.ShapeDtypeStruct`` with shardings, for the mesh and mode the
        resumed run uses; the saved layout is canonical, so a run saved on 8 devices pipelined restores onto 4
        streaming or onto 1. Every array is checked against the saved checksums.
        """
        step = self._step(step)
        where = f"checkpoint '{self.directory}' step {step}"
        mgr = manager(self.directory, read_only=True)
        try:
            state = _read_json(mgr, step, TRAIN_ITEM, self.run_dir)
            sums = _read_json(mgr, step, INTEGRITY_ITEM, self.run_dir, optional=True)
            params = _restore_item(mgr, step, PARAMS_ITEM, _abstract(params_target), self.run_dir)
            verify_checksums(PARAMS_ITEM, params, sums.get(PARAMS_ITEM), where, _FIX)
            opt_state = _restore_item(mgr, step, OPT_ITEM, _abstract(opt_target), self.run_dir)
            verify_checksums(OPT_ITEM, opt_state, sums.get(OPT_ITEM), where, _FIX)
            return params, opt_state, state
        finally:
            mgr.close()

    def _step(self, step: int | None) -> int:
        if step is None:
            step = self.latest_step()
        if step is None:
            raise UserError(f"'{self.run_dir}' holds no complete checkpoint; start a fresh run there or pick another run_dir")
        return step

    # ----- writing ------------------------------------------------------------------------------------------------
    def save(self, step: int, cfg, params, opt_state, train_state: dict) -> None:
        """Start writing step ``step``: model config, canonical params, optimizer state, train state, checksums."""
        import orbax.checkpoint as ocp

        if self._writer is None:
            self._writer = manager(self.directory, keep=self.keep, async_save=self.async_save)
        both = tree_checksums({PARAMS_ITEM: params, OPT_ITEM: opt_state})  # one device call for both
        sums = {item: {k.removeprefix(item + "/"): v for k, v in both.items() if k.startswith(item + "/")}
                for item in (PARAMS_ITEM, OPT_ITEM)}
        with self._writing():  # the previous save's failure (if any) is that step's, reported before this one starts
            self._writer.wait_until_finished()
        with self._writing(step, _tree_bytes(params) + _tree_bytes(opt_state)):
            self._writer.save(step, args=ocp.args.Composite(**{
                MODEL_ITEM: ocp.args.JsonSave(cfg.model_dump()),
                PARAMS_ITEM: ocp.args.StandardSave(params),
                OPT_ITEM: ocp.args.StandardSave(opt_state),
                TRAIN_ITEM: ocp.args.JsonSave(json.loads(json.dumps(train_state))),
                INTEGRITY_ITEM: ocp.args.JsonSave(sums),
            }), force=True)

    def wait(self) -> None:
        if self._writer is not None:
            with self._writing():
                self._writer.wait_until_finished()

    def close(self) -> None:
        if self._writer is not None:
            try:
                with self._writing():
                    self._writer.wait_until_finished()
            finally:
                self._writer.close()
                self._writer = None

    @contextlib.contextmanager
    def _writing(self, step: int | None = None, nbytes: int | None = None):
        """Around a save (``step`` of ``nbytes``) or a wait for one: a full disk becomes one UserError naming the run
        dir, the free space and the size needed, after the half-written step is removed (the complete ones stay)."""
        if step is not None:
            self._pending = (step, nbytes)
        try:
            yield
        except Exception as err:
            if not disk_full(err):
                raise
            failed, need = getattr(self, "_pending", (None, None))
            writer, self._writer = self._writer, None
            with contextlib.suppress(Exception):
                writer.close()
            for leftover in self.directory.glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(leftover, ignore_errors=True)
            free = shutil.disk_usage(self.directory if self.directory.exists() else self.run_dir).free
            last = latest_step(self.directory) if self.directory.is_dir() else None
            kept = f"the checkpoint of step {last} is intact" if last is not None else "no earlier checkpoint exists"
            raise UserError(f"writing the checkpoint of step {failed} in '{self.run_dir}' failed: the disk is full "
                            f"({_size(free)} free, a checkpoint of this run needs about {_size(need or 0)}); free space "
                            f"or move train.run_dir, then run the same command ({kept})") from None


def _tree_bytes(tree) -> int:
    import jax

    return sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(tree))


def _size(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} bytes"


# ----------------------------------------------------------------------------------------------------------------


def _abstract(target):
    import jax

    def one(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))

    return jax.tree.map(one, target)


def _read_model(mgr, step: int, path):
    import orbax.checkpoint as ocp

    from model.config import ModelConfigError, build_config

    try:
        fields = mgr.restore(step, args=ocp.args.Composite(**{MODEL_ITEM: ocp.args.JsonRestore()}))[MODEL_ITEM]
        return build_config(dict(fields))
    except ModelConfigError as err:
        raise UserError(f"checkpoint '{path}' step {step} has an invalid model config: {err}") from None
    except Exception as err:  # noqa: BLE001 - unreadable metadata is a corrupt checkpoint
        raise UserError(f"checkpoint '{path}' step {step} is corrupt or incomplete ({first_line(err)}); "
                        f"{_FIX}") from None


def _read_json(mgr, step: int, item: str, path, optional: bool = False) -> dict:
    import orbax.checkpoint as ocp

    if optional and not (Path(mgr.directory) / str(step) / item).exists():
        return {}
    try:
        value = mgr.restore(step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item]
    except Exception as err:  # noqa: BLE001
        raise UserError(f"checkpoint '{path}' step {step}: {item} is corrupt or missing ({first_line(err)}); "
                        f"{_FIX}") from None
    if not isinstance(value, dict):
        raise UserError(f"checkpoint '{path}' step {step}: {item} is corrupt; {_FIX}")
    return dict(value)


def _restore_item(mgr, step: int, item: str, abstract, path):
    import orbax.checkpoint as ocp

    try:
        return mgr.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(abstract)}))[item]
    except Exception as err:  # noqa: BLE001
        what = "parameters" if item == PARAMS_ITEM else item
        raise UserError(f"checkpoint '{path}' step {step}: {what} are corrupt or incomplete "
                        f"({first_line(err)}); {_FIX}") from None

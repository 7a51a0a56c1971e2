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

Every save checks that the arrays are finite (runtime.errors.Diverged otherwise, nothing written), and every read
refuses a step whose arrays are not, or that is damaged (runtime.checkpoint.diagnose: which piece, which step, and
the previous complete step as the fix). A full or read-only destination is one line (runtime.platform.storage).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

from runtime.checkpoint import diagnose
from runtime.checkpoint.diagnose import INTEGRITY_ITEM, MODEL_ITEM, OPT_ITEM, PARAMS_ITEM, TRAIN_ITEM
from runtime.checkpoint.integrity import checksums_and_nonfinite, verify_checksums
from runtime.errors import Diverged, UserError
from runtime.platform.storage import storage_error

# GPTConfig fields that are the published training recipe rather than the network: two configs that differ only in
# these (or the name) describe the same weights.
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

    diagnose.quiet_orbax()  # its abandoned background work after a failure we report (diagnose.py)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else keep, create=not read_only, read_only=read_only,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=not read_only,
        save_interval_steps=0 if read_only else 1,
    )
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


# ----------------------------------------------------------------------------------------------------------------
# Model-only checkpoints (convert, generate, eval).


def save_model(directory: str | Path, cfg, params, step: int = 0) -> Path:
    """Write a model-only checkpoint (config + parameters) at ``step``; refuses to overwrite an existing one."""
    import orbax.checkpoint as ocp

    from runtime.platform.storage import write_new_directory

    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise UserError(f"output directory '{directory}' is not empty; choose a new --out directory")
    sums, bad = checksums_and_nonfinite(params)
    if bad:
        raise UserError(f"the weights are not finite (NaN or inf in '{bad[0]}'); nothing was written to '{directory}'")

    def write(folder: Path) -> None:
        mgr = manager(folder, async_save=False)
        try:
            mgr.save(step, args=ocp.args.Composite(**{
                MODEL_ITEM: ocp.args.JsonSave(cfg.model_dump()),
                PARAMS_ITEM: ocp.args.StandardSave(params),
                INTEGRITY_ITEM: ocp.args.JsonSave({PARAMS_ITEM: sums}),
            }))
            mgr.wait_until_finished()
        finally:
            mgr.close()

    # built in a hidden sibling and renamed into place: a killed or failed save leaves no half checkpoint at --out
    write_new_directory(directory, write, _tree_bytes(params), what="writing the checkpoint")
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
        diagnose.check_pieces(d, step, training=False)
        cfg = _read_model(mgr, step, resume=False)
        shapes = param_shapes(cfg)
        is_shape = lambda x: isinstance(x, tuple)  # noqa: E731
        if shardings is None:
            dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            shardings = jax.tree.map(lambda s: dev, shapes, is_leaf=is_shape)
        abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s, "float32", sharding=sh), shapes, shardings,
                                is_leaf=is_shape)
        params = _restore_item(mgr, step, PARAMS_ITEM, abstract, resume=False)
        bad = verify_checksums(PARAMS_ITEM, params, _read_json(mgr, step, INTEGRITY_ITEM, resume=False, optional=True).get(PARAMS_ITEM),
                               f"checkpoint '{path}' step {step}", diagnose.fallback(d, step, resume=False))
        if bad:  # generate, eval, convert and fine-tuning never start from NaN weights
            raise diagnose.nonfinite(d, step, "weights", bad, resume=False)
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
        if not diagnose.is_training_step(self.directory / str(step)):
            raise UserError(f"'{self.directory}' step {step} is a model-only checkpoint, not a training run; "
                            "fine-tune from it or choose another train.run_dir")
        diagnose.check_pieces(self.directory, step, training=True)  # damaged is not model-only
        mgr = manager(self.directory, read_only=True)
        try:
            cfg = _read_model(mgr, step)
            return cfg, _read_json(mgr, step, TRAIN_ITEM)
        finally:
            mgr.close()

    def restore(self, params_target, opt_target, step: int | None = None) -> tuple[Any, Any, dict]:
        """(params, opt_state, train_state) of a step, placed as the targets say.

        The targets are pytrees of arrays or ``jax.ShapeDtypeStruct`` with shardings, for the mesh and mode the
        resumed run uses; the saved layout is canonical, so a run saved on 8 devices pipelined restores onto 4
        streaming or onto 1. Every array is checked against the saved checksums.
        """
        step = self._step(step)
        where, fix = f"checkpoint '{self.directory}' step {step}", diagnose.fallback(self.directory, step)
        diagnose.check_pieces(self.directory, step, training=True)
        mgr = manager(self.directory, read_only=True)
        try:
            state = _read_json(mgr, step, TRAIN_ITEM)
            sums = _read_json(mgr, step, INTEGRITY_ITEM, optional=True)
            params = _restore_item(mgr, step, PARAMS_ITEM, _abstract(params_target))
            bad = verify_checksums(PARAMS_ITEM, params, sums.get(PARAMS_ITEM), where, fix)
            opt_state = _restore_item(mgr, step, OPT_ITEM, _abstract(opt_target))
            bad += verify_checksums(OPT_ITEM, opt_state, sums.get(OPT_ITEM), where, fix)
            if bad:  # a diverged run saved by an older version: resuming it would only go on with NaN
                raise diagnose.nonfinite(self.directory, step, "weights or optimizer state", bad, resume=True)
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

        both, bad = checksums_and_nonfinite({PARAMS_ITEM: params, OPT_ITEM: opt_state})  # one device call for both
        if bad:  # never saved: keeping old checkpoints must not delete the last finite one for a NaN one
            last = self.latest_step()
            first = next((b for b in bad if b.startswith(PARAMS_ITEM + "/")), bad[0])
            what = "weights are" if first.startswith(PARAMS_ITEM + "/") else "optimizer state is"
            detail = f"the {what} not finite (NaN or inf in '{first.split('/', 1)[1]}')"
            raise Diverged(f"{detail} at step {step}; nothing of step {step} was saved", step=step, checkpoint=last,
                           detail=detail)
        if self._writer is None:
            self._writer = manager(self.directory, keep=self.keep, async_save=self.async_save)
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
            failed, need = getattr(self, "_pending", (None, None))
            if storage_error(err, self.run_dir) is None:
                raise
            writer, self._writer = self._writer, None
            with contextlib.suppress(Exception):
                writer.close()
            for leftover in self.directory.glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(leftover, ignore_errors=True)
            last = latest_step(self.directory) if self.directory.is_dir() else None
            kept = f"the checkpoint of step {last} is intact" if last is not None else "no earlier checkpoint exists"
            raise storage_error(err, self.run_dir, need, what=f"writing the checkpoint of step {failed} in",
                                fix=f"free space or move train.run_dir, then run the same command ({kept})",
                                readonly_fix=f"choose another train.run_dir ({kept})") from None


def _tree_bytes(tree) -> int:
    import jax

    return sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------------------------------------------


def _abstract(target):
    import jax

    def one(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))

    return jax.tree.map(one, target)


def _read_model(mgr, step: int, resume: bool = True):
    import orbax.checkpoint as ocp

    from model.config import ModelConfigError, build_config

    try:
        fields = mgr.restore(step, args=ocp.args.Composite(**{MODEL_ITEM: ocp.args.JsonRestore()}))[MODEL_ITEM]
        return build_config(dict(fields))
    except ModelConfigError as err:
        raise UserError(f"checkpoint '{mgr.directory}' step {step} has an invalid model config: {err}") from None
    except Exception:  # noqa: BLE001 - unreadable metadata is a damaged checkpoint
        raise diagnose.damaged(Path(mgr.directory), step, "its model config cannot be read: the file is corrupt or "
                               "truncated", resume) from None


def _read_json(mgr, step: int, item: str, resume: bool = True, optional: bool = False) -> dict:
    import orbax.checkpoint as ocp

    if optional and not (Path(mgr.directory) / str(step) / item).exists():
        return {}
    try:
        value = mgr.restore(step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item]
    except Exception:  # noqa: BLE001
        value = None
    if not isinstance(value, dict):
        raise diagnose.damaged(Path(mgr.directory), step, f"its {item} cannot be read: the file is corrupt or "
                               "truncated", resume)
    return dict(value)


def _restore_item(mgr, step: int, item: str, abstract, resume: bool = True):
    import orbax.checkpoint as ocp

    try:
        return mgr.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(abstract)}))[item]
    except Exception:  # noqa: BLE001 - TensorStore's text is a spec dump; say which item of which step
        what = "parameters" if item == PARAMS_ITEM else "optimizer state"
        raise diagnose.damaged(Path(mgr.directory), step, f"its {what} cannot be read: a data file is corrupt, "
                               "missing or truncated", resume) from None

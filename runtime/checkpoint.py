"""Checkpoints: one Orbax format for everything that holds model weights.

A checkpoint directory is an Orbax ``CheckpointManager`` directory (``<dir>/<step>/<item>``) with the items
- ``model``: the GPTConfig fields (JSON), so a checkpoint says what model it is;
- ``params``: the parameters in the canonical stacked layout (model/gpt.py), whatever the execution plan was;
- optionally ``opt_state`` and ``train_state`` (step, data position, RNG, resolved run config) for training runs.
``wse convert --from-hf`` writes step 0 with ``model`` + ``params``; training runs write ``<run_dir>/checkpoints``.
``load_model`` reads either (a run dir or a checkpoint dir) and takes the latest complete step: Orbax writes each
step to a temporary directory and renames it when complete, so a half-written step is never picked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.errors import UserError

MODEL_ITEM, PARAMS_ITEM = "model", "params"


def checkpoint_dir(path: str | Path) -> Path:
    """The CheckpointManager directory for a run dir (``<run>/checkpoints``) or a checkpoint dir itself."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        return path / "checkpoints"
    return path


def manager(directory: str | Path, *, keep: int | None = None, read_only: bool = False, async_save: bool = True):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=not read_only, read_only=read_only, enable_async_checkpointing=async_save,
    )
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


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
    import orbax.checkpoint as ocp

    from model.config import ModelConfigError, build_config
    from model.gpt import param_shapes

    d = checkpoint_dir(path)
    if not d.is_dir():
        raise UserError(f"checkpoint '{path}' does not exist; give a directory written by `wse train` or `wse convert`")
    mgr = manager(d, read_only=True)
    try:
        step = mgr.latest_step() if step is None else step
        if step is None:
            raise UserError(f"'{path}' holds no complete checkpoint; give a directory written by `wse train` or `wse convert`")
        try:
            fields = mgr.restore(step, args=ocp.args.Composite(**{MODEL_ITEM: ocp.args.JsonRestore()}))[MODEL_ITEM]
            cfg = build_config(dict(fields))
        except ModelConfigError as err:
            raise UserError(f"checkpoint '{path}' step {step} has an invalid model config: {err}") from None
        except Exception as err:  # noqa: BLE001 - unreadable metadata is a corrupt checkpoint
            raise UserError(f"checkpoint '{path}' step {step} is corrupt or incomplete ({_first_line(err)}); "
                            "restore it from a copy or pick another step") from None
        shapes = param_shapes(cfg)
        is_shape = lambda x: isinstance(x, tuple)  # noqa: E731
        if shardings is None:
            dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            shardings = jax.tree.map(lambda s: dev, shapes, is_leaf=is_shape)
        abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s, "float32", sharding=sh), shapes, shardings,
                                is_leaf=is_shape)
        try:
            params = mgr.restore(step, args=ocp.args.Composite(**{PARAMS_ITEM: ocp.args.StandardRestore(abstract)}))[PARAMS_ITEM]
        except Exception as err:  # noqa: BLE001
            raise UserError(f"checkpoint '{path}' step {step}: parameters are corrupt or incomplete "
                            f"({_first_line(err)}); restore it from a copy or pick another step") from None
        return cfg, params
    finally:
        mgr.close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0][:200] if text else type(err).__name__)

"""A checkpoint's latest complete step and its model, found in pure Python (no Orbax, no JAX), so that a command
refuses a missing or empty checkpoint directory, or arguments its model cannot take (a prompt beyond the context),
in about a second instead of after starting JAX. Reading the weights (runtime.checkpoint.store) checks everything
else, damage included.

Orbax writes each step into ``<step>.orbax-checkpoint-tmp-*`` and renames it to ``<step>`` when it is complete, so
the complete steps are the subdirectories named by an integer.
"""

from __future__ import annotations

import json
from pathlib import Path

from runtime.checkpoint.store import MODEL_ITEM, checkpoint_dir
from runtime.errors import UserError


def missing(path) -> UserError:
    """The error for a checkpoint path that does not exist."""
    return UserError(f"checkpoint '{path}' does not exist; give a directory written by `wse train` or `wse convert`")


def empty(path) -> UserError:
    """The error for a directory that holds no complete checkpoint step."""
    return UserError(f"'{path}' holds no complete checkpoint; give a directory written by `wse train` or `wse convert`")


def complete_steps(directory: str | Path) -> list[int]:
    """The complete steps of a CheckpointManager directory, ascending (see the module doc)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


def find_checkpoint(path: str | Path):
    """(latest complete step, its GPTConfig or None) of a checkpoint or run directory; UserError when the path does
    not exist or holds no complete step. The model is None when its record cannot be read here: the full read
    (runtime.checkpoint.load_model) then says what is damaged."""
    from model.config import ModelConfigError, build_config

    d = checkpoint_dir(path)
    if not d.is_dir():
        raise missing(path)
    steps = complete_steps(d)
    if not steps:
        raise empty(path)
    try:
        fields = json.loads((d / str(steps[-1]) / MODEL_ITEM / "metadata").read_text(encoding="utf-8"))
        return steps[-1], build_config(dict(fields))
    except (OSError, ValueError, TypeError, ModelConfigError):
        return steps[-1], None

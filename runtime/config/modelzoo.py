"""`wse train --config FILE` on a Cerebras ModelZoo config: its model and training recipe as run-config keys.

model/modelzoo.py reads the file (both ModelZoo layouts) and refuses what would change the math; this module places
what it found in a run config: the model section as ``model`` (a mapping of GPTConfig fields), the optimizer,
schedule, steps, batch size, seed and checkpoint cadence as ``train.*`` keys, and prints one stderr note listing the
fields wse does not use (data paths, backend, logging, initialiser details ...). ``data`` is not taken from the file
(its HDF5 paths are a Cerebras format): the run reads ``data=`` as usual (default: the built-in corpus).
"""

from __future__ import annotations

import sys
from pathlib import Path

from model.modelzoo import is_modelzoo, read_modelzoo

__all__ = ["is_modelzoo", "run_tree"]

# What the recipe keys of model.modelzoo.ModelZooConfig are called in the run config (train section).
TRAIN_KEYS = ("steps", "batch_size", "seq_len", "lr", "warmup_steps", "decay_steps", "decay", "min_lr_ratio",
              "weight_decay", "grad_clip", "seed", "checkpoint_every", "eval_every", "dtype")


def run_tree(tree: dict, path: str | Path, stream=None) -> dict:
    """The run-config tree (``{"model": {...}, "train": {...}}``) of a parsed ModelZoo file at ``path``; the fields
    it does not use are named in one ``note:`` line on ``stream`` (default stderr). Raises model.modelzoo.ModelZooError
    (a user error: one ``error:`` line) for a field that changes the math and is not supported."""
    zoo = read_modelzoo(tree, str(path), Path(path).stem)
    train = {key: zoo.recipe[key] for key in TRAIN_KEYS if key in zoo.recipe}
    ignored = zoo.ignored
    listed = ", ".join(ignored) if ignored else "none"
    print(f"note: {path} is a Cerebras ModelZoo config; used its model, optimizer and schedule "
          f"({', '.join(f'train.{k}' for k in train) or 'no train settings'}); not used ({len(ignored)}): {listed}",
          file=stream or sys.stderr)
    return {"model": zoo.model, "train": train}

"""Checkpoints: one Orbax format for everything that holds model weights (what a step directory holds: store.py).

- ``store``: model-only checkpoints (``save_model``, ``load_model``: `wse convert`, `wse generate`, `wse eval`) and a
  training run's (``RunCheckpoints``: save, restore onto any mesh and mode, a full disk refused in one line);
- ``integrity``: checksums of every saved array, verified on restore (a garbled file is refused, never loaded), and
  the check, in the same pass, that every array is finite (a NaN step is never written, nor read);
- ``diagnose``: what is wrong with a step (damaged or model-only, weights not finite), in one line with the previous
  complete step as the fix; Orbax's abandoned background work kept off stderr;
- ``locate``: the latest complete step and its model in pure Python (``find_checkpoint``: commands refuse a missing
  checkpoint or arguments its model cannot take before JAX starts).

The names below are the package's public API; import them from ``runtime.checkpoint``.
"""

from runtime.checkpoint.integrity import checksums_and_nonfinite, tree_checksums, verify_checksums
from runtime.checkpoint.locate import find_checkpoint
from runtime.checkpoint.store import (INTEGRITY_ITEM, MODEL_ITEM, OPT_ITEM, PARAMS_ITEM, TRAIN_ITEM, RunCheckpoints,
                                      checkpoint_dir, describe_model, latest_step, load_model, manager, same_model,
                                      save_model)

__all__ = ["INTEGRITY_ITEM", "MODEL_ITEM", "OPT_ITEM", "PARAMS_ITEM", "TRAIN_ITEM", "RunCheckpoints", "checkpoint_dir",
           "checksums_and_nonfinite", "describe_model", "find_checkpoint", "latest_step", "load_model", "manager",
           "same_model", "save_model", "tree_checksums", "verify_checksums"]

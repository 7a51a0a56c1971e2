"""What is wrong with a checkpoint step, in one line with its fix: damaged (a piece missing or a file truncated), a
model-only checkpoint where a training run's is expected, or weights that are not finite. The fix is always the
previous complete step.

A step directory records the items it was saved with (Orbax's ``_CHECKPOINT_METADATA``, ``item_handlers``): a
training step has ``model``, ``params``, ``opt_state``, ``train_state`` and ``integrity``; a model-only one
(`wse convert`) ``model``, ``params`` and ``integrity``. So a step that lists ``train_state`` but lacks it is damaged,
never model-only, and ``missing_pieces`` finds what is gone before Orbax is asked to read it. A truncated data file is
found when Orbax reads it (its error text is a TensorStore spec, useless to a user) or by the checksums
(runtime.checkpoint.integrity); either way the message says which item and which step.

Orbax reads and writes every array concurrently on its own event loop; when one fails, the others are abandoned and
report later from background threads ("Event loop is closed", "Exception ignored in: <coroutine ...>", absl ERROR
lines with tracebacks, asyncio's "Task/Future exception was never retrieved"), after the one line that already said
what went wrong. ``quiet_orbax`` keeps exactly those reports off stderr, for the rest of the process.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from runtime.errors import UserError

MODEL_ITEM, PARAMS_ITEM = "model", "params"
OPT_ITEM, TRAIN_ITEM, INTEGRITY_ITEM = "opt_state", "train_state", "integrity"
TRAINING_ITEMS = (MODEL_ITEM, PARAMS_ITEM, OPT_ITEM, TRAIN_ITEM)
JSON_ITEMS = (MODEL_ITEM, TRAIN_ITEM, INTEGRITY_ITEM)
# The files without which Orbax cannot even open an item.
ARRAY_FILES = ("_METADATA", "manifest.ocdbt")
JSON_FILES = ("metadata",)


def saved_items(step_dir: Path) -> set[str] | None:
    """The items a step was saved with, from its ``_CHECKPOINT_METADATA`` (None when that file is unreadable)."""
    try:
        meta = json.loads((step_dir / "_CHECKPOINT_METADATA").read_text(encoding="utf-8"))
        return set(meta["item_handlers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_training_step(step_dir: Path) -> bool:
    """Whether a step was saved by a training run (it lists, or holds, an optimizer or train state)."""
    items = saved_items(step_dir)
    present = {p.name for p in step_dir.iterdir()} if step_dir.is_dir() else set()
    return bool(({OPT_ITEM, TRAIN_ITEM} & (items or set())) or ({OPT_ITEM, TRAIN_ITEM} & present))


def missing_pieces(step_dir: Path, training: bool) -> list[str]:
    """The pieces of a step that are gone or empty: whole items (``train_state``) or the files Orbax opens first
    (``params/_METADATA``). ``training``: the step must hold a training run's items."""
    listed = saved_items(step_dir)
    expected = set(listed or ()) | set(TRAINING_ITEMS if training else (MODEL_ITEM, PARAMS_ITEM))
    missing = []
    if listed is None:
        missing.append("_CHECKPOINT_METADATA")
    for item in sorted(expected):
        d = step_dir / item
        if not d.is_dir():
            missing.append(item)
            continue
        for name in JSON_FILES if item in JSON_ITEMS else ARRAY_FILES:
            f = d / name
            if not f.is_file() or f.stat().st_size == 0:
                missing.append(f"{item}/{name}")
    return missing


def previous_complete(directory: Path, step: int) -> int | None:
    """The latest step before ``step`` in ``directory`` whose pieces are all there (its arrays are not read)."""
    steps = sorted((int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) < step),
                   reverse=True) if directory.is_dir() else []
    for s in steps:
        if not missing_pieces(directory / str(s), is_training_step(directory / str(s))):
            return s
    return None


def fallback(directory: Path, step: int, resume: bool = True) -> str:
    """The fix for a bad step: delete it to fall back to the previous complete one (named), then run again
    (``resume``: to continue training from it; else to read it)."""
    step_dir = directory / str(step)
    previous = previous_complete(directory, step)
    if previous is None:
        return (f"no earlier complete step is there: restore '{step_dir}' from a copy, or start again in a new "
                "directory")
    then = f"continue from step {previous}" if resume else f"use step {previous}"
    return (f"the previous complete step is {previous}: delete this one (rm -r {shlex.quote(str(step_dir))}) and run "
            f"the same command to {then}")


def damaged(directory: Path, step: int, detail: str, resume: bool = True) -> UserError:
    """``checkpoint step N in DIR is damaged (detail); <fallback>``."""
    return UserError(f"checkpoint step {step} in '{directory}' is damaged ({detail}); "
                     f"{fallback(directory, step, resume)}")


def check_pieces(directory: Path, step: int, training: bool) -> None:
    """UserError (``damaged``) when a piece of the step is gone, before Orbax is asked to read it (``training``:
    the step must be a training run's, to resume; else only its model is read)."""
    missing = missing_pieces(directory / str(step), training)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise damaged(directory, step, f"'{missing[0]}'{more} is missing", resume=training)


def nonfinite(directory: Path, step: int, item: str, names: list[str], resume: bool) -> UserError:
    """The one line for a step whose weights hold NaN or infinity (a diverged run saved by an older version)."""
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    lower = " with a lower train.lr" if resume else ""
    return UserError(f"checkpoint step {step} in '{directory}' holds {item} that are not finite (NaN or inf in "
                     f"'{names[0]}'{more}): the run had diverged when it was saved; "
                     f"{fallback(directory, step, resume)}{lower}")


# ----------------------------------------------------------------------------------------------------------------
# Orbax's abandoned background work, kept off stderr.

_QUIET = {"installed": False}
_ORBAX_NOISE = ("raised an exception", "Event loop is closed")


def quiet_orbax() -> None:
    """Keep the reports of Orbax's abandoned background work off stderr (see the module doc); idempotent. Only
    those: other unraisable exceptions and log records go where they always went."""
    if _QUIET["installed"]:
        return
    import logging

    _QUIET["installed"] = True
    logging.getLogger("absl").addFilter(_DropOrbaxNoise())
    logging.getLogger("asyncio").addFilter(_DropAbandonedTasks())
    previous = sys.unraisablehook

    def hook(unraisable, previous=previous, is_noise=_is_async_noise):
        if not is_noise(unraisable):
            previous(unraisable)

    sys.unraisablehook = hook


def _is_async_noise(unraisable) -> bool:
    exc, obj = unraisable.exc_value, unraisable.object
    if isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc):
        return True
    code = getattr(obj, "cr_code", None)  # an abandoned coroutine of Orbax's or TensorStore's
    return code is not None and any(lib in code.co_filename for lib in ("orbax", "tensorstore"))


class _DropAbandonedTasks:
    """asyncio's "<Task, Future, _GatheringFuture ...> exception was never retrieved" for an Orbax or TensorStore write
    abandoned after the first failure (the same error, already reported), logged whenever it is collected: after our
    one line, or never. A TensorStore write's future names no Orbax frame, only the OCDBT database it was writing
    (inside Orbax's ``*.orbax-checkpoint-tmp`` directory)."""

    def filter(self, record) -> bool:
        text = str(record.msg)
        # "Task", "Future" or "_GatheringFuture exception was never retrieved": asyncio names the future's class; and
        # a write task still pending when its loop is collected
        first = text.split("\n", 1)[0]
        abandoned = first.endswith("exception was never retrieved") or first.startswith("Task was destroyed but it is")
        return not (abandoned and any(lib in text for lib in ("orbax", "tensorstore", "OCDBT")))


class _DropOrbaxNoise:
    """absl records of Orbax re-telling, with a traceback, an exception it also hands to the caller (a background
    save's failure is raised again by ``wait_until_finished``), and its note on every read-only manager."""

    def filter(self, record) -> bool:
        text = str(record.msg)
        from_orbax = "orbax" in str(getattr(record, "pathname", ""))
        retold = from_orbax and (record.exc_info is not None or any(n in text for n in _ORBAX_NOISE))
        return not retold and not text.startswith("Given directory is read only")

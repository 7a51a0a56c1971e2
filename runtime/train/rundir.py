"""The run-dir policy shared by `wse train` and `wse finetune`: create, resume, or refuse, before anything is built.

A run dir holds ``checkpoints/``, ``metrics.jsonl``, ``loss.png``, ``config.yaml``, and ``tensorboard/`` (event files,
profiles) and ``wandb/`` when the run's ``observe`` section asks for them; a fine-tune of a model that came with its
own tokenizer also keeps that tokenizer's files. Opening one for a run:

- no checkpoint: the directory must be new, empty, or one of ours (a run killed before its first checkpoint);
  anything else is somebody's data and is refused, as is a file or a bare model checkpoint;
- a checkpoint: it must be of the same model, and the run resolves with the checkpoint's config as its
  ``checkpoint`` layer (runtime.config.recipes); a data setting the user gave that differs from what the run was
  trained with (``runtime.config.recipes.RESUME_FIXED``: it would move the data position) is refused, naming the
  setting; an optimisation setting (``RESUME_KEPT``: a lower learning rate after a divergence) may change, and the
  run reports the change (``OpenedRun.changes``);
- fine-tuning also never writes into, inside or around its source (``check_not_source``).

Refusals are one-line UserErrors; nothing in the run dir has been touched when they are raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runtime.config import RunConfig, flatten, resume_changes, resume_conflicts
from runtime.config.recipes import Recipe, resolve
from runtime.errors import UserError
from runtime.train.faults import LOCK_FILE
from runtime.train.observers import LOSS_PLOT, METRICS_FILE, TENSORBOARD_DIR, WANDB_DIR

CONFIG_FILE = "config.yaml"
# the tokenizer a fine-tuned model came with, kept beside its checkpoints (runtime/train/finetune.py)
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}
RUN_FILES = {"checkpoints", METRICS_FILE, LOSS_PLOT, CONFIG_FILE, LOCK_FILE, TENSORBOARD_DIR, WANDB_DIR} | TOKENIZER_FILES


@dataclass
class OpenedRun:
    """A run dir opened for training: the resolved config, where each setting came from, and the step to resume
    from (None: a fresh run)."""

    config: RunConfig
    sources: dict
    resume_step: int | None
    changes: dict = field(default_factory=dict)  # {key: [saved, new]} of the optimisation settings changed on resume


def open_run(requested: RunConfig, ckpt, recipe: Recipe | None = None) -> OpenedRun:
    """Resolve ``requested`` for the run dir whose checkpoints ``ckpt`` (runtime.checkpoint.RunCheckpoints) reads,
    or refuse it (UserError), writing nothing."""
    from runtime.checkpoint import describe_model, same_model

    run_dir = Path(ckpt.run_dir)
    step = ckpt.latest_step()
    if step is None:
        check_fresh(run_dir)
        return OpenedRun(*resolve(requested, recipe), None)
    saved_model, meta = ckpt.read_meta(step)
    gpt = requested.gpt_config()
    if not same_model(saved_model, gpt):
        raise UserError(f"train.run_dir '{run_dir}' holds checkpoints of model {describe_model(saved_model)}, "
                        f"not {describe_model(gpt)}; choose another train.run_dir")
    saved = meta.get("config", {})
    config, sources = resolve(requested, recipe, saved)
    conflicts = resume_conflicts(saved, config)
    if conflicts:
        k = conflicts[0]
        raise UserError(f"train.run_dir '{run_dir}' was trained with {k}={flatten(saved)[k]!r} but this run sets "
                        f"{k}={config.flat()[k]!r}; resume with the same value or choose another train.run_dir")
    return OpenedRun(config, sources, step, resume_changes(saved, config))


def check_fresh(run_dir: Path) -> None:
    """A run dir without checkpoints must be new, empty, or one of ours; UserError otherwise."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise UserError(f"train.run_dir '{run_dir}' is a file; give a directory path")
    entries = {p.name for p in run_dir.iterdir()}
    if entries - RUN_FILES:
        if any(name.isdigit() and (run_dir / name / "model").is_dir() for name in entries):
            raise UserError(f"train.run_dir '{run_dir}' holds a model checkpoint, not a training run; to start from it "
                            "use `wse finetune --from` it, or choose another train.run_dir")
        raise UserError(f"train.run_dir '{run_dir}' is a non-empty directory that is not a training run; "
                        "choose a new or empty train.run_dir")


def check_not_source(run_dir: Path, source_root: Path | None) -> None:
    """Refuse a run dir that is the source, lies inside it, or contains it: fine-tuning never writes its source."""
    if source_root is None:
        return
    run, src = run_dir.expanduser().resolve(), source_root.expanduser().resolve()
    if run == src or src in run.parents:
        raise UserError(f"train.run_dir '{run_dir}' is {'the source' if run == src else 'inside the source'} "
                        f"'{source_root}'; fine-tuning writes a new run dir, e.g. train.run_dir={source_root}-ft")
    if run in src.parents:
        raise UserError(f"train.run_dir '{run_dir}' contains the source '{source_root}'; choose a separate directory, "
                        f"e.g. train.run_dir={source_root}-ft")


def saved_config(run_dir: Path) -> dict:
    """The resolved config of the run dir's latest checkpoint ({} for a new run dir, or one ``open_run`` will
    refuse)."""
    from runtime.checkpoint import RunCheckpoints

    try:
        ckpt = RunCheckpoints(run_dir)
        if ckpt.latest_step() is None:
            return {}
        return dict(ckpt.read_meta()[1].get("config", {}))
    except UserError:
        return {}


def write_config(run_dir: Path, config: RunConfig) -> None:
    """``config.yaml``: the resolved config, loadable with ``wse train --config``."""
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config.model_dump(), sort_keys=False), encoding="utf-8")

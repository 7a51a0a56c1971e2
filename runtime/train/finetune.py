"""Fine-tuning: continue training a checkpoint (or a HuggingFace model) on examples, with loss only where it matters.

Fine-tuning is a recipe and a data source over the ordinary trainer: the examples (runtime.data.examples: JSONL of
``{"prompt", "completion"}`` or ``{"text"}``, packed into windows with a loss mask) become an ExampleData source
(runtime.train.sources), the defaults are runtime.config.recipes.finetune_recipe (a tenth of the source's peak LR, a few
epochs, short warmup, linear decay, a few evaluations, checkpoints at the middle and the end), and
runtime.train.Trainer does the rest. So a fine-tuning run has the same run dir layout, checkpoints (a killed run
resumes exactly), metrics, loss curve and mesh/mode choices as `wse train`, and the same resume rules. It always writes
a new run dir (default ``<source>-ft``) and never one equal to, inside, or around its source.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.config.recipes import Recipe, finetune_recipe
from runtime.data import BUILTIN, Packed, pack, resolve_examples, tokenize
from runtime.errors import UserError
from runtime.train.observers import Observer
from runtime.train.rundir import check_not_source, saved_config


@dataclass
class StartingModel:
    """Where the starting weights come from. ``path``: the directory a user named (None for weights in memory);
    ``root``: the directory that must not be written (a run dir for ``<run>/checkpoints``); ``lr``: its peak LR."""

    cfg: object
    params: object
    kind: str  # checkpoint | hf | memory
    path: Path | None
    root: Path | None
    lr: float
    batch_size: int
    seq_len: int | None = None  # None: the model's context

    def describe(self) -> str:
        return f"{self.kind} {self.path}" if self.path is not None else f"{self.kind} ({self.cfg.name})"

    @property
    def tokenizer_dir(self) -> Path | None:
        """Where the tokenizer.json the model came with lies (model.tokenizer.model_tokenizer_dir), or None."""
        from model.tokenizer import model_tokenizer_dir

        return model_tokenizer_dir(self.path)


def load_starting_model(checkpoint: str | os.PathLike | None = None, hf: str | os.PathLike | None = None, *,
                allow_pickle: bool = False) -> StartingModel:
    """The starting model: a `wse train`/`wse convert`/`wse finetune` checkpoint, or a HuggingFace GPT-2 directory.

    A training run's own peak LR, batch size and window length (from its checkpoint) are the base of the fine-tuning
    defaults; a model-only checkpoint or HF model falls back to its preset recipe's and its context length.
    """
    if (checkpoint is None) == (hf is None):
        raise UserError("give exactly one starting model: --from CKPT_DIR or --hf DIR")
    if hf is not None:
        from model.hf import load_hf

        cfg, params = load_hf(hf, allow_pickle=allow_pickle)
        path = Path(hf).expanduser()
        return StartingModel(cfg, params, "hf", path, path, cfg.learning_rate, cfg.batch_size, cfg.max_seq_len)
    from runtime.checkpoint import RunCheckpoints, checkpoint_dir, load_model

    path = Path(checkpoint).expanduser()
    cfg, params = load_model(path)
    ckpt = checkpoint_dir(path)
    root = ckpt.parent if ckpt.name == "checkpoints" else ckpt
    lr, batch, seq_len = cfg.learning_rate, cfg.batch_size, cfg.max_seq_len
    try:
        saved = RunCheckpoints(root).read_meta()[1].get("config", {}).get("train", {})
        lr, batch, seq_len = saved.get("lr") or lr, saved.get("batch_size") or batch, saved.get("seq_len") or seq_len
    except UserError:
        pass  # a model-only checkpoint (wse convert): the preset recipe's LR and batch, the model's context
    return StartingModel(cfg, params, "checkpoint", path, root, float(lr), int(batch), int(seq_len))


def default_run_dir(source: StartingModel) -> Path:
    """``<source>-ft`` next to the source (``runs/finetune-<time>`` for weights held in memory)."""
    if source.root is None:
        return Path("runs") / f"finetune-{time.strftime('%Y%m%d-%H%M%S')}"
    root = source.root.absolute()
    return root.with_name(root.name + "-ft")


@dataclass
class FineTuneJob:
    """A fine-tuning run ready to start: the requested config (model, data file, the user's settings), the
    fine-tuning recipe, and the packed examples. ``trainer()`` builds the Trainer; ``describe(trainer)`` what the
    result adds to the trainer's."""

    requested: object
    recipe: Recipe
    source: StartingModel
    train: Packed
    val: Packed | None
    data_path: Path

    @property
    def run_dir(self) -> Path:
        return Path(self.recipe.values.get("train.run_dir") or self.requested.train.run_dir)

    def trainer(self, **kwargs):
        from runtime.train.loop import Trainer
        from runtime.train.sources import ExampleData

        if self.source.tokenizer_dir is not None:  # the run keeps tokenising with the model's own tokenizer
            kwargs["observers"] = [KeepTokenizer(self.source.tokenizer_dir, self.source.cfg.max_seq_len),
                                   *kwargs.get("observers", [])]
        return Trainer(self.requested, recipe=self.recipe, data=ExampleData(self.train, self.val),
                       init_params=self.source.params, **kwargs)

    def describe(self, trainer) -> dict:
        """The source, the examples, and ``defaults_applied``: the settings the recipe or the resumed checkpoint
        gave (what the user did not set)."""
        flat, sources = trainer.run_config.flat(), trainer.sources
        applied = {k.removeprefix("train."): flat[k] for k in self.recipe.values
                   if k != "train.run_dir" and sources.get(k) in (f"{self.recipe.name} recipe", "checkpoint")}
        return {"source": self.source.describe(), "data": str(self.data_path), "train_examples": self.train.stats(),
                "val_examples": self.val.stats() if self.val else None, "defaults_applied": applied}


class KeepTokenizer(Observer):
    """Writes the source model's tokenizer files into the run dir when the run starts (the run dir is open and ours
    then), so that `wse generate --checkpoint RUN` and a later fine-tune tokenise as this one did."""

    def __init__(self, source: Path, context: int):
        self.source, self.context = source, context

    def start(self, ctx) -> None:
        from model.hf_files import keep_tokenizer

        if ctx.lead and not (ctx.run_dir / "tokenizer.json").is_file():
            keep_tokenizer(self.source, ctx.run_dir, self.context)


def user_tree(overrides: list[str] | tuple[str, ...] = (), updates: dict | None = None) -> dict:
    """The user's settings as a nested dict: ``key=value`` overrides, then ``updates`` (the tutorial's keywords)."""
    from runtime.config import merge_trees, parse_overrides

    return merge_trees(parse_overrides(list(overrides)), updates or {})


def check_settings(overrides: list[str] | tuple[str, ...] = (), updates: dict | None = None) -> dict:
    """The user's settings as a nested dict, every key and value checked (pure Python: before JAX starts); fine-tuning
    takes its model and data from its own options, so ``model=``/``data=`` are refused (UserError)."""
    from runtime.config import from_dict

    tree = user_tree(overrides, updates)
    for key in ("model", "data"):
        if key in tree:
            raise UserError(f"fine-tuning takes the model from --from/--hf and the examples from --data; drop the {key}= override")
    from_dict(tree)  # unknown keys, values out of range
    return tree


def check_source(checkpoint: str | os.PathLike | None = None, hf: str | os.PathLike | None = None) -> None:
    """Refuse (UserError) a starting model that is not there, without reading weights or starting JAX."""
    if (checkpoint is None) == (hf is None):
        raise UserError("give exactly one starting model: --from CKPT_DIR or --hf DIR")
    if hf is not None:
        from model.hf_configs import read_hf_config

        read_hf_config(hf)
    else:
        from runtime.checkpoint import find_checkpoint

        find_checkpoint(checkpoint)


def prepare(source: StartingModel, data: str | os.PathLike = BUILTIN, overrides: list[str] | tuple[str, ...] = (), *,
            val: str | os.PathLike | None = None, tokenizer=None, updates: dict | None = None,
            resolved: tuple | None = None) -> FineTuneJob:
    """Tokenise and pack the examples and make the fine-tuning recipe for them (under the user's settings and,
    when the run dir already holds this fine-tune, its checkpoint's).

    ``updates``: extra settings as a nested dict applied like overrides (the tutorial's keyword arguments);
    ``resolved``: ``resolve_examples(data, val)`` when the caller already read the examples.
    """
    from model.tokenizer import TokenizerError, tokenizer_for_model
    from runtime.config import from_dict, merge_trees

    tree = check_settings(overrides, updates)
    cfg = source.cfg
    try:  # the model's own tokenizer unless one is given (and then it must be the model's, if it has one)
        tok = tokenizer if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)) else \
            tokenizer_for_model(tokenizer, source.path, cfg.vocab_size, f"model '{cfg.name}'")
    except TokenizerError as err:
        raise UserError(str(err)) from None
    data_path, records, held = resolved if resolved is not None else resolve_examples(data, val)
    t_user = dict(tree.get("train", {}))
    run_dir = Path(t_user["run_dir"]) if t_user.get("run_dir") else default_run_dir(source)
    check_not_source(run_dir, source.root)
    saved = saved_config(run_dir).get("train", {})  # a resumed fine-tune packs and paces as it did
    pick = lambda key: t_user.get(key) if t_user.get(key) is not None else saved.get(key)  # noqa: E731
    seq_len = int(pick("seq_len") or source.seq_len or cfg.max_seq_len)
    if not 2 <= seq_len <= cfg.max_seq_len:
        raise UserError(f"train.seq_len={seq_len} must be between 2 and model '{cfg.name}' context of {cfg.max_seq_len} tokens")
    seed = int(pick("seed") or 0)
    train = pack(tokenize(records, tok), seq_len, seed=seed, pad_id=tok.eot_id)
    val_packed = pack(tokenize(held, tok), seq_len, seed=seed, pad_id=tok.eot_id) if held else None
    if max(int(train.tokens.max()), int(val_packed.tokens.max()) if val_packed else 0) >= cfg.vocab_size:
        raise UserError(f"a token id is outside model '{cfg.name}' vocabulary ({cfg.vocab_size}); give the tokenizer the model was trained with")
    # The source recipe's batch even when the examples fill fewer windows (the loader's stream then repeats windows
    # within a batch): a batch the recipe used divides the meshes it ran on, a count derived from the data may not.
    recipe = finetune_recipe(source_lr=source.lr, batch_size=int(pick("batch_size") or source.batch_size),
                             seq_len=seq_len, windows=train.rows, val_windows=val_packed.rows if val_packed else None,
                             steps=pick("steps"), saved_steps=saved.get("steps"))
    recipe.values["train.run_dir"] = str(run_dir)
    requested = from_dict(merge_trees({"model": cfg.model_dump(), "data": str(data_path)}, tree))
    return FineTuneJob(requested, recipe, source, train, val_packed, data_path)


def init_mesh(overrides: list[str] | tuple[str, ...] = (), updates: dict | None = None) -> None:
    """Set up the run's devices (emulated CPU count, multi-process) and the compilation cache before loading the
    source touches JAX."""
    from runtime.config import from_dict
    from runtime.platform import build_run_mesh, use_compile_cache

    tree = user_tree(overrides, updates)
    run = from_dict({"mesh": tree.get("mesh", {}), "execution": tree.get("execution", {})})
    use_compile_cache(run.execution.compile_cache)
    build_run_mesh(run)


def finetune(checkpoint: str | os.PathLike | None = None, data: str | os.PathLike = BUILTIN,
             overrides: list[str] | tuple[str, ...] = (), *, hf: str | os.PathLike | None = None,
             val: str | os.PathLike | None = None, tokenizer=None, allow_pickle: bool = False, **trainer_kwargs) -> dict:
    """Fine-tune ``checkpoint`` (or ``hf``) on ``data`` (a JSONL file or ``builtin``): the `wse finetune` result."""
    # everything that needs no JAX first (a refusal returns in about a second): settings, source, examples
    check_settings(overrides)
    check_source(checkpoint, hf)
    resolved = resolve_examples(data, val)
    init_mesh(overrides)
    source = load_starting_model(checkpoint, hf, allow_pickle=allow_pickle)
    job = prepare(source, data, overrides, val=val, tokenizer=tokenizer, resolved=resolved)
    trainer = job.trainer(**trainer_kwargs)
    result = trainer.run()
    return {**result, **job.describe(trainer)}

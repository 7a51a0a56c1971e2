"""The tutorial workflow, from Python, with the same run dirs and checkpoints as the command line::

    from runtime import initialize_model, load_pretrain_data, load_task_data
    model = initialize_model()                 # tiny preset, 8 emulated CPU devices, the planner's execution mode
    model.train(load_pretrain_data())          # the built-in python-docs corpus (or files, or a `wse data` dir)
    model.fine_tune(load_task_data())          # the built-in task set (or a JSONL file)
    print(model.generate_text("The assert statement"))

``model.train`` is `wse train` (runtime.train.Trainer) in a run dir (default ``runs/<preset>``; starting again there
resumes), ``model.fine_tune`` is `wse finetune --from` that run dir into ``<run dir>-ft`` (runtime.train.finetune), and
``generate_text`` decodes with the latest weights (model.generate). ``model.evaluate`` gives validation loss and
perplexity; ``model.plan`` the wafer plan (`wse plan`) for the model.

Short-run defaults (runtime.config.recipes.SHORT_RUN, the "tutorial short run" recipe): the tiny preset's own recipe
(batch 16 x 256 tokens, peak LR 1e-3) is a full-scale recipe; on two CPU cores the tutorial instead trains
``TUTORIAL_TRAIN_STEPS`` steps of 8 x 128-token batches at a higher peak LR (a couple of minutes with the
fine-tuning), then fine-tunes with the fine-tuning recipe's defaults (a tenth of that LR, three epochs of the task set). That shows the workflow, not a good model: see
`wse demo` for what longer training reaches. Every setting can be passed as a keyword (``steps=``, ``lr=``,
``seq_len=`` ... any ``train.`` key).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runtime.config.recipes import SHORT_RUN, SHORT_RUN_STEPS, Recipe
from runtime.errors import UserError

# The short-run recipe (runtime.config.recipes.SHORT_RUN, measured there) is what ``model.train`` layers under its settings,
# for as many steps as the demo trains, so that the tutorial's defaults give the demo's model.
TUTORIAL_TRAIN_STEPS = SHORT_RUN_STEPS
# Evaluation and generation defaults. Text is sampled (top-k and top-p, fixed seed: reproducible) unless
# temperature=0: a model trained for minutes puts its top probability on newlines and indentation, so greedy decoding
# of the tutorial's model prints blank lines; a repetition penalty and at least 48 new tokens keep the sample to words.
# Chosen by the words of a sample that occur in the corpus (whitespace-separated), over seeds 0-19 and the prompts
# "This module provides" / "Return a new", 64 new tokens (2026-11-30). T 0.8, top-k 40, top-p 0.95, penalty 1.3, at
# least 48 tokens: samples under 8 such words, of 40: tiny after the tutorial's 600 x 8 steps none (mean 30 words);
# the demo's fine-tuned model 4 (mean 24; its seed-0 samples, the ones it prints, 22 and 18). On a demo-preset model
# trained at LR 3e-3 and fine-tuned: at least 32 tokens 1 of 40 (one stopped early); penalty 1.2: 14; 1.4: 4; top-p
# 0.9: 8; T 0.9: 3; the earlier T 0.7, top-k 40, top-p 1, penalty 1.1, 48 tokens: 6 of 16. These are `wse generate`'s
# defaults too (its minimum capped at --max-new-tokens), so it prints the same text; greedy is --temperature 0.
EVAL_BATCH = 16
GENERATE_TOKENS = 64
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "seed": 0, "repetition_penalty": 1.3, "min_new_tokens": 48}


# ------------------------------------------------------------------------------------------------------- data

@dataclass
class PretrainData:
    """A token dataset directory (runtime.data) to pre-train on; ``source`` says where it came from."""

    directory: Path
    source: str
    config_value: str | None = None  # what a run config's ``data`` says for it (``builtin`` as on the command line)

    def __str__(self) -> str:
        return str(self.directory)


@dataclass
class TaskData:
    """Fine-tuning examples: ``path`` is a JSONL file or ``"builtin"`` (the python-docs task set); ``val`` an optional
    held-out JSONL file. The file is checked when this is made, so a bad line is reported before any training."""

    path: str
    val: str | None = None
    examples: int = field(default=0, init=False)

    def __post_init__(self):
        from runtime.data import resolve_examples

        _, train, held = resolve_examples(self.path, self.val)
        self.examples = len(train) + len(held)


def load_pretrain_data(*paths: str | os.PathLike, val_fraction: float | None = None, progress: bool = False) -> PretrainData:
    """The data to pre-train on. No argument: the built-in python-docs corpus (prepared once, then cached).

    Arguments: a directory written by `wse data` (used as is), or any `wse data` input (text and source files, JSONL,
    Parquet/Arrow, directories of them; one text file is split by size for validation), tokenised once into the cache (``runtime.data.cache_dir()/data/user-*``) and reused while unchanged.
    """
    from runtime import data

    if not paths:
        kwargs = {} if val_fraction is None else {"val_fraction": val_fraction}
        builtin = "builtin" if val_fraction is None else None  # exactly what `wse train data=builtin` reads
        return PretrainData(data.prepare_builtin(progress=progress, **kwargs), "builtin:python-docs", builtin)
    if len(paths) == 1 and (Path(paths[0]).expanduser() / "meta.json").is_file():
        directory = Path(paths[0]).expanduser()
        data.TokenDataset(directory, "train")  # checks it is a dataset
        return PretrainData(directory, str(paths[0]))
    import hashlib

    key = hashlib.sha256("|".join(str(Path(p).expanduser().absolute()) for p in paths).encode()).hexdigest()[:16]
    out = data.cache_dir() / "data" / f"user-{key}"
    fraction = data.DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
    data.build_dataset([str(p) for p in paths], out, val_fraction=fraction, overwrite=True, progress=progress)
    return PretrainData(out, ", ".join(str(p) for p in paths))


def load_task_data(path: str | os.PathLike | None = None, *, val: str | os.PathLike | None = None) -> TaskData:
    """Fine-tuning examples: the built-in task set (no argument) or a JSONL file of ``{"prompt", "completion"}`` /
    ``{"text"}`` lines, with an optional held-out JSONL file."""
    from runtime.data import BUILTIN

    return TaskData(BUILTIN if path is None else str(path), None if val is None else str(val))


# ------------------------------------------------------------------------------------------------------ the model

class Model:
    """A model with a home on disk: each ``train``/``fine_tune`` is a run dir with checkpoints; the weights of the
    latest one are kept in memory (canonical layout, host NumPy) for generation and evaluation."""

    def __init__(self, preset: str = "tiny", *, devices: int | None = 8, mesh: dict | None = None, mode: str = "auto",
                 platform: str = "cpu", run_dir: str | os.PathLike | None = None, seed: int = 0,
                 progress: bool | None = None, console=None):
        from model.config import get_config

        self.preset = str(preset)
        self.config = get_config(self.preset)  # refuses an unknown preset now, without JAX
        self.mesh = {"platform": platform, "devices": devices, "axes": dict(mesh or {})}
        self.mode, self.seed = mode, seed
        self.run_dir = Path(run_dir) if run_dir is not None else Path("runs") / self.config.name
        self.progress, self.console = progress, console
        self.params = None  # canonical params of the latest weights (None: not trained yet)
        self.checkpoint: Path | None = None  # the run dir those weights were saved in
        self.data: PretrainData | None = None
        self.history: list[dict] = []
        self._check()

    def __repr__(self) -> str:
        where = f", weights from {self.checkpoint}" if self.checkpoint else ", untrained"
        return f"<Model {self.config.name} ({self.config.parameters:,} parameters), mode {self.mode}{where}>"

    def _check(self) -> None:
        from runtime.config import from_dict

        from_dict(self._tree({})).resolve()  # mesh axes and mode are checked here, before any JAX

    def _tree(self, train: dict) -> dict:
        mesh = {k: v for k, v in self.mesh.items() if v not in (None, {})}
        return {"model": self.preset, "mesh": mesh, "execution": {"mode": self.mode},
                "train": {"seed": self.seed, **train}}

    def _short(self, recipe: dict) -> dict:
        """A short-run recipe with its window capped at the model's context."""
        return {**recipe, "seq_len": min(recipe["seq_len"], self.config.max_seq_len)}

    def short_run_recipe(self) -> Recipe:
        """The "tutorial short run" recipe (runtime.config.recipes.SHORT_RUN) for this model: settings under the user's."""
        return Recipe.train("tutorial short run", **self._short(SHORT_RUN))

    def _kwargs(self) -> dict:
        return {"progress": self.progress, "console": self.console}

    # ----- training --------------------------------------------------------------------------------------------
    def train(self, data: PretrainData | str | os.PathLike | None = None, *, steps: int = TUTORIAL_TRAIN_STEPS,
              run_dir: str | os.PathLike | None = None, recipe: Recipe | None = None, **settings) -> dict:
        """Pre-train on ``data`` (default: the built-in corpus) for ``steps`` steps in ``run_dir`` (default: the
        model's), resuming from that run dir's latest checkpoint; ``settings`` are ``train.`` keys (lr=, seq_len= ...);
        ``recipe``: a job's settings layered over the short-run recipe and under ``settings`` (runtime.config.recipes).
        Returns the `wse train --json` result."""
        from runtime.config import from_dict
        from runtime.train import Trainer

        if data is None:
            data = load_pretrain_data()
        elif not isinstance(data, PretrainData):
            data = load_pretrain_data(data)
        run_dir = Path(run_dir) if run_dir is not None else self.run_dir
        tree = self._tree({"steps": steps, **settings, "run_dir": str(run_dir)})
        tree["data"] = data.config_value or str(data.directory)
        short = self.short_run_recipe()
        if recipe is not None:
            short = Recipe(recipe.name, {**short.values, **recipe.values})
        trainer = Trainer(from_dict(tree), recipe=short, **self._kwargs())
        result = trainer.run()
        self._keep(trainer, run_dir)
        self.data = data
        self.history.append({"kind": "train", **result})
        return result

    def fine_tune(self, tasks: TaskData | str | os.PathLike | None = None, *, steps: int | None = None,
                  run_dir: str | os.PathLike | None = None, mesh: dict | None = None, mode: str | None = None,
                  **settings) -> dict:
        """Fine-tune on ``tasks`` (default: the built-in task set), starting from the latest checkpoint, into a new
        run dir (default ``<latest run dir>-ft``); ``steps`` default: a few epochs (runtime.config.recipes.finetune_recipe).
        ``mesh`` (``{"devices": 8, "axes": {"data": 8}}``) and ``mode`` run this fine-tune on another mesh than the
        model's (the checkpoint restores onto any)."""
        from runtime.train import finetune as ft

        if tasks is None:
            tasks = load_task_data()
        elif not isinstance(tasks, TaskData):
            tasks = load_task_data(tasks)
        train = dict(settings)  # unset: the fine-tuning recipe's defaults on top of the source run's batch and window
        if steps is not None:
            train["steps"] = steps
        base = self._tree({})
        updates = {"mesh": {**base["mesh"], **(mesh or {})}, "execution": {"mode": mode or self.mode},
                   "train": {"seed": self.seed, **train}}
        if run_dir is not None:
            updates["train"]["run_dir"] = str(run_dir)
        ft.init_mesh(updates=updates)
        source = self._source()
        job = ft.prepare(source, tasks.path, val=tasks.val, updates=updates)
        trainer = job.trainer(**self._kwargs())
        result = {**trainer.run(), **job.describe(trainer)}
        self._keep(trainer, job.run_dir)
        self.history.append({"kind": "fine_tune", **result})
        return result

    def load(self, run_dir: str | os.PathLike) -> "Model":
        """Use the weights of ``run_dir``'s latest checkpoint (a run dir of `wse train`, `wse finetune` or
        `wse convert`, e.g. one another process wrote) for generation, evaluation and the next fine-tune. Raises
        UserError when it holds no checkpoint or a model of another shape than this one's preset."""
        from runtime.train import finetune as ft

        source = ft.load_starting_model(run_dir)
        # the network the weights belong to: every field but the name and the training recipe (shape, positions,
        # norms, FFN, K/V heads, biases, tying, residual, muP)
        recipe = ("name", "batch_size", "learning_rate", "lr_decay", "adam_eps", "init_std")
        network = lambda cfg: {k: v for k, v in cfg.model_dump().items() if k not in recipe}  # noqa: E731
        if network(source.cfg) != network(self.config):
            raise UserError(f"{run_dir} holds a {source.cfg.name} model, not this {self.config.name}; load it with "
                            f"initialize_model('{source.cfg.name}') or a model file of its shape")
        self.params, self.checkpoint = source.params, Path(run_dir)
        return self

    def _source(self):
        """The weights to fine-tune: the latest checkpoint (as `wse finetune --from` reads it), else fresh ones."""
        from runtime.train import finetune as ft

        if self.checkpoint is not None:
            return ft.load_starting_model(self.checkpoint)
        params = self.params if self.params is not None else self._fresh_params()
        short = self._short(SHORT_RUN)
        return ft.StartingModel(self.config, params, "memory", None, None, short["lr"], short["batch_size"], short["seq_len"])

    def _keep(self, trainer, run_dir: Path) -> None:
        import jax

        self.params = jax.device_get(trainer.params())
        self.checkpoint = run_dir

    def _fresh_params(self):
        import jax

        from model.gpt import initial_params

        return jax.device_get(initial_params(self.config, self.seed))

    def _weights(self):
        if self.params is None:
            self.params = self._fresh_params()
        return self.params

    # ----- using the model ---------------------------------------------------------------------------------------
    def generate_text(self, prompt: str, max_new_tokens: int = GENERATE_TOKENS, *,
                      temperature: float = SAMPLING["temperature"], top_k: int = SAMPLING["top_k"],
                      top_p: float = SAMPLING["top_p"], seed: int = SAMPLING["seed"],
                      repetition_penalty: float = SAMPLING["repetition_penalty"],
                      min_new_tokens: int = SAMPLING["min_new_tokens"]) -> str:
        """The continuation of ``prompt`` with the latest weights, up to ``<|endoftext|>``: top-k sampling with a
        fixed seed, a repetition penalty and a minimum length by default (see SAMPLING), greedy with
        ``temperature=0``."""
        from model.generate import GenerationError, generate
        from model.tokenizer import TokenizerError, get_tokenizer
        from runtime.config.sampling import sampling_settings

        tok = get_tokenizer()
        ids = tok.encode(prompt) or [tok.eot_id]
        max_new_tokens = min(max_new_tokens, self.config.max_seq_len - len(ids))
        # the default minimum (SAMPLING) is cut to what fits, as transformers stops at the maximum
        sampling = sampling_settings(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                     repetition_penalty=repetition_penalty, seed=seed,
                                     min_new_tokens=min(min_new_tokens, max_new_tokens))
        try:
            tok.check_model_vocab(self.config.vocab_size, f"model '{self.config.name}'")
            out = generate(self.config, self._weights(), [ids], max_new_tokens, eot_id=tok.eot_id,
                           vocab_limit=tok.vocab_size, **sampling)
        except (GenerationError, TokenizerError) as err:
            raise UserError(str(err)) from None
        return tok.decode(out.tokens[0])

    def evaluate(self, data: PretrainData | TaskData | str | os.PathLike | None = None, *,
                 seq_len: int | None = None) -> dict:
        """Validation loss (nats/token) and perplexity of the latest weights.

        ``data``: a PretrainData (its whole validation split; default: the data last trained on, else the built-in
        corpus), a TaskData (the completion tokens of its held-out examples, prompts masked as in fine-tuning), a
        ``.jsonl`` file of examples, a `wse data` directory, or a text file.
        """
        import math

        trained = [h for h in self.history if h["kind"] == "train"]
        seq_len = seq_len or (trained[-1]["seq_len"] if trained else self._short(SHORT_RUN)["seq_len"])
        if data is None:
            data = self.data or load_pretrain_data()
        if isinstance(data, (str, os.PathLike)):
            p = Path(data).expanduser()
            if p.suffix.lower() == ".jsonl" or str(data) == "builtin":
                data = load_task_data(data)
            elif p.is_dir():
                data = load_pretrain_data(p)
        if isinstance(data, TaskData):
            loss, n = self._task_loss(data, seq_len)
            return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 700.0)), "tokens": n, "data": data.path,
                    "what": "completion tokens of the held-out examples"}
        from runtime.train.evaluate import evaluate_split, evaluate_tokens

        if isinstance(data, PretrainData):
            from runtime.data import TokenDataset

            r = evaluate_split(self.config, self._weights(), TokenDataset(data.directory, "val"), seq_len, EVAL_BATCH)
            return {"val_loss": r.loss, "val_perplexity": r.perplexity, "tokens": r.predictions,
                    "data": f"{data.source} (validation split)",
                    "what": f"next-token loss over every {seq_len} + 1-token window of the validation split, as "
                            "training's validation reports it when train.eval_batches covers the split"}
        from model.tokenizer import get_tokenizer
        from runtime.data import read_text

        tokens, where = get_tokenizer().encode(read_text(data)), str(data)
        r = evaluate_tokens(self.config, self._weights(), tokens, seq_len, batch_size=EVAL_BATCH)
        return {"val_loss": r.loss, "val_perplexity": r.perplexity, "tokens": r.tokens, "data": where,
                "what": f"next-token loss in {seq_len}-token windows, as `wse eval` scores a text file"}

    def _task_loss(self, tasks: TaskData, seq_len: int) -> tuple[float, int]:
        from model.tokenizer import get_tokenizer
        from runtime.data import pack, resolve_examples, tokenize
        from runtime.train.evaluate import evaluate_examples

        _, train, held = resolve_examples(tasks.path, tasks.val)
        tok = get_tokenizer()
        packed = pack(tokenize(held or train, tok), seq_len, pad_id=tok.eot_id)
        return evaluate_examples(self.config, self._weights(), packed, batch_size=EVAL_BATCH)

    def plan(self, system: str = "cs2", *, mode: str = "auto", systems: int | None = None,
             batch_size: int | None = None, seq_len: int | None = None, picture: str | os.PathLike | None = None,
             timeline: str | os.PathLike | None = None) -> dict:
        """The wafer plan for this model (`wse plan --model <preset> --system <system>`): mode, stages, step time,
        memory, assumptions; ``picture``/``timeline`` write the PNGs (replacing earlier ones: a notebook cell runs
        again)."""
        from runtime.planning import plan_model

        return plan_model(self.preset, system, systems=systems, mode=mode, batch_size=batch_size, seq_len=seq_len,
                          picture=None if picture is None else str(picture),
                          timeline=None if timeline is None else str(timeline), overwrite=True)


def initialize_model(preset: str = "tiny", *, devices: int | None = 8, mesh: dict | None = None, mode: str = "auto",
                     platform: str = "cpu", run_dir: str | os.PathLike | None = None, seed: int = 0,
                     progress: bool | None = None, console=None) -> Model:
    """A model to train: ``preset`` (tiny, small, demo, 111M ... or a model file), on ``devices`` emulated CPU devices
    (``platform="gpu"`` for real ones; ``devices=None``: all) arranged as ``mesh`` axis sizes (e.g.
    ``{"data": 2, "stage": 4}``; default: all data parallel), in execution ``mode`` (auto, data, pipelined,
    streaming), with its runs under ``run_dir`` (default ``runs/<preset>``). Nothing starts JAX until it trains."""
    return Model(preset, devices=devices, mesh=mesh, mode=mode, platform=platform, run_dir=run_dir, seed=seed,
                 progress=progress, console=console)

"""Where each setting of a run comes from: one merge of defaults, in one documented order.

A run's settings are merged from five layers, each overriding the ones before it:

1. ``default``: the config schema's field defaults (runtime.config.schema);
2. ``preset <name>``: the model preset's published recipe (batch size, context, peak LR, decay shape; cerebras-gpt.md);
3. ``<job> recipe``: what a job sets for its kind of run: fine-tuning (``finetune_recipe``), the tutorial's short
   CPU run (``SHORT_RUN``), the demo's (runtime.commands.demo);
4. ``checkpoint``: what the run dir's latest checkpoint saved, for the settings a resumed run must keep (the
   data: ``RESUME_FIXED``), those it keeps unless the user changes them (the optimisation: ``RESUME_KEPT``), and
   those a recipe derived (a longer run must not move its warmup, its LR or its fine-tuning cadence);
5. ``given``: what the user set (config file, ``KEY=VALUE`` overrides, keyword arguments), always last.

Settings no layer gave are then ``derived``: ``train.decay_steps`` = ``train.steps``; ``train.warmup_steps`` = the
recipe's 375M tokens (``RECIPE_WARMUP_TOKENS``) capped at ``WARMUP_FRACTION_CAP`` of the decay; ``train.run_dir`` =
``runs/<model name>``. ``resolve`` returns the config and, for every dotted key, the layer its value came from;
`wse train --json` shows them as ``config_sources``. Pure Python: no JAX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.config.keys import flatten, nest
from runtime.config.rules import check
from runtime.errors import UserError

# The Cerebras-GPT recipe warms the LR up linearly over about 375M tokens (cerebras-gpt.md).
RECIPE_WARMUP_TOKENS = 375e6
# Short runs cannot afford that: warmup is capped at this fraction of the run (a CPU run of 200 steps warms up for 20).
WARMUP_FRACTION_CAP = 0.1

# Two-core CPU recipe for short runs of the tiny preset (the tutorial, runtime.workflow): 8 x 128 tokens per step (one
# sequence per emulated device), peak LR 2e-3, 15-step warmup, linear decay to 10%. Measured on the built-in corpus
# (loss on the whole validation split, seed 0, one device): for the same 164K tokens at LR 3e-3, more and smaller
# steps learn more -- 80 steps x 16 seqs 6.28, 160 x 8 6.13, 320 x 4 6.06, 640 x 2 6.03 -- with diminishing returns
# below 8; LR 6e-3 is 0.2-0.4 nats worse (6.70 at 16 seqs, 6.22 at 4), 1.5e-3 at 4 seqs 0.06 better than 3e-3. Eight
# sequences is the smallest batch that keeps every device of the default 8-device mesh busy.
SHORT_RUN = {"seq_len": 128, "batch_size": 8, "lr": 2e-3, "warmup_steps": 15}
# Steps of that recipe for the tutorial (the demo takes 1,000 of 4 sequences: runtime.commands.demo): 614K tokens,
# about one epoch of the built-in corpus. Measured on the 2-core Xeon, one device, seed 0: validation loss 5.87 after
# 300 steps, 5.35 after 600 (the LR decays over the run, so the longer run also spends longer at a high rate); 1,200
# steps of 4 sequences reach 5.28 for the same tokens, but 4 sequences do not split over the 8-device mesh the
# tutorial runs on by default.
SHORT_RUN_STEPS = 600

# Fine-tuning: peak LR as a fraction of the source run's (or the preset recipe's) peak: the usual order of magnitude
# between pre-training and fine-tuning rates (e.g. GPT-2-size models pre-train at 6e-4 and fine-tune around 6e-5).
FINETUNE_LR_FRACTION = 0.1
# Passes over the training examples when train.steps is not given: a few epochs, as fine-tuning recipes use; more
# overfits a small task set, fewer leaves the completions' format half learnt.
FINETUNE_EPOCHS = 3
# Linear warmup over this fraction of the run (at least one step): short, since the weights are already trained.
FINETUNE_WARMUP_FRACTION = 0.05
# Evaluations per run (plus the final one) when train.eval_every is not given.
FINETUNE_EVALS = 4
# At most this many validation batches per evaluation (the whole held-out set when it is smaller).
MAX_EVAL_BATCHES = 32

# Settings a resumed run must share with the checkpoint it resumes: they decide which batches it sees (the data
# position is the step). Mesh, execution mode, bookkeeping (steps, cadence, keep) may change freely.
RESUME_FIXED = ("data", "train.batch_size", "train.seq_len", "train.seed")
# The optimisation: a resumed run continues with the checkpoint's values unless the user gives others (a lower
# learning rate after a divergence, a longer warmup), and the run reports each change (``resume_changes``).
RESUME_KEPT = ("train.lr", "train.warmup_steps", "train.decay_steps", "train.decay", "train.min_lr_ratio",
               "train.weight_decay", "train.grad_clip")


@dataclass(frozen=True)
class Recipe:
    """A job's settings (layer 3): ``values`` as dotted keys (``{"train.lr": 1e-4}``), ``name`` how sources say it."""

    name: str
    values: dict = field(default_factory=dict)

    @classmethod
    def train(cls, name: str, **train) -> "Recipe":
        """A recipe of ``train.`` settings: ``Recipe.train("tutorial short run", lr=2e-3)``."""
        return cls(name, {f"train.{k}": v for k, v in train.items()})


def given(run) -> dict[str, Any]:
    """The settings the user gave in ``run`` (a RunConfig: fields explicitly set and not None), as dotted keys."""
    out: dict[str, Any] = {}

    def walk(section, prefix: str) -> None:
        for name in section.model_fields_set:
            value = getattr(section, name)
            key = prefix + name
            if hasattr(value, "model_fields_set") and key != "model":
                walk(value, key + ".")
            elif value is not None:
                out[key] = value.model_dump() if hasattr(value, "model_dump") else value

    walk(run, "")
    return out


def preset_recipe(cfg) -> dict[str, Any]:
    """The preset's published recipe (model.config: cerebras-gpt.md) as dotted ``train.`` keys."""
    return {"train.batch_size": cfg.batch_size, "train.seq_len": cfg.max_seq_len, "train.lr": cfg.learning_rate,
            "train.decay": cfg.lr_decay}


def run_dir_of(run, recipe: Recipe | None = None) -> Path:
    """The run dir ``run`` will use, before it is resolved (a checkpoint never moves it): given, else the
    recipe's, else ``runs/<model name>``."""
    value = given(run).get("train.run_dir") or (recipe.values.get("train.run_dir") if recipe else None)
    return Path(value) if value else Path("runs") / run.gpt_config().name


def saved_layer(saved: dict | None, recipe_keys) -> dict[str, Any]:
    """The settings a resumed run takes from its checkpoint's resolved config (see the module doc)."""
    if not saved:
        return {}
    flat = flatten(saved)
    if flat.get("train.steps") is not None and flat.get("train.decay_steps") is None:
        flat["train.decay_steps"] = flat["train.steps"]  # checkpoints from before decay_steps: it was steps
    keys = set(RESUME_FIXED) | set(RESUME_KEPT) | set(recipe_keys)
    return {k: flat[k] for k in keys if flat.get(k) is not None and k != "train.run_dir"}


def resume_conflicts(saved: dict, current) -> list[str]:
    """Dotted keys of ``RESUME_FIXED`` whose values differ between a checkpoint's resolved config (a dict) and the
    current resolved RunConfig."""
    now = current.flat()
    then = flatten(saved)
    return [k for k in RESUME_FIXED if k in then and then[k] != now.get(k)]


def resume_changes(saved: dict, current) -> dict[str, list]:
    """``{key: [saved value, new value]}`` for the ``RESUME_KEPT`` settings a resumed run changes (the user gave
    another value)."""
    now, then = current.flat(), flatten(saved)
    if then.get("train.steps") is not None and then.get("train.decay_steps") is None:
        then["train.decay_steps"] = then["train.steps"]  # checkpoints from before decay_steps: it was steps
    return {k: [then[k], now.get(k)] for k in RESUME_KEPT if k in then and then[k] != now.get(k)}


def resolve(run, recipe: Recipe | None = None, saved: dict | None = None) -> tuple[Any, dict[str, str]]:
    """(resolved config, {dotted key: layer it came from}) for ``run`` (a RunConfig) with a job ``recipe`` and a
    checkpoint's resolved config ``saved``; UserError when the result breaks a rule (runtime.config.rules.check)."""
    # The run's own class (runtime.config.schema.RunConfig), not an import: RunConfig.resolve calls this function,
    # so naming the schema here would make the two modules import each other.
    schema = type(run)
    cfg = run.gpt_config()
    values = flatten(schema().model_dump())
    sources = {k: "default" for k in values}
    layers = [(f"preset {cfg.name}", preset_recipe(cfg))]
    if recipe is not None:
        layers.append((f"{recipe.name} recipe", dict(recipe.values)))
    recipe_keys = set().union(*(layer.keys() for _, layer in layers))
    layers += [("checkpoint", saved_layer(saved, recipe_keys)), ("given", given(run))]
    for name, layer in layers:
        for key, value in layer.items():
            if value is not None:
                values[key], sources[key] = value, name
    for key, value in _derived(values, cfg).items():
        values[key], sources[key] = value, "derived"
    if values["data"] != "builtin":
        values["data"] = str(Path(values["data"]).expanduser().absolute())
    out = schema.from_dict(nest(values))
    check(out)
    return out, sources


def _derived(values: dict, cfg) -> dict[str, Any]:
    """The settings computed from others when no layer gave them."""
    out = {}
    if values["train.decay_steps"] is None:
        out["train.decay_steps"] = values["train.steps"]
    if values["train.warmup_steps"] is None:
        tokens = values["train.batch_size"] * values["train.seq_len"]
        decay = out.get("train.decay_steps", values["train.decay_steps"])
        out["train.warmup_steps"] = min(math.ceil(RECIPE_WARMUP_TOKENS / tokens), int(WARMUP_FRACTION_CAP * decay))
    if values["train.run_dir"] is None:
        out["train.run_dir"] = str(Path("runs") / cfg.name)
    return out


def finetune_recipe(*, source_lr: float, batch_size: int, seq_len: int, windows: int, val_windows: int | None,
                    steps: int | None, saved_steps: int | None) -> Recipe:
    """The fine-tuning defaults for a source model and its packed examples (``windows`` training windows of
    ``seq_len + 1`` tokens, ``val_windows`` held out or None): a tenth of the source's peak LR, ``FINETUNE_EPOCHS``
    passes, a short warmup, linear decay, a few evaluations over the held-out set, checkpoints at the middle and the
    end. ``steps``: the run length if the user or the checkpoint fixed it; ``saved_steps``: the length of the run a
    resumed fine-tune continues (its decay horizon, for checkpoints from before ``decay_steps`` existed)."""
    if batch_size < 1:
        raise UserError(f"train.batch_size must be positive, got {batch_size}")
    run_steps = steps if steps is not None else max(1, math.ceil(FINETUNE_EPOCHS * windows / batch_size))
    values = {"seq_len": seq_len, "batch_size": batch_size, "steps": run_steps, "decay_steps": saved_steps or run_steps,
              "lr": source_lr * FINETUNE_LR_FRACTION, "warmup_steps": max(1, round(FINETUNE_WARMUP_FRACTION * run_steps)),
              "decay": "linear", "eval_every": max(1, math.ceil(run_steps / FINETUNE_EVALS)),
              "checkpoint_every": max(1, math.ceil(run_steps / 2))}
    if val_windows:
        values["eval_batches"] = min(MAX_EVAL_BATCHES, math.ceil(val_windows / batch_size))
    return Recipe.train("fine-tuning", **values)

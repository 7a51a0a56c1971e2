"""Cerebras ModelZoo configs (GPT-2/GPT-3 family) read as this project's model and training recipe.

Two layouts are read, both as the ModelZoo publishes them for Cerebras-GPT (``gpt3/configs/Cerebras_GPT/*.yaml``):

- current (ModelZoo 2.x): ``trainer: init: {model, optimizer: {AdamW: ...}, schedulers: [SequentialLR: ...],
  precision: {max_gradient_norm}, loop: {max_steps}, checkpoint: {steps}, seed}`` and ``trainer: fit:
  train_dataloader: {batch_size}``;
- older (ModelZoo 1.x): top-level ``model``, ``optimizer: {optimizer_type, learning_rate: [...], max_gradient_norm}``,
  ``runconfig: {max_steps}`` and ``train_input: {batch_size}``; a file holding just the model section also reads.

``read_modelzoo`` maps the model section onto GPTConfig fields (``hidden_size`` -> d_model, ``num_hidden_layers`` ->
n_layers, ``num_heads`` -> n_heads, ``filter_size`` -> d_ffn, ``max_position_embeddings`` -> max_seq_len, muP's
``mup_base_hidden_size`` / ``output_logits_scale``, ``embeddings_scale``, ``scale_qk_dot_by_d``) and the optimizer and
schedule onto a neutral recipe (peak LR, warmup and decay steps, decay shape, final LR ratio, weight decay, clipping,
steps, batch size); runtime/modelzoo.py turns that recipe into run-config keys. A field that would change the math
and that our model or optimizer does not have (rotary or ALiBi positions, an output bias, untied embeddings, another
nonlinearity, dropout, other Adam betas, a warmup not from 0 ...) raises ModelZooError naming it. Every other field
read nowhere is listed in ``ignored`` (dotted paths; a subtree read nowhere is listed once), never dropped unseen.

Pure Python: no JAX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from model.config import PRESETS, ModelConfigError, matching_preset

_MISSING = object()
# Fields that mark the model section of a ModelZoo GPT config.
_MODEL_MARKS = ("hidden_size", "num_hidden_layers")


class ModelZooError(ModelConfigError):
    """A ModelZoo config this project cannot run as written (an unsupported field or value, named in one line)."""


@dataclass
class ModelZooConfig:
    """What a ModelZoo file says, in this project's terms.

    ``model``: GPTConfig fields (a matching preset's recipe filled in); ``recipe``: training settings found, keyed
    ``steps``, ``batch_size``, ``seq_len``, ``lr`` (peak), ``warmup_steps``, ``decay_steps`` (warmup + decay),
    ``decay`` (linear | cosine), ``min_lr_ratio`` (final / peak LR), ``weight_decay``, ``grad_clip``, ``seed``,
    ``checkpoint_every``, ``eval_every``, ``dtype``; ``ignored``: dotted paths read nowhere."""

    model: dict
    recipe: dict = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def is_modelzoo(tree) -> bool:
    """Whether a parsed YAML mapping is a ModelZoo config (either layout, or a bare ModelZoo model section)."""
    if not isinstance(tree, dict):
        return False
    if isinstance(tree.get("trainer"), (dict, list)) or "runconfig" in tree or "train_input" in tree:
        return True
    model = tree.get("model")
    return all(k in tree for k in _MODEL_MARKS) or (isinstance(model, dict) and all(k in model for k in _MODEL_MARKS))


class _Reader:
    """A config tree that remembers which paths were read, so the rest can be listed as ignored."""

    def __init__(self, tree: dict, file: str):
        self.tree, self.file, self.read = tree, file, set()

    def peek(self, *path: str, default=_MISSING):
        """The value at ``path`` (``default`` when absent), not counted as read."""
        node = self.tree
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def get(self, *path: str, default=_MISSING):
        """The value at ``path``, counted as read unless it is a mapping (whose own fields are counted one by one)."""
        node = self.peek(*path)
        if node is _MISSING:
            return default
        if not isinstance(node, dict):
            self.read.add(path)
        return node

    def fail(self, path: tuple[str, ...], value, want: str) -> ModelZooError:
        return ModelZooError(f"{self.file}: {'.'.join(path)} is {value!r}; {want}")

    def ignored(self) -> list[str]:
        out: list[str] = []

        def walk(node, path):
            if path in self.read:
                return
            if not isinstance(node, dict) or not any(r[:len(path)] == path for r in self.read):
                out.append(".".join(path))
                return
            for k, v in node.items():
                walk(v, path + (str(k),))

        for k, v in self.tree.items():
            walk(v, (str(k),))
        return out


def _sections(r: _Reader) -> dict[str, tuple[str, ...]]:
    """Paths of the model, optimizer, schedule and loop settings in whichever layout the file has."""
    if isinstance(r.tree.get("trainer"), list):
        raise ModelZooError(f"{r.file}: trainer is a list of {len(r.tree['trainer'])} phases; wse train runs one "
                            "phase: write each phase to its own file")
    if "trainer" in r.tree:
        init, fit = ("trainer", "init"), ("trainer", "fit")
        return {"model": init + ("model",), "optimizer": init + ("optimizer",), "schedulers": init + ("schedulers",),
                "clip": init + ("precision", "max_gradient_norm"), "precision": init + ("precision",),
                "steps": init + ("loop", "max_steps"), "eval_every": init + ("loop", "eval_frequency"),
                "checkpoint_every": init + ("checkpoint", "steps"), "seed": init + ("seed",),
                "batch_size": fit + ("train_dataloader", "batch_size"),
                "seq_len": fit + ("train_dataloader", "max_sequence_length")}
    model = ("model",) if isinstance(r.tree.get("model"), dict) else ()
    return {"model": model, "optimizer": ("optimizer",), "schedulers": ("optimizer", "learning_rate"),
            "clip": ("optimizer", "max_gradient_norm"), "precision": (), "steps": ("runconfig", "max_steps"),
            "eval_every": ("runconfig", "eval_frequency"), "checkpoint_every": ("runconfig", "checkpoint_steps"),
            "seed": ("runconfig", "seed"), "batch_size": ("train_input", "batch_size"),
            "seq_len": ("train_input", "max_sequence_length")}


def read_modelzoo(tree: dict, file: str = "config", name: str = "modelzoo") -> ModelZooConfig:
    """The model, recipe and ignored fields of a ModelZoo config ``tree`` (parsed YAML) read from ``file``.

    Raises ModelZooError naming the field for anything unsupported that changes the math or is malformed."""
    r = _Reader(tree, file)
    where = _sections(r)
    model = _model_fields(r, where["model"])
    recipe = _optimizer(r, where["optimizer"], model, where["clip"])
    recipe.update(_schedule(r, where["schedulers"]))
    for key in ("steps", "batch_size", "seq_len", "seed", "checkpoint_every", "eval_every"):
        value = r.get(*where[key])
        if value is not _MISSING and value is not None:
            recipe[key] = value
    dtype = _precision(r, where)
    if dtype:
        recipe["dtype"] = dtype
    model.update({k: v for k, v in (("batch_size", recipe.get("batch_size")), ("learning_rate", recipe.get("lr")),
                                    ("lr_decay", recipe.get("decay"))) if v is not None})
    preset = matching_preset(model)
    fields = {**(PRESETS[preset] if preset else {}), **model, "name": name}
    _check_mup_lr(r, where, fields)
    return ModelZooConfig(fields, recipe, r.ignored())


def _want(r: _Reader, base: tuple, key: str, ok, want: str, default=None):
    """The value of ``base + key`` (``default`` when absent); ModelZooError unless ``ok(value)``."""
    value = r.get(*base, key, default=default)
    if not ok(value):
        raise r.fail(base + (key,), value, want)
    return value


def _model_fields(r: _Reader, base: tuple) -> dict:
    """GPTConfig fields from the ModelZoo model section; refuses what our network does not compute."""
    section = r.get(*base, default=None) if base else r.tree
    if not isinstance(section, dict) or any(k not in section for k in _MODEL_MARKS):
        raise ModelZooError(f"{r.file}: no ModelZoo model section with hidden_size and num_hidden_layers "
                            f"(looked in {'.'.join(base) or 'the top level'})")
    positive = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0  # noqa: E731
    d = _want(r, base, "hidden_size", positive, "a positive integer is required")
    heads = _want(r, base, "num_heads", positive, "a positive integer dividing hidden_size is required")
    if d % heads:
        raise r.fail(base + ("num_heads",), heads, f"it must divide hidden_size {d}")
    fields = dict(d_model=d, n_heads=heads, d_head=d // heads,
                  n_layers=_want(r, base, "num_hidden_layers", positive, "a positive integer is required"),
                  d_ffn=_want(r, base, "filter_size", positive, "a positive integer is required", 4 * d),
                  vocab_size=_want(r, base, "vocab_size", positive, "a positive integer is required", 50257),
                  max_seq_len=_want(r, base, "max_position_embeddings", positive, "a positive integer is required", 2048),
                  layer_norm_eps=float(_want(r, base, "layer_norm_epsilon", lambda v: float(v) > 0, "a positive number", 1e-5)))
    _check_architecture(r, base)
    std = r.get(*base, "initializer", "std", default=None)
    if std is not None:
        fields["init_std"] = float(std)
    fields.update(_mup_fields(r, base, fields))
    return fields


# (field, accepted values, what our model does): the ModelZoo switches whose other values change the network.
_ARCHITECTURE = [
    ("name", ("gpt2", "gpt3", None), "wse models are GPT-2/GPT-3 shaped (Cerebras-GPT)"),
    ("position_embedding_type", ("learned", None), "wse models have learned absolute position embeddings"),
    ("use_position_embedding", (True, None), "wse models have learned absolute position embeddings"),
    ("share_embedding_weights", (True, None), "wse models tie the input and output embeddings"),
    ("use_bias_in_output", (False, None), "wse models have no LM-head bias"),
    ("nonlinearity", ("gelu", None), "wse models use exact (erf) GELU"),
    ("attention_type", ("scaled_dot_product", None), "wse models scale attention logits (1/sqrt(d_head), muP 1/d_head)"),
    ("attention_module", ("aiayn_attention", None), "wse models use standard multi-head attention"),
    ("norm_type", ("layernorm", None), "wse models use LayerNorm"),
    ("use_projection_bias_in_attention", (True, None), "wse models have Q/K/V biases"),
    ("use_ffn_bias_in_attention", (True, None), "wse models have an attention output bias"),
    ("use_ffn_bias", (True, None), "wse models have FFN biases"),
    ("embedding_layer_norm", (False, None), "wse models have no LayerNorm on the embeddings"),
    ("fixed_sparse_attention", (None,), "wse models use dense attention"),
    ("attention_logits_alpha", (1, 1.0, None), "wse models do not scale attention logits further"),
    ("scale_output_logits_by_d", (False, None), "wse models scale muP logits by 1/m_w only"),
]
_DROPOUTS = ("dropout_rate", "attention_dropout_rate", "embedding_dropout_rate")


def _check_architecture(r: _Reader, base: tuple) -> None:
    for key, accepted, ours in _ARCHITECTURE:
        value = r.get(*base, key, default=None)
        if not any(value is a or (value == a and type(value) is type(a)) for a in accepted):
            raise r.fail(base + (key,), value, f"not supported: {ours}")
    for key in _DROPOUTS:
        value = r.get(*base, key, default=0.0)
        if value not in (0, 0.0, None):
            raise r.fail(base + (key,), value, "not supported: wse models have no dropout (set it to 0.0)")
    groups = r.get(*base, "extra_attention_params", "num_kv_groups", default=None)
    if groups not in (None, r.get(*base, "num_heads")):
        raise r.fail(base + ("extra_attention_params", "num_kv_groups"), groups,
                     "not supported: wse models have one K/V head per query head")
    # The loss is a mean over tokens: "num_tokens" with weight 1, or "batch_size" with weight 1/context (the published
    # configs) say the same; any other pair is listed as ignored (under Adam a constant loss scale barely matters).
    scaling, weight = r.peek(*base, "loss_scaling", default=None), r.peek(*base, "loss_weight", default=1.0)
    context = r.peek(*base, "max_position_embeddings", default=2048)
    if (scaling in (None, "num_tokens") and weight == 1) or (scaling == "batch_size" and math.isclose(weight * context, 1)):
        r.get(*base, "loss_scaling"), r.get(*base, "loss_weight")


def _mup_fields(r: _Reader, base: tuple, fields: dict) -> dict:
    """muP from either layout: ``mup_base_hidden_size`` (2.x) or ``output_logits_scale`` = 1/m_w (1.x)."""
    d, f = fields["d_model"], fields["d_ffn"]
    base_d = r.get(*base, "mup_base_hidden_size", default=None)
    logits_scale = r.get(*base, "output_logits_scale", default=None)
    qk_by_d = bool(r.get(*base, "scale_qk_dot_by_d", default=False))
    emb = float(r.get(*base, "embeddings_scale", default=1.0))
    _want(r, base, "output_logits_alpha", lambda v: v in (None, 1, 1.0),
          "not supported: wse muP multiplies logits by exactly 1/m_w (set it to 1.0)")
    if base_d is None and logits_scale is not None:
        base_d = float(logits_scale) * d
        if abs(base_d - round(base_d)) > 1e-6 * d:
            raise r.fail(base + ("output_logits_scale",), logits_scale, f"it must be base_width / hidden_size {d}")
    if base_d is None:
        if qk_by_d or emb != 1.0:
            key = "scale_qk_dot_by_d" if qk_by_d else "embeddings_scale"
            raise r.fail(base + (key,), r.get(*base, key), "muP multipliers need mup_base_hidden_size (muP)")
        return {}
    base_d = int(round(base_d))
    if not qk_by_d:
        raise r.fail(base + ("scale_qk_dot_by_d",), False, "wse muP always scales attention by 1/d_head (set it true)")
    base_f = r.get(*base, "mup_base_filter_size", default=None)
    if base_f is not None and not math.isclose(f / base_f, d / base_d):
        raise r.fail(base + ("mup_base_filter_size",), base_f,
                     f"wse muP scales the FFN by the width multiplier {d / base_d:g}: it must be {f * base_d / d:g}")
    return dict(mup=True, mup_base_width=base_d, mup_embedding_multiplier=emb)


def _check_mup_lr(r: _Reader, where: dict, fields: dict) -> None:
    """1.x muP configs spell the hidden-matrix LR scale out (``adjust_learning_rate.decoder_kernel``); ours is 1/m_w."""
    adjust = r.get(*where["optimizer"], "adjust_learning_rate", "decoder_kernel", default=None)
    want = fields["mup_base_width"] / fields["d_model"] if fields.get("mup") else 1.0
    if adjust is not None and not math.isclose(float(adjust), want, rel_tol=1e-6):
        raise r.fail(where["optimizer"] + ("adjust_learning_rate", "decoder_kernel"), adjust,
                     f"wse scales hidden-matrix learning rates by 1/m_w = {want:g}")


# ---------------------------------------------------------------------------------------------- optimizer, schedule

def _optimizer(r: _Reader, base: tuple, model: dict, clip: tuple) -> dict:
    """Weight decay and clipping for the recipe, Adam's eps for the model; anything but AdamW at betas (0.9, 0.95)
    with bias correction is refused (those are fixed in runtime/optim.py)."""
    recipe: dict = {}
    value = r.get(*clip, default=None)
    if value is not None:
        recipe["grad_clip"] = float(value)
    section = r.peek(*base, default=None)
    if section is None:
        return recipe
    if not isinstance(section, dict):
        raise r.fail(base, section, "it must be a mapping such as {AdamW: {weight_decay: 0.1}}")
    if "optimizer_type" in section:  # 1.x: the settings sit beside the type
        kind, params = r.get(*base, "optimizer_type"), base
    elif len(section) == 1:
        kind = next(iter(section))
        params = base + (kind,)
    else:
        raise r.fail(base, sorted(section), "it must name one optimizer, e.g. {AdamW: {...}}")
    if str(kind).lower() != "adamw":
        raise r.fail(base, kind, "not supported: wse train uses AdamW")
    betas = r.get(*params, "betas", default=None) or [r.get(*params, "beta1", default=0.9),
                                                       r.get(*params, "beta2", default=0.95)]
    if not (len(betas) == 2 and math.isclose(betas[0], 0.9) and math.isclose(betas[1], 0.95)):
        raise r.fail(params + ("betas",), list(betas), "not supported: wse train's AdamW uses betas 0.9, 0.95")
    _want(r, params, "correct_bias", lambda v: v in (True, None), "not supported: wse train's AdamW corrects its bias")
    _want(r, params, "amsgrad", lambda v: not v, "not supported: wse train's AdamW is not AMSGrad")
    _want(r, params, "max_gradient_value", lambda v: v is None, "not supported: wse train clips by global norm only")
    eps = r.get(*params, "eps", default=None)
    if eps is not None:
        model["adam_eps"] = float(eps)
    for key in ("weight_decay", "weight_decay_rate"):
        wd = r.get(*params, key, default=None)
        if wd is not None:
            recipe["weight_decay"] = float(wd)
    if "grad_clip" not in recipe and r.peek(*params, "max_gradient_norm", default=None) is not None:
        recipe["grad_clip"] = float(r.get(*params, "max_gradient_norm"))
    return recipe


_KINDS = {"linear": "linear", "linearlr": "linear", "cosinedecay": "cosine", "cosinedecaylr": "cosine",
          "constant": "constant", "constantlr": "constant"}
_SHAPE = "wse train runs a linear warmup from 0, then one linear or cosine decay (then optionally a constant)"


def _phases(r: _Reader, path: tuple) -> list[tuple[str, dict]]:
    """The schedule as (kind, {initial, end, iters}) phases, from 2.x ``schedulers`` or 1.x ``learning_rate``."""
    value = r.get(*path, default=None)
    if value is None:
        return []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [("constant", {"initial": float(value), "end": float(value), "iters": None})]
    items = value if isinstance(value, list) else [value]
    if len(items) == 1 and isinstance(items[0], dict) and "SequentialLR" in items[0]:
        items = (items[0]["SequentialLR"] or {}).get("schedulers", [])
    elif items and "scheduler" not in items[0] and len(items) > 1:
        raise r.fail(path, [next(iter(i)) for i in items], "give one scheduler (SequentialLR for a warmup and decay)")
    phases = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item:
            raise r.fail(path, item, "each scheduler must be a mapping")
        name, params = (item["scheduler"], item) if "scheduler" in item else next(iter(item.items()))
        kind = _KINDS.get(str(name).lower())
        if kind is None or not isinstance(params, dict):
            raise r.fail(path, name, f"not supported: {_SHAPE}")
        lr = params.get("learning_rate")
        iters = next((params[k] for k in ("total_iters", "steps", "decay_steps") if params.get(k) is not None), None)
        phases.append((kind, {"initial": float(params.get("initial_learning_rate", lr if lr is not None else 0.0)),
                              "end": float(params.get("end_learning_rate", lr if lr is not None else 0.0)),
                              "iters": iters, "label": f"{'.'.join(path)} phase {i + 1} ({name})"}))
    return phases


def _schedule(r: _Reader, path: tuple) -> dict:
    """Peak LR, warmup and decay steps, decay shape and final LR ratio from the schedule's phases."""
    phases = _phases(r, path)
    if not phases:
        return {}
    out = {"warmup_steps": 0}
    kind, p = phases[0]
    if kind == "linear" and p["end"] > p["initial"]:
        if p["initial"] != 0:
            raise ModelZooError(f"{r.file}: {p['label']} initial_learning_rate is {p['initial']:g}; "
                                f"not supported: {_SHAPE}")
        out["warmup_steps"] = int(p["iters"] or 0)
        phases = phases[1:]
        peak = p["end"]
    else:
        peak = p["initial"]
    out["lr"], end = peak, peak
    if phases and phases[0][0] in ("linear", "cosine"):
        kind, p = phases.pop(0)
        if not math.isclose(p["initial"], peak) or p["iters"] is None:
            raise ModelZooError(f"{r.file}: {p['label']} initial_learning_rate is {p['initial']:g} over "
                                f"{p['iters']} steps; the decay must start at the peak {peak:g} and give its steps")
        out.update(decay=kind, decay_steps=out["warmup_steps"] + int(p["iters"]))
        end = p["end"]
    if phases and phases[0][0] == "constant" and math.isclose(phases[0][1]["initial"], end):
        phases.pop(0)
    if phases or peak <= 0:
        what = f"{phases[0][1]['label']} is not supported" if phases else f"a peak learning rate of {peak:g} is not positive"
        raise ModelZooError(f"{r.file}: {what}; {_SHAPE}")
    out["min_lr_ratio"] = round(end / peak, 12)
    return out


def _precision(r: _Reader, where: dict) -> str | None:
    """``bfloat16`` or ``float32`` compute when the file says so (2.x ``precision``, 1.x the model's
    ``mixed_precision`` / ``fp16_type`` / ``use_bfloat16``); float16 and cbfloat16 stay listed as ignored (wse
    computes in float32 or bfloat16)."""
    places = ([where["precision"]] if where["precision"] else []) + [where["model"]]
    keys = ("enabled", "mixed_precision", "fp16_type", "use_bfloat16")
    found = {k: v for place in reversed(places) for k in keys if (v := r.peek(*place, k, default=None)) is not None}
    enabled = found.get("enabled", found.get("mixed_precision"))
    half = found.get("fp16_type", "bfloat16" if found.get("use_bfloat16") else None)
    if enabled is None or (enabled and half != "bfloat16"):
        return None
    for place in places:
        for key in keys:
            r.get(*place, key, default=None)
    return "bfloat16" if enabled else "float32"

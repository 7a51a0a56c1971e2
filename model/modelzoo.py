"""Cerebras ModelZoo configs read as this project's model and training recipe: Cerebras-GPT (GPT-2/GPT-3) and the
Llama, Mistral and GPT-J configs the ModelZoo publishes (``models/nlp/{gpt3,llama,mistral,gptj}/configs``).

Two layouts are read:

- current (ModelZoo 2.x): ``trainer: init: {model, optimizer: {AdamW: ...}, schedulers: [SequentialLR: ...],
  precision: {max_gradient_norm}, loop: {max_steps}, checkpoint: {steps}, seed}`` and ``trainer: fit:
  train_dataloader: {batch_size}``;
- older (ModelZoo 1.x): top-level ``model``, ``optimizer: {optimizer_type, learning_rate: [...], max_gradient_norm}``,
  ``runconfig: {max_steps}`` and ``train_input: {batch_size}``; a file holding just the model section also reads.

``read_modelzoo`` maps the model section onto GPTConfig fields: the shape (``hidden_size`` -> d_model,
``num_hidden_layers`` -> n_layers, ``num_heads`` -> n_heads, ``filter_size`` -> d_ffn, ``max_position_embeddings`` ->
max_seq_len), the architecture (``position_embedding_type``, ``rotary_dim``, ``rope_theta``, ``pos_scaling_type``
/ ``pos_scaling_factor`` / ``pos_scaling_extra_args``, ``norm_type``, ``nonlinearity`` (``swiglu`` is a gated SiLU),
``attention_module: multiquery_attention`` with ``extra_attention_params.num_kv_groups``, ``share_embedding_weights``,
the three bias switches, ``use_bias_in_output``; ``name: gptj`` is GPT-J's parallel block) and muP's
``mup_base_hidden_size`` / ``output_logits_scale``, ``embeddings_scale``, ``scale_qk_dot_by_d``. The ModelZoo rotates
RoPE pairs interleaved (``rotate_every_two`` for every model; its HF Llama converter permutes Q/K rows to match), so
a rotary ModelZoo model reads as ``rope_style: interleaved``. model/modelzoo_training.py reads the optimizer and
schedule into a neutral recipe; runtime/config/modelzoo.py turns that into run-config keys. A field that would change
the math and that our model does not have (ALiBi, a sliding window shorter than the context, YaRN scaling, NeoX's two
norms, another nonlinearity, dropout ...) raises ModelZooError naming it. Every other field read nowhere is listed in
``ignored`` (dotted paths; a subtree read nowhere is listed once), never dropped unseen.

Pure Python: no JAX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from model.modelzoo_training import (MISSING, ModelZooError, Reader, optimizer_recipe, precision_dtype,
                                     schedule_recipe, want)
from model.presets import ALL_PRESETS, matching_preset

__all__ = ["ModelZooConfig", "ModelZooError", "is_modelzoo", "read_modelzoo"]

# Fields that mark the model section of a ModelZoo GPT config.
_MODEL_MARKS = ("hidden_size", "num_hidden_layers")


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


def _sections(r: Reader) -> dict[str, tuple[str, ...]]:
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
    r = Reader(tree, file)
    where = _sections(r)
    model = _model_fields(r, where["model"])
    recipe = optimizer_recipe(r, where["optimizer"], model, where["clip"])
    recipe.update(schedule_recipe(r, where["schedulers"]))
    for key in ("steps", "batch_size", "seq_len", "seed", "checkpoint_every", "eval_every"):
        value = r.get(*where[key])
        if value is not MISSING and value is not None:
            recipe[key] = value
    dtype = precision_dtype(r, where)
    if dtype:
        recipe["dtype"] = dtype
    model.update({k: v for k, v in (("batch_size", recipe.get("batch_size")), ("learning_rate", recipe.get("lr")),
                                    ("lr_decay", recipe.get("decay"))) if v is not None})
    preset = matching_preset(model)
    fields = {**(ALL_PRESETS[preset] if preset else {}), **model, "name": name}
    _check_mup_lr(r, where, fields)
    return ModelZooConfig(fields, recipe, r.ignored())


def _model_fields(r: Reader, base: tuple) -> dict:
    """GPTConfig fields from the ModelZoo model section; refuses what our network does not compute."""
    section = r.get(*base, default=None) if base else r.tree
    if not isinstance(section, dict) or any(k not in section for k in _MODEL_MARKS):
        raise ModelZooError(f"{r.file}: no ModelZoo model section with hidden_size and num_hidden_layers "
                            f"(looked in {'.'.join(base) or 'the top level'})")
    positive = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0  # noqa: E731
    d = want(r, base, "hidden_size", positive, "a positive integer is required")
    heads = want(r, base, "num_heads", positive, "a positive integer dividing hidden_size is required")
    if d % heads:
        raise r.fail(base + ("num_heads",), heads, f"it must divide hidden_size {d}")
    fields = dict(d_model=d, n_heads=heads, d_head=d // heads,
                  n_layers=want(r, base, "num_hidden_layers", positive, "a positive integer is required"),
                  d_ffn=want(r, base, "filter_size", positive, "a positive integer is required", 4 * d),
                  vocab_size=want(r, base, "vocab_size", positive, "a positive integer is required", 50257),
                  max_seq_len=want(r, base, "max_position_embeddings", positive, "a positive integer is required", 2048),
                  layer_norm_eps=float(want(r, base, "layer_norm_epsilon", lambda v: float(v) > 0, "a positive number", 1e-5)))
    _check_unsupported(r, base)
    fields.update(_architecture(r, base, fields))
    std = r.get(*base, "initializer", "std", default=None)
    if std is None:
        std = r.get(*base, "initializer_range", default=None)
    if std is not None:
        fields["init_std"] = float(std)
    fields.update(_mup_fields(r, base, fields))
    return fields


# (field, accepted values, what our model does): the ModelZoo switches whose other values change the network.
_UNSUPPORTED = [
    ("name", ("gpt2", "gpt3", "llama", "mistral", "gptj", None), "wse reads the gpt2/gpt3, llama, mistral and gptj "
     "model classes"),
    ("use_position_embedding", (True, None), "wse models always have positions (learned or rotary)"),
    ("attention_type", ("scaled_dot_product", None), "wse models scale attention logits (1/sqrt(d_head), muP 1/d_head)"),
    ("attention_module", ("aiayn_attention", "multiquery_attention", None), "wse models use standard (or grouped-query) "
     "attention"),
    ("embedding_layer_norm", (False, None), "wse models have no LayerNorm on the embeddings"),
    ("fixed_sparse_attention", (None,), "wse models use dense attention"),
    ("attention_logits_alpha", (1, 1.0, None), "wse models do not scale attention logits further"),
    ("scale_output_logits_by_d", (False, None), "wse models scale muP logits by 1/m_w only"),
    ("use_untied_layer_norm", (False, None), "GPT-J's parallel block reads one LayerNorm (NeoX's two are not "
     "supported)"),
    ("pos_scaling_type", ("linear", "llama3", None), "wse scales RoPE frequencies linearly or by Llama 3.1's rule"),
    ("moe", (None,), "wse models are dense (no mixture of experts)"),
]
_DROPOUTS = ("dropout_rate", "attention_dropout_rate", "embedding_dropout_rate", "residual_dropout_rate")


def _check_unsupported(r: Reader, base: tuple) -> None:
    for key, accepted, ours in _UNSUPPORTED:
        value = r.get(*base, key, default=None)
        if not any(value is a or (value == a and type(value) is type(a)) for a in accepted):
            raise r.fail(base + (key,), value, f"not supported: {ours}")
    for key in _DROPOUTS:
        value = r.get(*base, key, default=0.0)
        if value not in (0, 0.0, None):
            raise r.fail(base + (key,), value, "not supported: wse models have no dropout (set it to 0.0)")
    window = r.get(*base, "attention_sliding_window_length", default=None)
    if window is not None and window < r.peek(*base, "max_position_embeddings", default=2048):
        raise r.fail(base + ("attention_sliding_window_length",), window,
                     "not supported: wse models attend to the whole context (no sliding window)")
    # The loss is a mean over tokens: "num_tokens" with weight 1, or "batch_size" with weight 1/context (the published
    # configs) say the same; any other pair is listed as ignored (under Adam a constant loss scale barely matters).
    scaling, weight = r.peek(*base, "loss_scaling", default=None), r.peek(*base, "loss_weight", default=1.0)
    context = r.peek(*base, "max_position_embeddings", default=2048)
    if (scaling in (None, "num_tokens") and weight == 1) or (scaling == "batch_size" and math.isclose(weight * context, 1)):
        r.get(*base, "loss_scaling"), r.get(*base, "loss_weight")


# ModelZoo ``nonlinearity`` -> (activation, gated).
_NONLINEARITIES = {"gelu": ("gelu", False), "gelu_new": ("gelu_tanh", False), "gelu_fast": ("gelu_tanh", False),
                   "swiglu": ("silu", True), "geglu": ("gelu", True)}
_BIASES = {"use_projection_bias_in_attention": "qkv_bias", "use_ffn_bias_in_attention": "attn_out_bias",
           "use_ffn_bias": "mlp_bias", "use_bias_in_output": "lm_head_bias"}


def _architecture(r: Reader, base: tuple, shape: dict) -> dict:
    """The architecture fields (positions, RoPE, norm, nonlinearity, grouped K/V, tying, biases, block layout)."""
    out: dict = {}
    act = want(r, base, "nonlinearity", lambda v: v in _NONLINEARITIES or v is None,
               f"not supported: wse models use one of {', '.join(_NONLINEARITIES)}")
    if act is not None:
        out["activation"], out["ffn_gated"] = _NONLINEARITIES[act]
    norm = want(r, base, "norm_type", lambda v: v in ("layernorm", "rmsnorm", None), "not supported: wse models use "
                "layernorm or rmsnorm")
    if norm is not None:
        out["norm"] = norm
    for key, ours in _BIASES.items():
        value = r.get(*base, key, default=None)
        if value is not None:
            out[ours] = bool(value)
    tied = r.get(*base, "share_embedding_weights", default=None)
    if tied is not None:
        out["tied_embeddings"] = bool(tied)
    groups = r.get(*base, "extra_attention_params", "num_kv_groups", default=None)
    if r.peek(*base, "attention_module", default=None) == "multiquery_attention" and groups is not None:
        if not isinstance(groups, int) or groups <= 0 or shape["n_heads"] % groups:
            raise r.fail(base + ("extra_attention_params", "num_kv_groups"), groups, f"it must divide num_heads {shape['n_heads']}")
        out["n_kv_heads"] = None if groups == shape["n_heads"] else groups
    elif groups not in (None, shape["n_heads"]):
        raise r.fail(base + ("extra_attention_params", "num_kv_groups"), groups,
                     "grouped K/V heads need attention_module: multiquery_attention")
    if r.get(*base, "name", default=None) == "gptj":
        out["parallel_residual"] = True
    out.update(_positions(r, base, shape))
    return out


def _positions(r: Reader, base: tuple, shape: dict) -> dict:
    kind = want(r, base, "position_embedding_type", lambda v: v in ("learned", "rotary", None),
                "not supported: wse models have learned or rotary positions")
    if kind != "rotary":
        return {}
    rotary = r.get(*base, "rotary_dim", default=None)
    out = {"positions": "rotary", "rope_style": "interleaved",
           "rope_theta": float(r.get(*base, "rope_theta", default=10000.0)),
           "rotary_dim": None if rotary in (None, shape["d_head"]) else rotary}
    scaling, factor = r.peek(*base, "pos_scaling_type", default=None), r.get(*base, "pos_scaling_factor", default=1.0)
    if scaling == "llama3":
        extra = ("pos_scaling_extra_args",)
        out.update(rope_scaling="llama3", rope_scaling_factor=float(factor),
                   rope_low_freq_factor=float(r.get(*base, *extra, "low_freq_factor", default=1.0)),
                   rope_high_freq_factor=float(r.get(*base, *extra, "high_freq_factor", default=4.0)),
                   rope_original_max_seq_len=int(r.get(*base, *extra, "original_max_position_embeddings",
                                                       default=8192)))
    elif float(factor) != 1.0:
        out.update(rope_scaling="linear", rope_scaling_factor=float(factor))
    return out


def _mup_fields(r: Reader, base: tuple, fields: dict) -> dict:
    """muP from either layout: ``mup_base_hidden_size`` (2.x) or ``output_logits_scale`` = 1/m_w (1.x)."""
    d, f = fields["d_model"], fields["d_ffn"]
    base_d = r.get(*base, "mup_base_hidden_size", default=None)
    logits_scale = r.get(*base, "output_logits_scale", default=None)
    qk_by_d = bool(r.get(*base, "scale_qk_dot_by_d", default=False))
    emb = float(r.get(*base, "embeddings_scale", default=1.0))
    want(r, base, "output_logits_alpha", lambda v: v in (None, 1, 1.0),
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


def _check_mup_lr(r: Reader, where: dict, fields: dict) -> None:
    """1.x muP configs spell the hidden-matrix LR scale out (``adjust_learning_rate.decoder_kernel``); ours is 1/m_w."""
    adjust = r.get(*where["optimizer"], "adjust_learning_rate", "decoder_kernel", default=None)
    expected = fields["mup_base_width"] / fields["d_model"] if fields.get("mup") else 1.0
    if adjust is not None and not math.isclose(float(adjust), expected, rel_tol=1e-6):
        raise r.fail(where["optimizer"] + ("adjust_learning_rate", "decoder_kernel"), adjust,
                     f"wse scales hidden-matrix learning rates by 1/m_w = {expected:g}")
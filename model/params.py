"""The model's parameters: which tensors a config has, their shapes and logical axis names, their initialisation,
optimizer labels and weight-decay mask, and the shape check.

Layout. Transformer blocks are stored *stacked* on a leading ``layers`` axis (one canonical layout, used by
checkpoints whatever the execution plan), with GPT-2's tensor names (``c_attn``, ``c_proj``, ``c_fc``) so that the
HuggingFace mapping is one line per tensor. A Cerebras-GPT config has exactly the tensors it always had; the
architecture fields add or drop tensors:

- ``c_attn`` kernel [L, d, 3, H, D] holds Q, K and V when every query head has its own K/V head; with grouped K/V
  heads (``n_kv_heads`` < ``n_heads``) Q is ``c_q`` [L, d, H, D] and K, V are ``c_kv`` [L, d, 2, K, D];
- biases exist where the config has them (``qkv_bias``, ``attn_out_bias``, ``mlp_bias``), norms have a ``bias``
  only when they are LayerNorms, ``ln_2`` only with a sequential block, ``q_norm`` / ``k_norm`` [L, D] with
  ``qk_norm``, ``wpe`` only with learned positions;
- a gated FFN's ``c_fc`` kernel is [L, d, 2, f] (gate, then up);
- ``lm_head`` holds an untied head's ``weight`` [V, d] (stored like ``wte``, so the loss reads either) and/or the
  logits' ``bias`` [V].

Every parameter carries logical axis names (``vocab``, ``embed``, ``position``, ``heads``, ``kv_heads``, ``head_dim``,
``qkv``, ``gate``, ``mlp``, ``layers``); runtime/ maps them to mesh axes by rules.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from model.config import GPTConfig

Params = dict[str, Any]


def _dense(kernel_axes, kernel_shape, bias_axes, bias_shape, bias: bool) -> dict:
    out = {"kernel": (kernel_axes, kernel_shape)}
    if bias:
        out["bias"] = (bias_axes, bias_shape)
    return out


def _norm(cfg: GPTConfig, lead_axes: tuple, lead: tuple, width_axis: str, width: int) -> dict:
    out = {"scale": (lead_axes + (width_axis,), lead + (width,))}
    if cfg.norm == "layernorm":
        out["bias"] = (lead_axes + (width_axis,), lead + (width,))
    return out


def _attention_layout(cfg: GPTConfig) -> dict:
    L, d, H, K, D = cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.d_head
    attn: dict = {}
    if K == H:
        attn["c_attn"] = _dense(("layers", "embed", "qkv", "heads", "head_dim"), (L, d, 3, H, D),
                                ("layers", "qkv", "heads", "head_dim"), (L, 3, H, D), cfg.qkv_bias)
    else:
        attn["c_q"] = _dense(("layers", "embed", "heads", "head_dim"), (L, d, H, D),
                             ("layers", "heads", "head_dim"), (L, H, D), cfg.qkv_bias)
        attn["c_kv"] = _dense(("layers", "embed", "qkv", "kv_heads", "head_dim"), (L, d, 2, K, D),
                              ("layers", "qkv", "kv_heads", "head_dim"), (L, 2, K, D), cfg.qkv_bias)
    if cfg.qk_norm:
        attn["q_norm"] = {"scale": (("layers", "head_dim"), (L, D))}
        attn["k_norm"] = {"scale": (("layers", "head_dim"), (L, D))}
    attn["c_proj"] = _dense(("layers", "heads", "head_dim", "embed"), (L, H, D, d), ("layers", "embed"), (L, d),
                            cfg.attn_out_bias)
    return attn


def _layout(cfg: GPTConfig) -> Params:
    """Every parameter as (logical axes, shape), in a tree shaped like the parameters."""
    L, d, f, V = cfg.n_layers, cfg.d_model, cfg.d_ffn, cfg.vocab_size
    if cfg.ffn_gated:
        c_fc = _dense(("layers", "embed", "gate", "mlp"), (L, d, 2, f), ("layers", "gate", "mlp"), (L, 2, f),
                      cfg.mlp_bias)
    else:
        c_fc = _dense(("layers", "embed", "mlp"), (L, d, f), ("layers", "mlp"), (L, f), cfg.mlp_bias)
    blocks = {"ln_1": _norm(cfg, ("layers",), (L,), "embed", d), "attn": _attention_layout(cfg)}
    if not cfg.parallel_residual:
        blocks["ln_2"] = _norm(cfg, ("layers",), (L,), "embed", d)
    blocks["mlp"] = {"c_fc": c_fc, "c_proj": _dense(("layers", "mlp", "embed"), (L, f, d), ("layers", "embed"),
                                                    (L, d), cfg.mlp_bias)}
    out: Params = {"wte": (("vocab", "embed"), (V, d))}
    if cfg.learned_positions:
        out["wpe"] = (("position", "embed"), (cfg.max_seq_len, d))
    out["blocks"] = blocks
    out["ln_f"] = _norm(cfg, (), (), "embed", d)
    head = {}
    if not cfg.tied_embeddings:
        head["weight"] = (("vocab", "embed"), (V, d))
    if cfg.lm_head_bias:
        head["bias"] = (("vocab",), (V,))
    if head:
        out["lm_head"] = head
    return out


def _is_entry(x) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], tuple)


def logical_axes(cfg: GPTConfig) -> Params:
    """The logical axis names of every parameter, as a dict shaped like the parameters."""
    return jax.tree.map(lambda e: e[0], _layout(cfg), is_leaf=_is_entry)


def param_shapes(cfg: GPTConfig) -> Params:
    """The shape of every parameter (same tree as ``logical_axes``)."""
    return jax.tree.map(lambda e: e[1], _layout(cfg), is_leaf=_is_entry)


def outside_blocks(cfg: GPTConfig) -> tuple[str, ...]:
    """The top-level parameters outside the layer stack, in layout order: ``wte``, ``wpe`` (learned positions),
    ``ln_f``, ``lm_head`` (an untied head or a logit bias). What an execution mode keeps beside the blocks."""
    return tuple(k for k in _layout(cfg) if k != "blocks")


def path_names(path) -> tuple[str, ...]:
    """A pytree path (jax.tree_util keys: dict keys, attribute names, sequence indices) as strings, e.g.
    ``("blocks", "attn", "c_attn", "kernel")``: the one spelling of a parameter's or optimizer leaf's name."""
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _init_std(cfg: GPTConfig, path: tuple[str, ...]) -> float | None:
    """Init std of a tensor, or None for norm scales and biases (ones/zeros).

    One rule for every family (GPT-2's, which Megatron and OLMo also use): embeddings and an untied head
    N(0, init_std); weight matrices init_std, the two that write into the residual stream (attention and FFN output
    projections) init_std / sqrt(2 L). muP: embeddings init_std; Q/K/V and FFN input init_std / sqrt(m_w); attention
    and FFN output init_std / sqrt(2 L m_w).
    """
    name = "/".join(path)
    if name in ("wte", "wpe", "lm_head/weight"):
        return cfg.init_std
    if not name.endswith("kernel"):
        return None
    m_w = cfg.width_multiplier
    if name.endswith("c_proj/kernel"):
        return cfg.init_std / math.sqrt(2 * cfg.n_layers * m_w)
    return cfg.init_std / math.sqrt(m_w)


def _tree_of_names(cfg: GPTConfig, fn) -> Params:
    return jax.tree_util.tree_map_with_path(lambda path, _: fn(path_names(path)), param_shapes(cfg),
                                            is_leaf=lambda x: isinstance(x, tuple))


def param_labels(cfg: GPTConfig) -> Params:
    """Optimizer label per tensor: 'hidden' (matrices whose muP learning rate is peak / m_w) or 'vector'
    (embeddings, an untied head, norms and biases, which keep the base rate); same tree as the parameters."""
    return _tree_of_names(cfg, lambda names: "hidden" if names[-1] == "kernel" else "vector")


def weight_decay_mask(cfg: GPTConfig) -> Params:
    """True where AdamW applies weight decay: weight matrices, embeddings and an untied head's matrix; not norm
    parameters or biases."""
    return _tree_of_names(cfg, lambda names: names[-1] in ("kernel", "wte", "wpe") or names == ("lm_head", "weight"))


def init_params(cfg: GPTConfig, key: jax.Array) -> Params:
    """Fresh float32 parameters: truncated normal (+-2 std) per ``_init_std``, norm scales 1, biases 0."""
    shapes = param_shapes(cfg)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(key, len(leaves))
    out = []
    for k, (path, shape) in zip(keys, leaves):
        names = path_names(path)
        std = _init_std(cfg, names)
        if std is not None:
            out.append(std * jax.random.truncated_normal(k, -2.0, 2.0, shape, jnp.float32))
        elif names[-1] == "scale":
            out.append(jnp.ones(shape, jnp.float32))
        else:
            out.append(jnp.zeros(shape, jnp.float32))
    return jax.tree_util.tree_unflatten(treedef, out)


@functools.cache
def _init_program():
    return jax.jit(init_params, static_argnums=0)


def initial_params(cfg: GPTConfig, key: jax.Array | int = 0) -> Params:
    """``init_params`` as one jitted computation (eagerly it compiles one program per tensor), compiled once per
    process and model shape; ``key`` may be a seed. The parameters stay where JAX put them (the default device)."""
    if isinstance(key, int):
        key = jax.random.key(key)
    return _init_program()(cfg, key)


def check_params(cfg: GPTConfig, params: Params) -> None:
    """Raise ValueError naming the first tensor whose shape does not match the config (or that is missing or
    unexpected)."""
    expected = param_shapes(cfg)
    flat_e = dict(jax.tree_util.tree_flatten_with_path(expected, is_leaf=lambda x: isinstance(x, tuple))[0])
    flat_p = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    names = lambda d: {"/".join(path_names(k)): v for k, v in d.items()}  # noqa: E731
    flat_e, flat_p = names(flat_e), names(flat_p)
    missing = sorted(set(flat_e) - set(flat_p))
    if missing:
        raise ValueError(f"parameter '{missing[0]}' is missing")
    extra = sorted(set(flat_p) - set(flat_e))
    if extra:
        raise ValueError(f"unexpected parameter '{extra[0]}'")
    for name, shape in flat_e.items():
        if tuple(flat_p[name].shape) != tuple(shape):
            raise ValueError(f"parameter '{name}' has shape {tuple(flat_p[name].shape)}, the config needs {tuple(shape)}")

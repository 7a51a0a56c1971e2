"""The Cerebras-GPT model in Flax NNX: GPT-2/GPT-3 architecture with Cerebras' choices, standard or muP.

Layout. Transformer blocks are stored *stacked* on a leading ``layers`` axis (one canonical layout, used by
checkpoints whatever the execution plan), with GPT-2's tensor names (``c_attn``, ``c_proj``, ``c_fc``) so that the
HuggingFace mapping in ``model/hf.py`` is one line per tensor. Every parameter carries logical axis names
(``vocab``, ``embed``, ``heads``, ``head_dim``, ``mlp``, ``layers``); runtime/ maps them to mesh axes by rules.

Math. The forward pass is written as pure functions of a plain parameter dict (``embed``, ``block``, ``head``,
``forward``) because runtime/ executes the same layers in different places: all at once (data parallel), one stage's
slice of the stack per device group (pipelined), or one layer at a time streamed from host memory. The NNX module
owns the parameters and their metadata and calls the same functions, so there is one implementation of the model.

Architecture (cerebras-gpt.md): tied input/output embeddings, learned positions, pre-LayerNorm (eps 1e-5), exact
(erf) GELU, biases on Q/K/V/out/FFN, no LM-head bias, no dropout. muP: embedding output x 10, attention logits
scaled by 1/d_head, output logits x 1/m_w, width-scaled init; ``param_labels`` tells the optimizer which tensors get
the hidden-matrix learning rate.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from model.config import GPTConfig

Params = dict[str, Any]

# GPT-2 / Cerebras tensor layout: name -> (logical axes, shape as a function of the config).
# Kernels are stored (in, out) as GPT-2's Conv1D does; attention kernels split out the heads so that a `model`
# mesh axis can shard whole heads.


def logical_axes(cfg: GPTConfig) -> Params:
    """The logical axis names of every parameter, as a dict shaped like the parameters."""
    del cfg  # same names for every shape
    dense = lambda k, b: {"kernel": k, "bias": b}  # noqa: E731
    norm = {"scale": ("layers", "embed"), "bias": ("layers", "embed")}
    return {
        "wte": ("vocab", "embed"),
        "wpe": ("position", "embed"),
        "blocks": {
            "ln_1": norm,
            "attn": {
                "c_attn": dense(("layers", "embed", "qkv", "heads", "head_dim"), ("layers", "qkv", "heads", "head_dim")),
                "c_proj": dense(("layers", "heads", "head_dim", "embed"), ("layers", "embed")),
            },
            "ln_2": norm,
            "mlp": {
                "c_fc": dense(("layers", "embed", "mlp"), ("layers", "mlp")),
                "c_proj": dense(("layers", "mlp", "embed"), ("layers", "embed")),
            },
        },
        "ln_f": {"scale": ("embed",), "bias": ("embed",)},
    }


def param_shapes(cfg: GPTConfig) -> Params:
    """The shape of every parameter (same tree as ``logical_axes``)."""
    L, d, H, D, f = cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_ffn
    norm = {"scale": (L, d), "bias": (L, d)}
    return {
        "wte": (cfg.vocab_size, d),
        "wpe": (cfg.max_seq_len, d),
        "blocks": {
            "ln_1": norm,
            "attn": {"c_attn": {"kernel": (L, d, 3, H, D), "bias": (L, 3, H, D)},
                     "c_proj": {"kernel": (L, H, D, d), "bias": (L, d)}},
            "ln_2": dict(norm),
            "mlp": {"c_fc": {"kernel": (L, d, f), "bias": (L, f)}, "c_proj": {"kernel": (L, f, d), "bias": (L, d)}},
        },
        "ln_f": {"scale": (d,), "bias": (d,)},
    }


def _init_std(cfg: GPTConfig, path: tuple[str, ...]) -> float | None:
    """Init std of a tensor, or None for LayerNorm/bias (ones/zeros).

    SP: N(0, init_std) everywhere, output projections init_std / sqrt(2 L) (GPT-2, Cerebras SP configs).
    muP: embeddings init_std; Q/K/V and FFN input init_std / sqrt(m_w); attention and FFN output
    init_std / sqrt(2 L m_w).
    """
    name = "/".join(path)
    if name in ("wte", "wpe"):
        return cfg.init_std
    if not name.endswith("kernel"):
        return None
    m_w = cfg.width_multiplier
    if name.endswith("c_proj/kernel"):
        return cfg.init_std / math.sqrt(2 * cfg.n_layers * m_w)
    return cfg.init_std / math.sqrt(m_w)


def param_labels(cfg: GPTConfig) -> Params:
    """Optimizer label per tensor: 'hidden' (matrices whose muP learning rate is peak / m_w) or 'vector'
    (embeddings, LayerNorm and biases, which keep the base rate); same tree as the parameters."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "hidden" if _keys(path)[-1] == "kernel" else "vector",
        param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple),
    )


def weight_decay_mask(cfg: GPTConfig) -> Params:
    """True where AdamW applies weight decay: weight matrices and embeddings, not LayerNorm parameters or biases."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: _keys(path)[-1] in ("kernel", "wte", "wpe"),
        param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple),
    )


def _keys(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", k)) for k in path)


def init_params(cfg: GPTConfig, key: jax.Array) -> Params:
    """Fresh float32 parameters: truncated normal (+-2 std) per ``_init_std``, LayerNorm 1/0, biases 0."""
    shapes = param_shapes(cfg)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes, is_leaf=lambda x: isinstance(x, tuple))
    keys = jax.random.split(key, len(leaves))
    out = []
    for k, (path, shape) in zip(keys, leaves):
        names = _keys(path)
        std = _init_std(cfg, names)
        if std is not None:
            out.append(std * jax.random.truncated_normal(k, -2.0, 2.0, shape, jnp.float32))
        elif names[-1] == "scale":
            out.append(jnp.ones(shape, jnp.float32))
        else:
            out.append(jnp.zeros(shape, jnp.float32))
    return jax.tree_util.tree_unflatten(treedef, out)


# ----------------------------------------------------------------------------------------------------------------
# Pure functions: the model's math on a parameter dict. ``dtype`` is the compute dtype (parameters stay float32
# and are cast at use); LayerNorm statistics, softmax and logits are computed in float32.


def layer_norm(x: jax.Array, p: Params, eps: float) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + eps)
    return (y * p["scale"] + p["bias"]).astype(x.dtype)


def embed(cfg: GPTConfig, params: Params, tokens: jax.Array, positions: jax.Array | None = None,
          dtype=jnp.float32) -> jax.Array:
    """Token plus position embeddings -> [B, T, d] (x mup_embedding_multiplier under muP)."""
    if positions is None:
        positions = jnp.arange(tokens.shape[-1])[None, :]
    x = jnp.take(params["wte"], tokens, axis=0) + jnp.take(params["wpe"], positions, axis=0)
    if cfg.mup:
        x = x * cfg.mup_embedding_multiplier
    return x.astype(dtype)


def attention_scale(cfg: GPTConfig) -> float:
    return 1.0 / cfg.d_head if cfg.mup else 1.0 / math.sqrt(cfg.d_head)


def block(cfg: GPTConfig, p: Params, x: jax.Array, *, kv_cache: tuple | None = None, cache_index=None,
          key_mask: jax.Array | None = None):
    """One pre-LN transformer block on [B, T, d]; ``p`` is one layer's slice of ``params['blocks']``.

    Without a cache: causal self-attention over the T positions, returns x.
    With ``kv_cache=(k, v)`` of shape [B, S, H, D]: the new keys/values are written at ``cache_index`` (a scalar,
    the same slot for every row) and the T queries attend to cache slots ``<= cache_index + t`` that ``key_mask``
    ([B, S] bool, False for padding) allows; returns (x, (k, v)).
    """
    dtype = x.dtype
    h = layer_norm(x, p["ln_1"], cfg.layer_norm_eps)
    qkv = jnp.einsum("btd,dshk->btshk", h, p["attn"]["c_attn"]["kernel"].astype(dtype))
    qkv = qkv + p["attn"]["c_attn"]["bias"].astype(dtype)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, T, H, D]
    scale = attention_scale(cfg)
    if kv_cache is None:
        a = jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True)
        new_cache = None
    else:
        ck, cv = kv_cache
        ck = jax.lax.dynamic_update_slice_in_dim(ck, k.astype(ck.dtype), cache_index, axis=1)
        cv = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype), cache_index, axis=1)
        T, S = q.shape[1], ck.shape[1]
        causal = jnp.arange(S)[None, :] <= (cache_index + jnp.arange(T))[:, None]  # [T, S]
        mask = causal[None, None]
        if key_mask is not None:
            mask = mask & key_mask[:, None, None, :]
        a = jax.nn.dot_product_attention(q, ck.astype(dtype), cv.astype(dtype), scale=scale, mask=mask)
        new_cache = (ck, cv)
    a = jnp.einsum("bthk,hkd->btd", a, p["attn"]["c_proj"]["kernel"].astype(dtype))
    x = x + a + p["attn"]["c_proj"]["bias"].astype(dtype)
    h = layer_norm(x, p["ln_2"], cfg.layer_norm_eps)
    h = h @ p["mlp"]["c_fc"]["kernel"].astype(dtype) + p["mlp"]["c_fc"]["bias"].astype(dtype)
    h = jax.nn.gelu(h, approximate=False)
    h = h @ p["mlp"]["c_proj"]["kernel"].astype(dtype) + p["mlp"]["c_proj"]["bias"].astype(dtype)
    x = x + h
    return x if kv_cache is None else (x, new_cache)


def head(cfg: GPTConfig, params: Params, x: jax.Array) -> jax.Array:
    """Final LayerNorm and the tied unembedding -> float32 logits [B, T, V] (x 1/m_w under muP)."""
    h = layer_norm(x, params["ln_f"], cfg.layer_norm_eps)
    logits = jnp.einsum("btd,vd->btv", h, params["wte"].astype(h.dtype), preferred_element_type=jnp.float32)
    if cfg.mup:
        logits = logits / cfg.width_multiplier
    return logits


def run_blocks(cfg: GPTConfig, blocks: Params, x: jax.Array, remat: bool = False) -> jax.Array:
    """Apply a stack of blocks (leading axis = layers) in order with ``lax.scan``: one compiled block body."""
    body = (lambda h, p: (block(cfg, p, h), None))
    if remat:
        body = jax.checkpoint(body)
    x, _ = jax.lax.scan(body, x, blocks)
    return x


def forward(cfg: GPTConfig, params: Params, tokens: jax.Array, dtype=jnp.float32, remat: bool = False) -> jax.Array:
    """Logits [B, T, V] (float32) for tokens [B, T]: the whole model on one device group."""
    x = embed(cfg, params, tokens, dtype=dtype)
    x = run_blocks(cfg, params["blocks"], x, remat=remat)
    return head(cfg, params, x)


def cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean next-token cross-entropy in nats over the positions where ``mask`` is true (all if None)."""
    logits = logits.astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = logz - picked
    if mask is None:
        return nll.mean()
    mask = mask.astype(jnp.float32)
    return (nll * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def loss_fn(cfg: GPTConfig, params: Params, tokens: jax.Array, targets: jax.Array, mask: jax.Array | None = None,
            dtype=jnp.float32, remat: bool = False) -> jax.Array:
    return cross_entropy(forward(cfg, params, tokens, dtype=dtype, remat=remat), targets, mask)


def init_kv_cache(cfg: GPTConfig, batch: int, length: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """An empty KV cache: keys and values [L, B, S, H, D]."""
    shape = (cfg.n_layers, batch, length, cfg.n_heads, cfg.d_head)
    return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)


def forward_cached(cfg: GPTConfig, params: Params, tokens: jax.Array, positions: jax.Array, cache: tuple,
                   cache_index, key_mask: jax.Array | None = None, dtype=jnp.float32):
    """Logits for ``tokens`` [B, T] at ``positions`` [B, T], reading and extending the KV cache at ``cache_index``.
    Returns (logits [B, T, V], new cache). Used by model/generate.py for prefill (T = prompt) and decode (T = 1)."""
    x = embed(cfg, params, tokens, positions, dtype=dtype)

    def body(h, layer):
        p, ck, cv = layer
        h, (ck, cv) = block(cfg, p, h, kv_cache=(ck, cv), cache_index=cache_index, key_mask=key_mask)
        return h, (ck, cv)

    x, cache = jax.lax.scan(body, x, (params["blocks"], cache[0], cache[1]))
    return head(cfg, params, x), cache


# ----------------------------------------------------------------------------------------------------------------
# The NNX module: owns the parameters (with their logical axis metadata) and calls the functions above.


def _as_variables(values: Params, axes: Params):
    """Wrap a (nested) dict of arrays into nnx.Params carrying logical axis names, as nnx containers."""
    if isinstance(values, dict):
        return nnx.Dict({k: _as_variables(v, axes[k]) for k, v in values.items()})
    return nnx.Param(values, out_sharding=axes, eager_sharding=False)


class GPT(nnx.Module):
    """A Cerebras-GPT model. ``GPT(cfg, rngs=nnx.Rngs(0))`` initialises it; ``GPT.from_params(cfg, params)`` wraps
    existing weights. ``model(tokens)`` returns float32 logits; ``model.params()`` the plain parameter dict."""

    def __init__(self, cfg: GPTConfig, *, rngs: nnx.Rngs | None = None, params: Params | None = None,
                 dtype=jnp.float32):
        self.config = cfg
        self.dtype = dtype
        if params is None:
            params = init_params(cfg, (rngs or nnx.Rngs(0)).params())
        check_params(cfg, params)
        axes = logical_axes(cfg)
        for name, value in params.items():
            setattr(self, name, _as_variables(value, axes[name]))

    @classmethod
    def from_params(cls, cfg: GPTConfig, params: Params, dtype=jnp.float32) -> "GPT":
        return cls(cfg, params=params, dtype=dtype)

    def params(self) -> Params:
        return nnx.to_pure_dict(nnx.state(self, nnx.Param))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return forward(self.config, self.params(), tokens, dtype=self.dtype)


def check_params(cfg: GPTConfig, params: Params) -> None:
    """Raise ValueError naming the first tensor whose shape does not match the config."""
    expected = param_shapes(cfg)
    flat_e = dict(jax.tree_util.tree_flatten_with_path(expected, is_leaf=lambda x: isinstance(x, tuple))[0])
    flat_p = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    names = lambda d: {"/".join(_keys(k)): v for k, v in d.items()}  # noqa: E731
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

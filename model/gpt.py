"""The model in Flax NNX: a decoder-only transformer assembled from model/layers.py, model/attention.py and
model/loss.py, configured by GPTConfig: Cerebras-GPT (GPT-2/GPT-3 architecture, standard or muP) by default, and the
Llama, Mistral, Qwen2/3 and GPT-J families through the config's architecture fields.

Math. The forward pass is written as pure functions of a plain parameter dict (``embed``, ``block``, ``head``,
``forward``) because runtime/ executes the same layers in different places: all at once (data parallel), one stage's
slice of the stack per device group (pipelined), or one layer at a time streamed from host memory. The NNX module
owns the parameters and their metadata and calls the same functions, so there is one implementation of the model.
Branches on the config are static (Python ``if`` on frozen fields), so under jit a Cerebras-GPT config compiles to
exactly the program it always did.

Architecture of Cerebras-GPT (cerebras-gpt.md): tied input/output embeddings, learned positions, pre-LayerNorm (eps
1e-5), exact (erf) GELU, biases on Q/K/V/out/FFN, no LM-head bias, no dropout. muP: embedding output x 10, attention
logits scaled by 1/d_head, output logits x 1/m_w, width-scaled init; ``param_labels`` tells the optimizer which
tensors get the hidden-matrix learning rate. Parameter layout, init and labels: model/params.py.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from model.attention import ATTENTION_KERNELS, cached_attention, causal_attention, xla_causal_attention
from model.config import GPTConfig
from model.layers import apply_rope, gelu, gelu_tanh, layer_norm, matvec, mlp, norm, rms_norm, rope_angles, silu
from model.loss import (LOSS_CHUNK_TOKENS, cross_entropy, head_nll_sum, head_weight, linear_cross_entropy,
                        linear_cross_entropy_with_bias, nll)
from model.params import (check_params, init_params, initial_params, logical_axes, outside_blocks, param_labels,
                          param_shapes, path_names, weight_decay_mask)
from model.remat import REMAT_POLICIES, remat_policy

Params = dict[str, Any]
# How run_blocks walks the stacked layers: one ``lax.scan`` (one compiled block body, a loop at run time) or a Python
# loop that slices each layer out of the stack (L copies of the block in the program: longer compiles, no loop).
LAYER_LOOPS = ("scan", "unroll")

# The names runtime/, benchmarks/ and tests/ import from model.gpt, wherever they are defined.
__all__ = [
    "ATTENTION_KERNELS", "GPT", "LAYER_LOOPS", "LOSS_CHUNK_TOKENS", "REMAT_POLICIES", "apply_rope", "attention_scale", "block",
    "cached_attention", "causal_attention", "check_params", "cross_entropy", "embed", "forward", "forward_cached",
    "gelu", "gelu_tanh", "head", "head_nll_sum", "head_weight", "init_kv_cache", "init_params", "initial_params",
    "layer_norm", "linear_cross_entropy", "linear_cross_entropy_with_bias", "logical_axes", "loss_fn", "loss_sum",
    "mlp", "nll", "norm", "outside_blocks", "param_labels", "param_shapes", "path_names", "remat_policy", "rematerialised",
    "rms_norm", "rope_angles", "run_blocks", "silu", "token_embedding", "unembed", "weight_decay_mask", "xla_causal_attention",
]


def embed(cfg: GPTConfig, params: Params, tokens: jax.Array, positions: jax.Array | None = None,
          dtype=jnp.float32) -> jax.Array:
    """Token embeddings, plus learned position embeddings when the model has them, -> [B, T, d] (x
    mup_embedding_multiplier under muP). ``positions`` [B, T] default to 0 .. T-1; rotary models use them in the
    blocks instead."""
    x = token_embedding(params, tokens)
    if cfg.learned_positions:
        if positions is None:
            positions = jnp.arange(tokens.shape[-1])[None, :]
        x = x + jnp.take(params["wpe"], positions, axis=0)
    if cfg.mup:
        x = x * cfg.mup_embedding_multiplier
    return x.astype(dtype)


def token_embedding(params: Params, tokens: jax.Array) -> jax.Array:
    """The rows of the token embedding for ``tokens`` [...] -> [..., d]: from ``wte`` [V, d], or from ``wte_t``
    [d, V] (vocabulary-minor: model/generate.py's decode layout on CPU, see unembed) by column."""
    if "wte_t" in params:
        return jnp.moveaxis(jnp.take(params["wte_t"], tokens, axis=1), 0, -1)
    return jnp.take(params["wte"], tokens, axis=0)


def attention_scale(cfg: GPTConfig) -> float:
    return 1.0 / cfg.d_head if cfg.mup else 1.0 / math.sqrt(cfg.d_head)


def qkv(cfg: GPTConfig, p: Params, h: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Queries [B, T, H, D], keys and values [B, T, K, D] of normalised hidden states h [B, T, d] (``p``: one layer's
    ``attn`` params), before any Q/K norm or RoPE."""
    dtype = h.dtype
    if "c_attn" in p:
        if "kernel_t" in p["c_attn"]:  # the matrix-vector layout (layers.matvec_layout)
            qkv_ = matvec(h, p["c_attn"]["kernel_t"], 1, (3, cfg.n_heads, cfg.d_head))
        else:
            qkv_ = jnp.einsum("btd,dshk->btshk", h, p["c_attn"]["kernel"].astype(dtype))
        if cfg.qkv_bias:
            qkv_ = qkv_ + p["c_attn"]["bias"].astype(dtype)
        return qkv_[:, :, 0], qkv_[:, :, 1], qkv_[:, :, 2]
    if "kernel_t" in p["c_q"]:
        q = matvec(h, p["c_q"]["kernel_t"], 1, (cfg.n_heads, cfg.d_head))
        kv = matvec(h, p["c_kv"]["kernel_t"], 1, (2, cfg.kv_heads, cfg.d_head))
    else:
        q = jnp.einsum("btd,dhk->bthk", h, p["c_q"]["kernel"].astype(dtype))
        kv = jnp.einsum("btd,dshk->btshk", h, p["c_kv"]["kernel"].astype(dtype))
    if cfg.qkv_bias:
        q, kv = q + p["c_q"]["bias"].astype(dtype), kv + p["c_kv"]["bias"].astype(dtype)
    return q, kv[:, :, 0], kv[:, :, 1]


def self_attention(cfg: GPTConfig, p: Params, h: jax.Array, positions=None, kv_cache=None, cache_index=None,
                   key_mask=None, attention: str = "xla"):
    """Attention of one layer on normalised h [B, T, d] -> (output [B, T, d] before the output bias, new cache or
    None). Q/K RMSNorm (``qk_norm``) and RoPE (rotary ``positions``, default 0 .. T-1) apply before the kernel."""
    q, k, v = qkv(cfg, p, h)
    if cfg.qk_norm:
        q, k = rms_norm(q, p["q_norm"], cfg.layer_norm_eps), rms_norm(k, p["k_norm"], cfg.layer_norm_eps)
    if not cfg.learned_positions:
        if positions is None:
            positions = jnp.arange(h.shape[1])[None, :]
        cos, sin = rope_angles(cfg, positions)
        q, k = apply_rope(cfg, q, cos, sin), apply_rope(cfg, k, cos, sin)
    scale = attention_scale(cfg)
    if kv_cache is None:
        a, new_cache = causal_attention(q, k, v, scale, attention), None
    else:
        a, new_cache = cached_attention(q, k, v, kv_cache, cache_index, key_mask, scale)
    if "kernel_t" in p["c_proj"]:
        return matvec(a, p["c_proj"]["kernel_t"], 2, (cfg.d_model,)), new_cache
    return jnp.einsum("bthk,hkd->btd", a, p["c_proj"]["kernel"].astype(h.dtype)), new_cache


def block(cfg: GPTConfig, p: Params, x: jax.Array, *, positions: jax.Array | None = None, kv_cache: tuple | None = None,
          cache_index=None, key_mask: jax.Array | None = None, attention: str = "xla"):
    """One pre-norm transformer block on [B, T, d]; ``p`` is one layer's slice of ``params['blocks']``.

    Sequential (GPT-2, Llama): x + attn(ln_1(x)), then + mlp(ln_2(.)). Parallel (GPT-J): x + attn(ln_1(x)) +
    mlp(ln_1(x)). ``positions`` [B, T] (rotary models; default 0 .. T-1) are each token's position.
    Without a cache: causal self-attention over the T positions with the ``attention`` kernel (ATTENTION_KERNELS),
    returns x.
    With ``kv_cache=(k, v)``, keys [B K, D, S] and values [B K, S, D] (K = the model's K/V heads): the new
    keys/values (rotated when the model is rotary) are written at ``cache_index`` (a scalar, the same slot for every
    row) and the T queries attend to cache slots ``<= cache_index + t`` that ``key_mask`` ([B, S] bool, False for padding) allows; returns
    (x, (k, v)).
    """
    dtype = x.dtype
    h = norm(cfg, x, p["ln_1"])
    a, new_cache = self_attention(cfg, p["attn"], h, positions, kv_cache, cache_index, key_mask, attention)
    if cfg.parallel_residual:
        x = x + a + mlp(cfg, p["mlp"], h)
        if cfg.attn_out_bias:
            x = x + p["attn"]["c_proj"]["bias"].astype(dtype)
    else:
        x = x + a + p["attn"]["c_proj"]["bias"].astype(dtype) if cfg.attn_out_bias else x + a
        x = x + mlp(cfg, p["mlp"], norm(cfg, x, p["ln_2"]))
    return x if kv_cache is None else (x, new_cache)


def head(cfg: GPTConfig, params: Params, x: jax.Array) -> jax.Array:
    """Final norm and the unembedding -> float32 logits [B, T, V] (x 1/m_w under muP)."""
    return unembed(cfg, params, norm(cfg, x, params["ln_f"]))


def unembed(cfg: GPTConfig, params: Params, h: jax.Array) -> jax.Array:
    """Normalised hidden states [..., d] -> float32 logits [..., V] through the tied embedding or the untied head,
    plus the LM-head bias when the model has one (x 1/m_w under muP). The head is stored [V, d] (``wte`` or
    ``lm_head/weight``) or, in model/generate.py's decode layout on CPU, [d, V] (``wte_t`` or ``lm_head/weight_t``):
    at batch 1 XLA:CPU streams the [d, V] layout about twice as fast (a matrix-vector product reads long rows best)."""
    w_t = params.get("wte_t") if cfg.tied_embeddings else params["lm_head"].get("weight_t")
    if w_t is not None:
        logits = jnp.einsum("...d,dv->...v", h, w_t.astype(h.dtype), preferred_element_type=jnp.float32)
    else:
        w = head_weight(cfg, params)
        logits = jnp.einsum("...d,vd->...v", h, w.astype(h.dtype), preferred_element_type=jnp.float32)
    if cfg.lm_head_bias:
        logits = logits + params["lm_head"]["bias"].astype(jnp.float32)
    if cfg.mup:
        logits = logits / cfg.width_multiplier
    return logits


def rematerialised(fn, remat):
    """``fn`` wrapped for the remat policy (model/remat.py: a REMAT_POLICIES name, or an older spelling)."""
    policy = remat_policy(remat)
    if policy == "none":
        return fn
    if policy == "dots":
        return jax.checkpoint(fn, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
    return jax.checkpoint(fn)


def run_blocks(cfg: GPTConfig, blocks: Params, x: jax.Array, remat="none", attention: str = "xla",
               layer_loop: str = "scan") -> jax.Array:
    """Apply a stack of blocks (leading axis = layers) in order to x [B, T, d], each wrapped for the ``remat`` policy
    (model/remat.py's REMAT_POLICIES), attention with the ``attention`` kernel. ``layer_loop`` (LAYER_LOOPS):
    ``scan`` runs one compiled block body in ``lax.scan``; ``unroll`` slices layer i out of the stack and calls the
    block L times in a Python loop (MaxText's ``scan_layers: false``): the same parameters and the same numbers,
    one straight-line program XLA can schedule across layer boundaries. Raises ValueError for another loop."""
    body = rematerialised(lambda h, p: (block(cfg, p, h, attention=attention), None), remat)
    if layer_loop == "unroll":
        for i in range(jax.tree.leaves(blocks)[0].shape[0]):
            x, _ = body(x, jax.tree.map(lambda a, i=i: a[i], blocks))
        return x
    if layer_loop != "scan":
        raise ValueError(f"unknown layer loop {layer_loop!r}; use one of {', '.join(LAYER_LOOPS)}")
    x, _ = jax.lax.scan(body, x, blocks)
    return x


def forward(cfg: GPTConfig, params: Params, tokens: jax.Array, dtype=jnp.float32, remat="none",
            attention: str = "xla") -> jax.Array:
    """Logits [B, T, V] (float32) for tokens [B, T]: the whole model on one device group."""
    x = embed(cfg, params, tokens, dtype=dtype)
    x = run_blocks(cfg, params["blocks"], x, remat=remat, attention=attention)
    return head(cfg, params, x)


def loss_sum(cfg: GPTConfig, params: Params, tokens: jax.Array, targets: jax.Array, mask: jax.Array | None = None,
             dtype=jnp.float32, remat="none", attention: str = "xla") -> jax.Array:
    """Summed next-token cross-entropy (nats, float32 scalar) of the model on tokens [B, T] against targets [B, T]
    over the positions ``mask`` [B, T] keeps (all if None); the loss head runs in chunks (head_nll_sum)."""
    x = embed(cfg, params, tokens, dtype=dtype)
    x = run_blocks(cfg, params["blocks"], x, remat=remat, attention=attention)
    return head_nll_sum(cfg, params, x, targets, mask)


def loss_fn(cfg: GPTConfig, params: Params, tokens: jax.Array, targets: jax.Array, mask: jax.Array | None = None,
            dtype=jnp.float32, remat="none", attention: str = "xla") -> jax.Array:
    """Mean next-token cross-entropy (nats) over the positions ``mask`` keeps (see loss_sum)."""
    n = jnp.asarray(float(tokens.size), jnp.float32) if mask is None else jnp.maximum(mask.astype(jnp.float32).sum(), 1.0)
    return loss_sum(cfg, params, tokens, targets, mask, dtype=dtype, remat=remat, attention=attention) / n


def init_kv_cache(cfg: GPTConfig, batch: int, length: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """An empty KV cache: keys [L, B K, D, S] and values [L, B K, S, D] (S = ``length`` slots; row b K + j holds
    sequence b's K/V head j), K the model's K/V heads (``n_kv_heads``, not ``n_heads``: grouped-query attention
    caches H/K times fewer values per token); the layouts attention.cached_attention reads and updates in place."""
    L, BK, D = cfg.n_layers, batch * cfg.kv_heads, cfg.d_head
    return jnp.zeros((L, BK, D, length), dtype), jnp.zeros((L, BK, length, D), dtype)


def forward_cached(cfg: GPTConfig, params: Params, tokens: jax.Array, positions: jax.Array, cache: tuple,
                   cache_index, key_mask: jax.Array | None = None, dtype=jnp.float32, last_only: bool = False):
    """Logits for ``tokens`` [B, T] at ``positions`` [B, T], reading and extending the KV cache at ``cache_index``.
    Returns (logits [B, T, V], or [B, 1, V] for the last position only with ``last_only``; new cache). Used by
    model/generate.py for prefill (T = prompt) and decode (T = 1); positions feed the position table or RoPE, so a
    left-padded row's first real token is position 0.

    Two layer layouts: ``params["blocks"]`` stacked on a leading layers axis with ``cache`` = (k, v) as
    ``init_kv_cache`` makes them (leading axis L) runs the layers in a ``lax.scan``; ``params["blocks"]`` a list of per-layer dicts with ``cache`` = (list of L k,
    list of L v) runs them unrolled, each layer reading its own arrays (XLA:CPU copies a layer's weights out of a
    stacked array before its matmuls, scanned or unrolled, which at batch 1 costs more than the matmuls)."""
    x = embed(cfg, params, tokens, positions, dtype=dtype)

    def layer(h, p, ck, cv):
        return block(cfg, p, h, positions=positions, kv_cache=(ck, cv), cache_index=cache_index, key_mask=key_mask)

    if isinstance(params["blocks"], (list, tuple)):
        ks, vs = [], []
        for p, ck, cv in zip(params["blocks"], *cache):
            x, (ck, cv) = layer(x, p, ck, cv)
            ks.append(ck)
            vs.append(cv)
        cache = (ks, vs)
    else:
        x, cache = jax.lax.scan(lambda h, xs: layer(h, *xs), x, (params["blocks"], cache[0], cache[1]))
    return head(cfg, params, x[:, -1:] if last_only else x), cache


# ----------------------------------------------------------------------------------------------------------------
# The NNX module: owns the parameters (with their logical axis metadata) and calls the functions above.


def _as_variables(values: Params, axes: Params):
    """Wrap a (nested) dict of arrays into nnx.Params carrying logical axis names, as nnx containers."""
    if isinstance(values, dict):
        return nnx.Dict({k: _as_variables(v, axes[k]) for k, v in values.items()})
    return nnx.Param(values, out_sharding=axes, eager_sharding=False)


class GPT(nnx.Module):
    """A model of ``cfg``. ``GPT(cfg, rngs=nnx.Rngs(0))`` initialises it; ``GPT.from_params(cfg, params)`` wraps
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

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

import functools
import math
from functools import partial
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
        lambda path, _: "hidden" if path_names(path)[-1] == "kernel" else "vector",
        param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple),
    )


def weight_decay_mask(cfg: GPTConfig) -> Params:
    """True where AdamW applies weight decay: weight matrices and embeddings, not LayerNorm parameters or biases."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: path_names(path)[-1] in ("kernel", "wte", "wpe"),
        param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple),
    )


def path_names(path) -> tuple[str, ...]:
    """A pytree path (jax.tree_util keys: dict keys, attribute names, sequence indices) as strings, e.g.
    ``("blocks", "attn", "c_attn", "kernel")``: the one spelling of a parameter's or optimizer leaf's name."""
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def init_params(cfg: GPTConfig, key: jax.Array) -> Params:
    """Fresh float32 parameters: truncated normal (+-2 std) per ``_init_std``, LayerNorm 1/0, biases 0."""
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


# ----------------------------------------------------------------------------------------------------------------
# Pure functions: the model's math on a parameter dict. ``dtype`` is the compute dtype (parameters stay float32
# and are cast at use); LayerNorm statistics, softmax and logits are computed in float32.


# LayerNorm and GELU carry hand-written backward passes for memory, not speed: autodiff would keep their float32
# intermediates (the upcast input, the centred and normalised values; erf(x / sqrt 2)) for the backward pass, which at
# 1.3B, 8 x 2048 tokens is ~40 GiB more than keeping just the input and recomputing the cheap elementwise rest.
# Gradients equal autodiff's to float32 rounding (tests/test_model.py).


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _normalise(x: jax.Array, eps: float) -> jax.Array:
    """(x - mean) / sqrt(var + eps) over the last axis, in float32."""
    return _normalise_fwd(x, eps)[0]


def _normalise_fwd(x, eps):
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    rstd = jax.lax.rsqrt(jnp.square(x32 - mean).mean(-1, keepdims=True) + eps)
    return (x32 - mean) * rstd, (x, mean, rstd)


def _normalise_bwd(eps, saved, d_y):
    x, mean, rstd = saved
    y = (x.astype(jnp.float32) - mean) * rstd
    d_y = d_y.astype(jnp.float32)
    d_x = rstd * (d_y - d_y.mean(-1, keepdims=True) - y * (d_y * y).mean(-1, keepdims=True))
    return (d_x.astype(x.dtype),)


_normalise.defvjp(_normalise_fwd, _normalise_bwd)


def layer_norm(x: jax.Array, p: Params, eps: float) -> jax.Array:
    """LayerNorm over the last axis with statistics in float32; the result in x's dtype."""
    return (_normalise(x, eps) * p["scale"] + p["bias"]).astype(x.dtype)


@jax.custom_vjp
def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, x Phi(x), as ``jax.nn.gelu(x, approximate=False)``; the backward pass keeps only x."""
    return jax.nn.gelu(x, approximate=False)


def _gelu_fwd(x):
    return gelu(x), x


def _gelu_bwd(x, d_y):
    x32 = x.astype(jnp.float32)
    cdf = 0.5 * (1.0 + jax.lax.erf(x32 * (1.0 / math.sqrt(2.0))))
    pdf = jnp.exp(-0.5 * jnp.square(x32)) * (1.0 / math.sqrt(2.0 * math.pi))
    return ((d_y.astype(jnp.float32) * (cdf + x32 * pdf)).astype(x.dtype),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)


def embed(cfg: GPTConfig, params: Params, tokens: jax.Array, positions: jax.Array | None = None,
          dtype=jnp.float32) -> jax.Array:
    """Token plus position embeddings -> [B, T, d] (x mup_embedding_multiplier under muP)."""
    if positions is None:
        positions = jnp.arange(tokens.shape[-1])[None, :]
    x = token_embedding(params, tokens) + jnp.take(params["wpe"], positions, axis=0)
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


# Attention kernels (``attention=`` of block / run_blocks / forward):
#   "xla"    causal attention written as batched matmuls, any backend and dtype, with a backward pass that keeps only
#            the probabilities in the compute dtype (see xla_causal_attention);
#   "cudnn"  cuDNN's fused flash-attention kernel through ``jax.nn.dot_product_attention(implementation="cudnn")``:
#            NVIDIA GPUs, bfloat16/float16 only; the [B, H, T, T] scores are never in memory.
# runtime/execution/placement.resolve_attention picks one for a run.
ATTENTION_KERNELS = ("xla", "cudnn")


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float, kernel: str = "xla") -> jax.Array:
    """Causal self-attention on [B, T, H, D] -> [B, T, H, D] with the chosen kernel (see ATTENTION_KERNELS).

    Raises ValueError for an unknown kernel; the cudnn kernel raises what ``jax.nn.dot_product_attention`` raises on
    a backend, dtype or shape it does not support (placement.resolve_attention probes for that before a run)."""
    if kernel == "cudnn":
        return jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True, implementation="cudnn")
    if kernel != "xla":
        raise ValueError(f"unknown attention kernel '{kernel}'; use one of {', '.join(ATTENTION_KERNELS)}")
    q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))  # [B, H, T, D]
    return jnp.swapaxes(xla_causal_attention(q, k, v, scale), 1, 2)


def _causal_scores(q: jax.Array, k: jax.Array, scale: float) -> jax.Array:
    """float32 causal scores q.k x scale, [B, H, T, S]: future positions get -0.7 x float32 max (as
    ``jax.nn.dot_product_attention``'s XLA path does), so their probability is exactly 0."""
    logits = jnp.einsum("bhtd,bhsd->bhts", q, k, preferred_element_type=jnp.float32)
    logits = logits * jnp.asarray(scale, jnp.float32)
    T, S = logits.shape[-2:]
    causal = jnp.tril(jnp.ones((T, S), bool))
    return jnp.where(causal, logits, jnp.asarray(-0.7 * jnp.finfo(jnp.float32).max, jnp.float32))


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def xla_causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float) -> jax.Array:
    """Causal attention on heads-first [B, H, T, D] -> [B, H, T, D] in plain batched matmuls.

    The arithmetic of ``jax.nn.dot_product_attention(..., is_causal=True)``'s XLA implementation (float32 scores and
    softmax, probabilities cast to v's dtype before the value matmul), with two differences that are about cost only:
    heads ahead of positions (the library runs the matmuls under a grouped-query vmap whose layout makes XLA:CPU
    copy the scores into another layout in both passes), and a backward pass in the manner of flash attention: it
    keeps q, k, v and the float32 log-sum-exp of each query's scores ([B, H, T]) and recomputes the probabilities
    from them, where autodiff keeps the [B, H, T, T] float32 scores and probabilities (at 1.3B, 8 x 2048 tokens
    96 GiB over 24 layers) for the price of one more q.k matmul. Gradients equal autodiff's to float32 rounding
    (tests/test_model.py).
    """
    return _xla_attention_fwd(q, k, v, scale)[0]


def _xla_attention_fwd(q, k, v, scale):
    scores = _causal_scores(q, k, scale)
    lse = jax.nn.logsumexp(scores, axis=-1)
    probs = jnp.exp(scores - lse[..., None]).astype(v.dtype)
    return jnp.einsum("bhts,bhsd->bhtd", probs, v), (q, k, v, lse)


def _xla_attention_bwd(scale, saved, d_out):
    q, k, v, lse = saved
    p32 = jnp.exp(_causal_scores(q, k, scale) - lse[..., None])
    d_v = jnp.einsum("bhts,bhtd->bhsd", p32.astype(v.dtype), d_out)
    d_probs = jnp.einsum("bhtd,bhsd->bhts", d_out, v, preferred_element_type=jnp.float32)
    # softmax backward: dS = P * (dP - sum_s P dP), then the score scale
    d_scores = p32 * (d_probs - jnp.sum(p32 * d_probs, axis=-1, keepdims=True)) * jnp.asarray(scale, jnp.float32)
    d_scores = d_scores.astype(q.dtype)
    d_q = jnp.einsum("bhts,bhsd->bhtd", d_scores, k)
    d_k = jnp.einsum("bhts,bhtd->bhsd", d_scores, q)
    return d_q, d_k, d_v


xla_causal_attention.defvjp(_xla_attention_fwd, _xla_attention_bwd)


def block(cfg: GPTConfig, p: Params, x: jax.Array, *, kv_cache: tuple | None = None, cache_index=None,
          key_mask: jax.Array | None = None, attention: str = "xla"):
    """One pre-LN transformer block on [B, T, d]; ``p`` is one layer's slice of ``params['blocks']``.

    Without a cache: causal self-attention over the T positions with the ``attention`` kernel (ATTENTION_KERNELS),
    returns x.
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
        a = causal_attention(q, k, v, scale, attention)
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
    h = gelu(h)
    h = h @ p["mlp"]["c_proj"]["kernel"].astype(dtype) + p["mlp"]["c_proj"]["bias"].astype(dtype)
    x = x + h
    return x if kv_cache is None else (x, new_cache)


def head(cfg: GPTConfig, params: Params, x: jax.Array) -> jax.Array:
    """Final LayerNorm and the tied unembedding -> float32 logits [B, T, V] (x 1/m_w under muP)."""
    return unembed(cfg, params, layer_norm(x, params["ln_f"], cfg.layer_norm_eps))


def unembed(cfg: GPTConfig, params: Params, h: jax.Array) -> jax.Array:
    """Normalised hidden states [..., d] -> float32 logits [..., V] through the tied embedding (x 1/m_w under muP),
    stored ``wte`` [V, d] or ``wte_t`` [d, V] (token_embedding); at batch 1 XLA:CPU streams the [d, V] layout about
    twice as fast (a matrix-vector product reads long rows best)."""
    if "wte_t" in params:
        logits = jnp.einsum("...d,dv->...v", h, params["wte_t"].astype(h.dtype), preferred_element_type=jnp.float32)
    else:
        logits = jnp.einsum("...d,vd->...v", h, params["wte"].astype(h.dtype), preferred_element_type=jnp.float32)
    if cfg.mup:
        logits = logits / cfg.width_multiplier
    return logits


# Remat (rematerialisation, activation checkpointing) policies for the blocks' backward pass, cheapest first in
# compute and dearest in memory (MaxText's remat_policy, in JAX's checkpoint-policy terms):
#   "none"  keep every activation the backward pass needs;
#   "dots"  keep the outputs of the weight matmuls (QKV, attention output projection, both MLP matmuls), recompute
#           the rest (LayerNorms, GELU, attention) -- jax.checkpoint_policies.dots_with_no_batch_dims_saveable;
#   "full"  keep only each block's input and recompute the whole block (one more forward pass, ~1/3 more FLOPs).
REMAT_POLICIES = ("none", "dots", "full")


def remat_policy(remat) -> str:
    """A REMAT_POLICIES name from a policy name or a bool (True = "full", False = "none"). Raises ValueError."""
    if remat is True or remat is False:
        return "full" if remat else "none"
    if remat not in REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {remat!r}; use one of {', '.join(REMAT_POLICIES)} (or true/false)")
    return remat


def rematerialised(fn, remat):
    """``fn`` wrapped for the remat policy (a REMAT_POLICIES name or a bool; see remat_policy)."""
    policy = remat_policy(remat)
    if policy == "none":
        return fn
    if policy == "dots":
        return jax.checkpoint(fn, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
    return jax.checkpoint(fn)


def run_blocks(cfg: GPTConfig, blocks: Params, x: jax.Array, remat="none", attention: str = "xla") -> jax.Array:
    """Apply a stack of blocks (leading axis = layers) in order with ``lax.scan``: one compiled block body, wrapped
    for the ``remat`` policy (REMAT_POLICIES, or a bool), attention with the ``attention`` kernel."""
    body = rematerialised(lambda h, p: (block(cfg, p, h, attention=attention), None), remat)
    x, _ = jax.lax.scan(body, x, blocks)
    return x


def forward(cfg: GPTConfig, params: Params, tokens: jax.Array, dtype=jnp.float32, remat="none",
            attention: str = "xla") -> jax.Array:
    """Logits [B, T, V] (float32) for tokens [B, T]: the whole model on one device group."""
    x = embed(cfg, params, tokens, dtype=dtype)
    x = run_blocks(cfg, params["blocks"], x, remat=remat, attention=attention)
    return head(cfg, params, x)


def nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Next-token negative log-likelihood in nats per position: logits [..., V], targets [...] -> float32 [...]."""
    logits = logits.astype(jnp.float32)
    return jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]


def cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean next-token cross-entropy in nats over the positions where ``mask`` is true (all if None)."""
    per_position = nll(logits, targets)
    if mask is None:
        return per_position.mean()
    mask = mask.astype(jnp.float32)
    return (per_position * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def _row_sum(p: jax.Array) -> jax.Array:
    """Sum over the last axis of [N, V]. XLA:CPU runs a row reduction on one thread but a matrix-vector product on
    every core (measured on a 2-core Xeon, [1024, 50257] float32: 59 ms against ~20 ms), so CPU takes the product;
    other backends reduce."""
    ones = jnp.ones((p.shape[-1],), p.dtype)
    return jax.lax.platform_dependent(p, cpu=lambda p: p @ ones, default=lambda p: p.sum(-1))


@jax.custom_vjp
def linear_cross_entropy(h: jax.Array, w: jax.Array, targets: jax.Array, keep: jax.Array) -> jax.Array:
    """Summed cross-entropy (nats, float32 scalar) of the logits h w^T against ``targets``, weighted by ``keep``:
    h [N, d] hidden states, w [V, d] the unembedding (in h's dtype), targets [N] int, keep [N] float32 (0 drops a
    position). The logits are float32.

    The tied head and the loss as one differentiable piece, because autodiff of ``nll(logits)`` builds the logits'
    gradient from a scatter (the target term) plus a product (the softmax term), and XLA:CPU then copies that
    [N, V] gradient into the transposed layout its matmul library wants for the weight gradient: 75 ms of a 650 ms
    `tiny` step at 8 x 128 tokens on a 2-core Xeon. Here the gradient is one elementwise expression of the saved
    exponentials and a one-hot, and the backward is two matmuls. Gradients equal autodiff's to float32 rounding
    (tests/test_model.py); a bfloat16 h gives bfloat16 matmul operands in both passes with float32 accumulation.
    """
    return _linear_cross_entropy_fwd(h, w, targets, keep)[0]


def _linear_cross_entropy_fwd(h, w, targets, keep):
    logits = jnp.einsum("nd,vd->nv", h, w, preferred_element_type=jnp.float32)
    top = jax.lax.stop_gradient(logits.max(-1))
    unnormalised = jnp.exp(logits - top[:, None])  # the softmax's numerators, kept for the backward pass
    total = _row_sum(unnormalised)
    picked = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    loss = ((jnp.log(total) + top - picked) * keep).sum()
    return loss, (h, w, targets, keep, unnormalised, total)


def _linear_cross_entropy_bwd(saved, d_loss):
    h, w, targets, keep, unnormalised, total = saved
    weight = d_loss * keep  # [N]
    # d loss / d logits = softmax - one_hot(target), per position times its weight
    d_logits = (unnormalised * (weight / total)[:, None]
                - jax.nn.one_hot(targets, w.shape[0], dtype=jnp.float32) * weight[:, None]).astype(h.dtype)
    d_h = jnp.einsum("nv,vd->nd", d_logits, w, preferred_element_type=jnp.float32).astype(h.dtype)
    d_w = jnp.einsum("nv,nd->vd", d_logits, h, preferred_element_type=jnp.float32).astype(w.dtype)
    return d_h, d_w, None, None


linear_cross_entropy.defvjp(_linear_cross_entropy_fwd, _linear_cross_entropy_bwd)


# Tokens (over the whole batch) whose float32 logits one chunk of the loss holds: 4096 x 50257 x 4 bytes = 0.8 GB per
# logits-sized buffer, where the whole 1.3B batch of 8 x 2048 would hold 3.3 GB in each of the logits, their
# exponentials and their gradient. 4096 rows still keep the [4096, d] x [d, 50257] unembedding matmul large enough
# to fill a GPU. Batches of at most this many tokens (every CPU demo and benchmark shape) run in one piece.
LOSS_CHUNK_TOKENS = 4096


def head_nll_sum(cfg: GPTConfig, params: Params, x: jax.Array, targets: jax.Array, mask: jax.Array | None = None,
                 *, chunk_tokens: int = LOSS_CHUNK_TOKENS) -> jax.Array:
    """Summed next-token loss (nats, float32 scalar) of final hidden states x [B, T, d] against targets [B, T] over
    the positions ``mask`` [B, T] keeps (all if None): final LayerNorm, tied unembedding and cross-entropy
    (linear_cross_entropy).

    Above ``chunk_tokens`` tokens the positions are cut into n = ceil(B T / chunk_tokens) chunks along T (rows stay
    whole, so a batch sharded by rows stays sharded) and a ``lax.scan`` computes one chunk's logits at a time under
    ``jax.checkpoint``: the backward pass recomputes each chunk's logits, so float32 logits and their gradient are
    never whole in memory. Equal to the unchunked ``nll(head(...))`` sum to float32 rounding (tests/test_model.py).
    """
    B, T, d = x.shape
    h = layer_norm(x, params["ln_f"], cfg.layer_norm_eps)
    if cfg.mup:
        h = h / cfg.width_multiplier  # the logits' 1/m_w (unembed), applied to the smaller operand
    keep = jnp.ones((B, T), jnp.float32) if mask is None else mask.astype(jnp.float32)

    def piece_sum(wte, h_c, t_c, k_c):
        return linear_cross_entropy(h_c.reshape(-1, d), wte.astype(h_c.dtype), t_c.reshape(-1), k_c.reshape(-1))

    n = -(-B * T // max(1, chunk_tokens))
    if n <= 1:
        return piece_sum(params["wte"], h, targets, keep)
    chunk = -(-T // n)
    pad = n * chunk - T  # padded positions are masked out
    if pad:
        h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
        targets, keep = (jnp.pad(a, ((0, 0), (0, pad))) for a in (targets, keep))
    # [B, n * chunk, ...] -> [n, B, chunk, ...]
    pieces = [a.reshape(B, n, chunk, *a.shape[2:]).swapaxes(0, 1) for a in (h, targets, keep)]
    chunk_sum = jax.checkpoint(piece_sum)

    def body(total, piece):
        return total + chunk_sum(params["wte"], *piece), None

    total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), tuple(pieces))
    return total


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
    """An empty KV cache: keys and values [L, B, S, H, D]."""
    shape = (cfg.n_layers, batch, length, cfg.n_heads, cfg.d_head)
    return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)


def forward_cached(cfg: GPTConfig, params: Params, tokens: jax.Array, positions: jax.Array, cache: tuple,
                   cache_index, key_mask: jax.Array | None = None, dtype=jnp.float32, last_only: bool = False):
    """Logits for ``tokens`` [B, T] at ``positions`` [B, T], reading and extending the KV cache at ``cache_index``.
    Returns (logits [B, T, V], or [B, 1, V] for the last position only with ``last_only``; new cache). Used by
    model/generate.py for prefill (T = prompt) and decode (T = 1).

    Two layer layouts: ``params["blocks"]`` stacked on a leading layers axis with ``cache`` = (k, v) [L, B, S, H, D]
    runs the layers in a ``lax.scan``; ``params["blocks"]`` a list of per-layer dicts with ``cache`` = (list of L k,
    list of L v) runs them unrolled, each layer reading its own arrays (XLA:CPU copies a layer's weights out of a
    stacked array before its matmuls, scanned or unrolled, which at batch 1 costs more than the matmuls)."""
    x = embed(cfg, params, tokens, positions, dtype=dtype)

    def layer(h, p, ck, cv):
        return block(cfg, p, h, kv_cache=(ck, cv), cache_index=cache_index, key_mask=key_mask)

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

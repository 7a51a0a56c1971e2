"""Causal self-attention kernels, with grouped K/V heads (GQA, MQA) and a KV-cache variant for decoding.

Shapes: queries [B, T, H, D], keys and values [B, S, K, D] with K dividing H; query head h reads K/V head h // (H/K)
(contiguous groups, as transformers' ``repeat_kv`` and ``jax.nn.dot_product_attention`` pair them). K = H is plain
multi-head attention and runs exactly the code it always ran. The KV cache has its own layout (cached_attention).

Kernels (``attention=`` of gpt.block / run_blocks / forward):
  "xla"    causal attention written as batched matmuls, any backend and dtype, with a backward pass that keeps only
           the probabilities' log-sum-exp (see xla_causal_attention);
  "cudnn"  cuDNN's fused flash-attention kernel through ``jax.nn.dot_product_attention(implementation="cudnn")``:
           NVIDIA GPUs, bfloat16/float16 only; the [B, H, T, T] scores are never in memory; grouped K/V heads are
           passed as they are (the library runs GQA natively).
runtime/execution/placement.resolve_attention picks one for a run.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

ATTENTION_KERNELS = ("xla", "cudnn")


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float, kernel: str = "xla") -> jax.Array:
    """Causal self-attention: q [B, T, H, D], k and v [B, T, K, D] (K divides H) -> [B, T, H, D], with the chosen
    kernel (see ATTENTION_KERNELS).

    Raises ValueError for an unknown kernel; the cudnn kernel raises what ``jax.nn.dot_product_attention`` raises on
    a backend, dtype or shape it does not support (placement.resolve_attention probes for that before a run)."""
    if kernel == "cudnn":
        return jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True, implementation="cudnn")
    if kernel != "xla":
        raise ValueError(f"unknown attention kernel '{kernel}'; use one of {', '.join(ATTENTION_KERNELS)}")
    B, T, H, D = q.shape
    K = k.shape[2]
    if K == H:
        q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))  # [B, H, T, D]
        return jnp.swapaxes(xla_causal_attention(q, k, v, scale, 1), 1, 2)
    # Grouped: the G = H/K query heads of one K/V head become G x T rows of one attention problem
    # ([B, K, G T, D] against [B, K, T, D]), so K and V are never repeated.
    G = H // K
    qg = q.reshape(B, T, K, G, D).transpose(0, 2, 3, 1, 4).reshape(B, K, G * T, D)
    k, v = (jnp.swapaxes(t, 1, 2) for t in (k, v))
    out = xla_causal_attention(qg, k, v, scale, G)
    return out.reshape(B, K, G, T, D).transpose(0, 3, 1, 2, 4).reshape(B, T, H, D)


def _causal_scores(q: jax.Array, k: jax.Array, scale: float, groups: int) -> jax.Array:
    """float32 causal scores q.k x scale, [B, H, R, S] for R = groups x T query rows (row g T + t is position t):
    future positions get -0.7 x float32 max (as ``jax.nn.dot_product_attention``'s XLA path does), so their
    probability is exactly 0."""
    logits = jnp.einsum("bhtd,bhsd->bhts", q, k, preferred_element_type=jnp.float32)
    logits = logits * jnp.asarray(scale, jnp.float32)
    R, S = logits.shape[-2:]
    if groups == 1:
        causal = jnp.tril(jnp.ones((R, S), bool))
    else:
        causal = (jnp.arange(R) % (R // groups))[:, None] >= jnp.arange(S)[None, :]
    return jnp.where(causal, logits, jnp.asarray(-0.7 * jnp.finfo(jnp.float32).max, jnp.float32))


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def xla_causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float, groups: int) -> jax.Array:
    """Causal attention on heads-first q [B, H, R, D], k and v [B, H, S, D] -> [B, H, R, D] in plain batched matmuls;
    R = groups x S query rows (``groups`` query heads stacked on one K/V head; 1 for multi-head attention).

    The arithmetic of ``jax.nn.dot_product_attention(..., is_causal=True)``'s XLA implementation (float32 scores and
    softmax, probabilities cast to v's dtype before the value matmul), with two differences that are about cost only:
    heads ahead of positions (the library runs the matmuls under a grouped-query vmap whose layout makes XLA:CPU
    copy the scores into another layout in both passes), and a backward pass in the manner of flash attention: it
    keeps q, k, v and the float32 log-sum-exp of each query's scores ([B, H, R]) and recomputes the probabilities
    from them, where autodiff keeps the [B, H, R, S] float32 scores and probabilities (at 1.3B, 8 x 2048 tokens
    96 GiB over 24 layers) for the price of one more q.k matmul. Gradients equal autodiff's to float32 rounding
    (tests/test_model.py).
    """
    return _xla_attention_fwd(q, k, v, scale, groups)[0]


def _xla_attention_fwd(q, k, v, scale, groups):
    scores = _causal_scores(q, k, scale, groups)
    lse = jax.nn.logsumexp(scores, axis=-1)
    probs = jnp.exp(scores - lse[..., None]).astype(v.dtype)
    return jnp.einsum("bhts,bhsd->bhtd", probs, v), (q, k, v, lse)


def _xla_attention_bwd(scale, groups, saved, d_out):
    q, k, v, lse = saved
    p32 = jnp.exp(_causal_scores(q, k, scale, groups) - lse[..., None])
    d_v = jnp.einsum("bhts,bhtd->bhsd", p32.astype(v.dtype), d_out)
    d_probs = jnp.einsum("bhtd,bhsd->bhts", d_out, v, preferred_element_type=jnp.float32)
    # softmax backward: dS = P * (dP - sum_s P dP), then the score scale
    d_scores = p32 * (d_probs - jnp.sum(p32 * d_probs, axis=-1, keepdims=True)) * jnp.asarray(scale, jnp.float32)
    d_scores = d_scores.astype(q.dtype)
    d_q = jnp.einsum("bhts,bhsd->bhtd", d_scores, k)
    d_k = jnp.einsum("bhts,bhtd->bhsd", d_scores, q)
    return d_q, d_k, d_v


xla_causal_attention.defvjp(_xla_attention_fwd, _xla_attention_bwd)


def cached_attention(q: jax.Array, k: jax.Array, v: jax.Array, cache: tuple, cache_index, key_mask, scale: float):
    """Attention of T new queries q [B, T, H, D] through a KV cache: the new keys/values k, v [B, T, K, D] are
    written into ``cache`` = (keys [B K, D, S], values [B K, S, D]; row b K + j is row b's K/V head j) at slot
    ``cache_index`` (a scalar, the same slot for every row), and each query attends to the slots ``<= cache_index +
    t`` that ``key_mask`` ([B, S] bool, False for padding; None = all) allows. Returns (output [B, T, H, D], new
    cache). K/V heads stay grouped (K of them).

    The cache is stored as the two batched matmuls read it, so that XLA:CPU updates it in place and reads it without
    a copy: one batch axis (XLA flattens batch axes, and a cache [B, K, ...] reshaped for the matmul got its update
    fused twice, once per reader, with a copy of the whole cache each), keys position-minor for q.k and values
    position-major for p.v (its canonical [batch, contracted, kept] right-hand side). Stored [B, S, K, D], XLA:CPU
    transposed both before every decode step's matmuls (111M, batch 1: 20 copies a step, ~8% of the step). The
    arithmetic is ``jax.nn.dot_product_attention``'s XLA path: float32 scores and softmax, masked scores at -0.7 x
    float32 max, probabilities cast to the values' dtype."""
    ck, cv = cache
    B, T, H, D = q.shape
    K = k.shape[2]
    G, S = H // K, cv.shape[1]
    ck = jax.lax.dynamic_update_slice_in_dim(ck, k.transpose(0, 2, 3, 1).reshape(B * K, D, T).astype(ck.dtype),
                                             cache_index, axis=2)
    cv = jax.lax.dynamic_update_slice_in_dim(cv, v.transpose(0, 2, 1, 3).reshape(B * K, T, D).astype(cv.dtype),
                                             cache_index, axis=1)
    # The G query heads of one K/V head become G x T rows (row g T + t is position t), so K/V are never repeated.
    qg = q.reshape(B, T, K, G, D).transpose(0, 2, 3, 1, 4).reshape(B * K, G * T, D)
    scores = jnp.einsum("nrd,nds->nrs", qg, ck.astype(q.dtype), preferred_element_type=jnp.float32)
    scores = scores.reshape(B, K, G * T, S) * jnp.asarray(scale, jnp.float32)
    mask = (jnp.arange(S)[None, :] <= (cache_index + jnp.arange(G * T) % T)[:, None])[None, None]  # [1, 1, R, S]
    if key_mask is not None:
        mask = mask & key_mask[:, None, None, :]
    scores = jnp.where(mask, scores, jnp.asarray(-0.7 * jnp.finfo(jnp.float32).max, jnp.float32))
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype).reshape(B * K, G * T, S)
    out = jnp.einsum("nrs,nsd->nrd", probs, cv.astype(q.dtype))
    return out.reshape(B, K, G, T, D).transpose(0, 3, 1, 2, 4).reshape(B, T, H, D), (ck, cv)

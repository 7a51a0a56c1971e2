"""The loss beside the model: next-token cross-entropy, and the LM head fused with it as custom-VJP pieces that run
in chunks of tokens so that the [tokens, vocabulary] float32 logits are never whole in memory.

``head_nll_sum`` is what every execution mode calls on the final hidden states: final norm, the head (the tied token
embedding, or an untied ``lm_head`` matrix, plus a logit bias when the model has one) and the summed loss.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from model.config import GPTConfig
from model.layers import norm

Params = dict[str, Any]


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


def _lce_forward(h, w, b, targets, keep):
    """Summed loss and what the backward pass keeps; ``b`` [V] float32 or None."""
    logits = jnp.einsum("nd,vd->nv", h, w, preferred_element_type=jnp.float32)
    if b is not None:
        logits = logits + b
    top = jax.lax.stop_gradient(logits.max(-1))
    unnormalised = jnp.exp(logits - top[:, None])  # the softmax's numerators, kept for the backward pass
    total = _row_sum(unnormalised)
    picked = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    loss = ((jnp.log(total) + top - picked) * keep).sum()
    return loss, (h, w, targets, keep, unnormalised, total)


def _lce_backward(saved, d_loss):
    """(d_h, d_w, float32 d_logits) from the saved forward values."""
    h, w, targets, keep, unnormalised, total = saved
    weight = d_loss * keep  # [N]
    # d loss / d logits = softmax - one_hot(target), per position times its weight
    d_logits32 = (unnormalised * (weight / total)[:, None]
                  - jax.nn.one_hot(targets, w.shape[0], dtype=jnp.float32) * weight[:, None])
    d_logits = d_logits32.astype(h.dtype)
    d_h = jnp.einsum("nv,vd->nd", d_logits, w, preferred_element_type=jnp.float32).astype(h.dtype)
    d_w = jnp.einsum("nv,nd->vd", d_logits, h, preferred_element_type=jnp.float32).astype(w.dtype)
    return d_h, d_w, d_logits32


@jax.custom_vjp
def linear_cross_entropy(h: jax.Array, w: jax.Array, targets: jax.Array, keep: jax.Array) -> jax.Array:
    """Summed cross-entropy (nats, float32 scalar) of the logits h w^T against ``targets``, weighted by ``keep``:
    h [N, d] hidden states, w [V, d] the unembedding (in h's dtype), targets [N] int, keep [N] float32 (0 drops a
    position). The logits are float32.

    The head and the loss as one differentiable piece, because autodiff of ``nll(logits)`` builds the logits'
    gradient from a scatter (the target term) plus a product (the softmax term), and XLA:CPU then copies that
    [N, V] gradient into the transposed layout its matmul library wants for the weight gradient: 75 ms of a 650 ms
    `tiny` step at 8 x 128 tokens on a 2-core Xeon. Here the gradient is one elementwise expression of the saved
    exponentials and a one-hot, and the backward is two matmuls. Gradients equal autodiff's to float32 rounding
    (tests/test_model.py); a bfloat16 h gives bfloat16 matmul operands in both passes with float32 accumulation.
    """
    return _lce_forward(h, w, None, targets, keep)[0]


def _linear_cross_entropy_fwd(h, w, targets, keep):
    return _lce_forward(h, w, None, targets, keep)


def _linear_cross_entropy_bwd(saved, d_loss):
    d_h, d_w, _ = _lce_backward(saved, d_loss)
    return d_h, d_w, None, None


linear_cross_entropy.defvjp(_linear_cross_entropy_fwd, _linear_cross_entropy_bwd)


@jax.custom_vjp
def linear_cross_entropy_with_bias(h: jax.Array, w: jax.Array, b: jax.Array, targets: jax.Array,
                                   keep: jax.Array) -> jax.Array:
    """``linear_cross_entropy`` of the logits h w^T + b, b [V] float32 (GPT-J's LM-head bias)."""
    return _lce_forward(h, w, b, targets, keep)[0]


def _lce_bias_fwd(h, w, b, targets, keep):
    return _lce_forward(h, w, b, targets, keep)


def _lce_bias_bwd(saved, d_loss):
    d_h, d_w, d_logits32 = _lce_backward(saved, d_loss)
    return d_h, d_w, d_logits32.sum(0), None, None


linear_cross_entropy_with_bias.defvjp(_lce_bias_fwd, _lce_bias_bwd)


def head_weight(cfg: GPTConfig, params: Params) -> jax.Array:
    """The unembedding [V, d]: the token embedding when tied, else the LM head's own matrix."""
    return params["wte"] if cfg.tied_embeddings else params["lm_head"]["weight"]


# Tokens (over the whole batch) whose float32 logits one chunk of the loss holds: 4096 x 50257 x 4 bytes = 0.8 GB per
# logits-sized buffer, where the whole 1.3B batch of 8 x 2048 would hold 3.3 GB in each of the logits, their
# exponentials and their gradient. 4096 rows still keep the [4096, d] x [d, 50257] unembedding matmul large enough
# to fill a GPU. Batches of at most this many tokens (every CPU demo and benchmark shape) run in one piece.
LOSS_CHUNK_TOKENS = 4096


def head_nll_sum(cfg: GPTConfig, params: Params, x: jax.Array, targets: jax.Array, mask: jax.Array | None = None,
                 *, chunk_tokens: int = LOSS_CHUNK_TOKENS) -> jax.Array:
    """Summed next-token loss (nats, float32 scalar) of final hidden states x [B, T, d] against targets [B, T] over
    the positions ``mask`` [B, T] keeps (all if None): final norm, the head (head_weight, and the LM-head bias when
    the model has one) and cross-entropy (linear_cross_entropy).

    Above ``chunk_tokens`` tokens the positions are cut into n = ceil(B T / chunk_tokens) chunks along T (rows stay
    whole, so a batch sharded by rows stays sharded) and a ``lax.scan`` computes one chunk's logits at a time under
    ``jax.checkpoint``: the backward pass recomputes each chunk's logits, so float32 logits and their gradient are
    never whole in memory. Equal to the unchunked ``nll(head(...))`` sum to float32 rounding (tests/test_model.py).
    """
    B, T, d = x.shape
    h = norm(cfg, x, params["ln_f"])
    if cfg.mup:
        h = h / cfg.width_multiplier  # the logits' 1/m_w (unembed), applied to the smaller operand
    keep = jnp.ones((B, T), jnp.float32) if mask is None else mask.astype(jnp.float32)
    weights = (head_weight(cfg, params),) + ((params["lm_head"]["bias"],) if cfg.lm_head_bias else ())

    def piece_sum(weights, h_c, t_c, k_c):
        h_c, t_c, k_c = h_c.reshape(-1, d), t_c.reshape(-1), k_c.reshape(-1)
        w = weights[0].astype(h_c.dtype)
        if len(weights) == 2:
            return linear_cross_entropy_with_bias(h_c, w, weights[1].astype(jnp.float32), t_c, k_c)
        return linear_cross_entropy(h_c, w, t_c, k_c)

    n = -(-B * T // max(1, chunk_tokens))
    if n <= 1:
        return piece_sum(weights, h, targets, keep)
    chunk = -(-T // n)
    pad = n * chunk - T  # padded positions are masked out
    if pad:
        h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
        targets, keep = (jnp.pad(a, ((0, 0), (0, pad))) for a in (targets, keep))
    # [B, n * chunk, ...] -> [n, B, chunk, ...]
    pieces = [a.reshape(B, n, chunk, *a.shape[2:]).swapaxes(0, 1) for a in (h, targets, keep)]
    chunk_sum = jax.checkpoint(piece_sum)

    def body(total, piece):
        return total + chunk_sum(weights, *piece), None

    total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), tuple(pieces))
    return total

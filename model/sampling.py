"""Choosing each next token from float logits [B, V]: greedy, or temperature sampling with top-k and top-p (nucleus)
filters, with the choice between them fixed when a decode program is built (``Sampler``, part of its compile key).

Every step is straight-line code over the vocabulary: no loop, no conditional, no sort of the V logits. On XLA:GPU a
``while``/``fori_loop`` iteration or a ``cond`` is driven from the host (one device-to-host copy and relaunch each),
which is what bounded batch-1 decoding there; on XLA:CPU a sort of the 50257 logits takes ~30 ms a row (2-core EPYC,
jax 0.10.2) where a decode step of ``small`` takes ~5.

Filters, in the usual order, each keeping ties at its cut-off together (as transformers' TopK/TopP warpers do):
- top-k: the ``top_k`` largest logits: ``lax.top_k`` over a fixed candidate count ``Sampler.top_k_cap`` (the next
  power of two >= top_k) gives the k-th largest value, and every logit >= it is kept;
- top-p: then the smallest set of what is left whose probability (renormalised over it) reaches ``top_p``: a token is
  kept when the probability of the tokens strictly better than it is below ``top_p``. With top-k on, the cut is read
  off the sorted candidates; without it, an exact radix select finds it (``nucleus_threshold``: three histogram
  passes over the logits' ordered bit patterns, 11 + 11 + 10 bits, no sort).

Drawing: one uniform number per row through the inverse of the kept tokens' cumulative distribution
(``inverse_cdf``), in two levels (blocks of 256 tokens, then tokens within the block) so that float32 sums of ~200
terms, not 50257, set each token's share. This draws from the same filtered distribution as ``jax.random.categorical``
over the filtered logits (tests/test_sampling.py checks the kept set and probabilities against a sort-based numpy
reference, and the draw's shares against them), but consumes the random stream differently, so a seed picks other
tokens than before this module existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

# Tokens per block of the two-level inverse CDF (inverse_cdf).
CDF_BLOCK = 256
# Radix-select digits, most significant first (32 bits of an ordered float32).
NUCLEUS_DIGITS = (11, 11, 10)
# Fixed-point scale of the probabilities summed by the radix select: integer sums are exact and independent of the
# order of addition (GPU scatter-adds are not ordered), and 2^30 x a total of 1 stays inside int32.
MASS_SCALE = 1 << 30
MIN_TOP_K_CAP = 16


@dataclass(frozen=True)
class Sampler:
    """What a decode program does with each step's logits, fixed when it is built: ``greedy`` (argmax), or sampling
    with a top-k filter over ``top_k_cap`` candidates (0: no top-k filter) and/or a top-p filter (``top_p``). The
    values themselves (temperature, k <= top_k_cap, p) stay traced: changing them within one Sampler never
    recompiles."""

    greedy: bool
    top_k_cap: int = 0
    top_p: bool = False


def sampler_for(temperature: float, top_k: int, top_p: float, vocab_size: int) -> Sampler:
    """The Sampler for these settings: greedy at temperature 0; a top-k filter when 0 < top_k < vocab_size (its cap
    the next power of two, at least MIN_TOP_K_CAP, at most the vocabulary); a top-p filter when top_p < 1."""
    if temperature == 0:
        return Sampler(greedy=True)
    cap = 0
    if 0 < top_k < vocab_size:
        cap = min(max(MIN_TOP_K_CAP, 1 << (top_k - 1).bit_length()), vocab_size)
    return Sampler(greedy=False, top_k_cap=cap, top_p=top_p < 1.0)


def pick(sampler: Sampler, logits: jax.Array, key: jax.Array, temperature, top_k, top_p) -> jax.Array:
    """One token id per row (int32 [B]) from float logits [B, V] (-inf: never chosen; at least one finite per row)."""
    logits = logits.astype(jnp.float32)
    if sampler.greedy:
        return greedy(logits)
    weights = filtered_weights(sampler, logits / temperature, top_k, top_p)
    return inverse_cdf(weights, jax.random.uniform(key, logits.shape[:1], jnp.float32))


def greedy(logits: jax.Array) -> jax.Array:
    """The first index of each row's maximum, int32 [B], from float logits [B, V], as ``jnp.argmax`` (a NaN counts
    as the maximum). On XLA:CPU as a max, then the least index holding it: argmax's paired (value, index) reduction
    is a scalar loop there, 190 us over 50,257 logits in ``small``'s decode step (jax.profiler, 2-core Xeon, jax
    0.10.2) against ~110 for the two plain reductions; the barrier keeps XLA from computing the logits' last
    elementwise steps (the vocabulary bar, the end-of-text hold) twice, once inside each reduction. Elsewhere
    ``jnp.argmax``, one reduction."""
    if jax.default_backend() != "cpu":
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = jax.lax.optimization_barrier(logits)
    top = jnp.max(logits, axis=-1, keepdims=True)  # NaN if any logit is NaN: then the first NaN is chosen
    hit = (logits == top) | jnp.isnan(logits)
    ids = jnp.arange(logits.shape[-1], dtype=jnp.int32)
    return jnp.min(jnp.where(hit, ids, logits.shape[-1]), axis=-1)


def filtered_weights(sampler: Sampler, scaled: jax.Array, top_k, top_p) -> jax.Array:
    """Unnormalised probabilities float32 [B, V] of the temperature-scaled logits ``scaled`` after the Sampler's
    filters: exp(logit - max) where kept, 0 elsewhere. ``top_k`` (int32, 1..top_k_cap) and ``top_p`` (float32 in
    (0, 1]) may be traced."""
    top = jnp.max(scaled, axis=-1, keepdims=True)
    weights = jnp.exp(scaled - top)
    if sampler.top_k_cap:
        values, _ = jax.lax.top_k(scaled, sampler.top_k_cap)  # [B, cap], descending
        k_index = jnp.broadcast_to(jnp.clip(top_k - 1, 0, sampler.top_k_cap - 1), top.shape).astype(jnp.int32)
        kth = jnp.take_along_axis(values, k_index, -1)  # [B, 1]: the k-th largest logit
        weights = jnp.where(scaled >= kth, weights, 0.0)
        if sampler.top_p:
            cut = _sorted_nucleus_cut(values, kth, top, jnp.sum(weights, -1, keepdims=True), top_p)
            weights = jnp.where(scaled >= cut, weights, 0.0)
    elif sampler.top_p:
        keys = ordered_bits(scaled)
        threshold = nucleus_threshold(keys, weights / jnp.sum(weights, -1, keepdims=True), top_p)
        weights = jnp.where(keys >= threshold[:, None], weights, 0.0)
    return weights


def _sorted_nucleus_cut(values, kth, top, total, top_p):
    """The smallest logit the nucleus keeps, from the top-k candidates ``values`` [B, cap] (descending): the last
    candidate whose better tokens hold less than ``top_p`` of the top-k set's mass ``total`` (whose exp(logit - top)
    sum is over the whole vocabulary, ties beyond the cap included). When every candidate passes, the cut falls in the
    tie group at the cap's end, which stays whole: the cut is then the k-th value itself."""
    probs = jnp.where(values >= kth, jnp.exp(values - top), 0.0) / total
    before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly before each candidate in sorted order
    cut = jnp.min(jnp.where(before < top_p, values, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(top_p >= 1.0, -jnp.inf, cut)  # p = 1 keeps all, whatever the rounding of the sums


def filter_logits(logits: jax.Array, top_k, top_p) -> jax.Array:
    """Top-k then top-p filtering of float logits [B, V]: what the filters drop becomes -inf, the rest is unchanged.
    ``top_k`` 0 and ``top_p`` 1 switch a filter off; both may be traced. The same filters as a decode step's, for
    inspection and tests: with both traced it takes all V logits as top-k candidates (a full sort), which the decode
    step avoids by fixing the Sampler when its program is built."""
    logits = logits.astype(jnp.float32)
    V = logits.shape[-1]
    k = jnp.asarray(top_k, jnp.int32)
    kept = filtered_weights(Sampler(False, V, True), logits, jnp.where(k > 0, k, V), top_p)
    return jnp.where(kept > 0, logits, -jnp.inf)


def ordered_bits(x: jax.Array) -> jax.Array:
    """float32 -> uint32 with the same order (flip the sign bit of positives, all bits of negatives)."""
    i = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    return jnp.where(i >> 31 == 0, i | jnp.uint32(0x80000000), ~i)


def nucleus_threshold(keys: jax.Array, probs: jax.Array, top_p) -> jax.Array:
    """Per row, the largest uint32 t with probability(keys >= t) >= top_p: keys uint32 [B, V] (``ordered_bits``),
    probs float32 [B, V] summing to 1. Returns uint32 [B].

    Radix select: for each digit of NUCLEUS_DIGITS, most significant first, a histogram of the mass of the tokens
    that share the digits found so far (fixed-point int32, MASS_SCALE) by that digit, then the largest digit whose
    mass at or above it, plus the mass already above the prefix, reaches top_p. Three passes, no sort, exact in the
    fixed-point masses."""
    B = keys.shape[0]
    mass = jnp.round(probs * MASS_SCALE).astype(jnp.int32)
    target = jnp.ceil(jnp.asarray(top_p, jnp.float32) * MASS_SCALE).astype(jnp.int32)
    rows = jnp.arange(B)[:, None]
    prefix = jnp.zeros((B,), jnp.uint32)
    above = jnp.zeros((B,), jnp.int32)  # mass of the tokens whose found digits are larger than the prefix's
    shift = 32
    for bits in NUCLEUS_DIGITS:
        top_bits, shift = 32 - shift, shift - bits
        digit = ((keys >> shift) & ((1 << bits) - 1)).astype(jnp.int32)
        same = (keys >> (shift + bits)) == (prefix >> (shift + bits))[:, None] if top_bits else True
        hist = jnp.zeros((B, 1 << bits), jnp.int32).at[rows, digit].add(jnp.where(same, mass, 0))
        at_or_above = jnp.cumsum(hist[:, ::-1], axis=-1)[:, ::-1] + above[:, None]
        d = jnp.maximum(jnp.sum(at_or_above >= target, axis=-1) - 1, 0)
        above = jnp.take_along_axis(at_or_above - hist, d[:, None], -1)[:, 0]  # now also the digits above d
        prefix = prefix | (d.astype(jnp.uint32) << shift)
    return prefix


def inverse_cdf(weights: jax.Array, u: jax.Array) -> jax.Array:
    """The token (int32 [B]) at fraction ``u`` (float32 [B] in [0, 1)) of each row's cumulative distribution of
    ``weights`` [B, V] (>= 0, some positive); a token with weight 0 is never returned. Two levels: the block of
    CDF_BLOCK tokens, then the token inside it."""
    B, V = weights.shape
    nb = -(-V // CDF_BLOCK)
    blocks = jnp.pad(weights, ((0, 0), (0, nb * CDF_BLOCK - V))).reshape(B, nb, CDF_BLOCK)
    sums = blocks.sum(-1)
    cum = jnp.cumsum(sums, axis=-1)
    target = u * cum[:, -1]
    j = jnp.minimum(jnp.sum(cum <= target[:, None], axis=-1), _last_positive(sums))
    rest = target - jnp.where(j > 0, jnp.take_along_axis(cum, jnp.maximum(j - 1, 0)[:, None], -1)[:, 0], 0.0)
    inside = jnp.take_along_axis(blocks, j[:, None, None], axis=1)[:, 0]  # [B, CDF_BLOCK]
    i = jnp.minimum(jnp.sum(jnp.cumsum(inside, axis=-1) <= rest[:, None], axis=-1), _last_positive(inside))
    return (j * CDF_BLOCK + i).astype(jnp.int32)


def _last_positive(w: jax.Array) -> jax.Array:
    """Index of the last positive entry of each row of w [B, n] (0 if none)."""
    n = w.shape[-1]
    return n - 1 - jnp.argmax(w[:, ::-1] > 0, axis=-1)

"""The decode step's sampler (model/sampling.py) draws from exactly the filtered distribution a sort-based reference
defines: same kept set, same probabilities, and a draw that realises them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model import sampling as S


def reference(logits: np.ndarray, top_k: int, top_p: float) -> np.ndarray:
    """Filtered probabilities of one row, in float64, by sorting (as transformers' TopK and TopP warpers define them):
    keep logits >= the k-th largest; then keep a token when the probability (over what top-k kept) of the tokens
    strictly better than it is below top_p; ties at a cut stay together."""
    x = logits.astype(np.float64)
    keep = np.ones(x.shape, bool)
    if top_k:
        keep &= x >= np.sort(x)[::-1][top_k - 1]
    if top_p < 1:
        probs = np.where(keep, np.exp(x - x.max()), 0.0)
        probs /= probs.sum()
        keep &= _strictly_greater(x, probs) < top_p
    w = np.where(keep, np.exp(x - x.max()), 0.0)
    return w / w.sum()


def _strictly_greater(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """For each token, the probability of the tokens whose logit is strictly larger."""
    order = np.argsort(-x, kind="stable")
    xs, ps = x[order], probs[order]
    before = np.cumsum(ps) - ps  # mass of everything sorted ahead, ties included
    first = np.searchsorted(-xs, -xs, side="left")  # index of the first member of each tie group
    out = np.empty_like(x)
    out[order] = before[first]
    return out


def _logits(rng, rows: int, vocab: int, ties: bool) -> np.ndarray:
    x = rng.standard_normal((rows, vocab)) * 2.0
    return (np.round(x * 2) / 2 if ties else x).astype(np.float32)  # rounded: many exact ties at every cut


def _safe_p(x: np.ndarray, top_k: int, p: float) -> float:
    """p moved off any cut point by >= 1e-4, so float32 and float64 sums agree on the kept set."""
    keep = np.ones(x.shape, bool) if not top_k else x >= np.sort(x)[::-1][top_k - 1]
    probs = np.where(keep, np.exp(x.astype(np.float64) - x.max()), 0.0)
    probs /= probs.sum()
    cuts = np.unique(_strictly_greater(x.astype(np.float64), probs))
    while np.min(np.abs(cuts - p)) < 1e-4:
        p -= 2e-4
    return p


@pytest.mark.parametrize("top_k,top_p,ties", [(0, 1.0, False), (5, 1.0, False), (40, 1.0, True), (0, 0.9, False),
                                              (0, 0.5, True), (30, 0.8, False), (17, 0.95, True), (1, 0.3, False),
                                              (600, 0.999, True)])
def test_filtered_probabilities_match_the_sort_reference(top_k, top_p, ties):
    rng = np.random.default_rng(top_k * 7 + int(top_p * 100))
    logits = _logits(rng, 4, 1000, ties)
    sampler = S.sampler_for(1.0, top_k, top_p, 1000)
    ps = [_safe_p(row, top_k, top_p) if top_p < 1 else 1.0 for row in logits]
    for row, p in zip(logits, ps):
        w = np.asarray(jax.jit(S.filtered_weights, static_argnums=0)(sampler, jnp.asarray(row[None]),
                                                                       jnp.int32(top_k), jnp.float32(p)))[0]
        ref = reference(row, top_k, p)
        np.testing.assert_array_equal(w > 0, ref > 0)  # the same kept set
        np.testing.assert_allclose(w / w.sum(), ref, atol=1e-6)  # the same probabilities


def test_filter_logits_with_traced_settings_matches_the_reference():
    """``filter_logits`` (traced k and p, one program for all settings) keeps what the reference keeps."""
    rng = np.random.default_rng(3)
    logits = _logits(rng, 3, 777, True)
    f = jax.jit(S.filter_logits)
    for k, p in ((0, 0.7), (10, 1.0), (64, 0.6), (3, 0.99)):
        p = min(_safe_p(row, k, p) for row in logits) if p < 1 else p
        kept = np.isfinite(np.asarray(f(jnp.asarray(logits), jnp.int32(k), jnp.float32(p))))
        for row, got in zip(logits, kept):
            np.testing.assert_array_equal(got, reference(row, k, p) > 0)


@pytest.mark.slow
def test_inverse_cdf_realises_the_weights():
    """A fine, even grid of u through inverse_cdf lands on each token in proportion to its weight (to 1/M), never on
    a zero weight; across block boundaries (V not a multiple of the 256-token block) and with empty blocks."""
    rng = np.random.default_rng(0)
    V, M = 50257, 1 << 20
    w = rng.exponential(size=V) * (rng.random(V) < 0.3)
    w[1000:3000] = 0.0  # whole empty blocks
    w[-1] = 5.0  # the last, partial block
    u = (np.arange(M) + 0.5) / M
    picks = np.asarray(jax.jit(S.inverse_cdf)(jnp.broadcast_to(jnp.asarray(w, jnp.float32), (8, V)),
                                             jnp.asarray(u.reshape(8, -1)[:, 0])))
    assert (w[picks] > 0).all()
    chosen = np.asarray(jax.jit(jax.vmap(S.inverse_cdf, in_axes=(None, 0)))(
        jnp.asarray(w[None], jnp.float32), jnp.asarray(u.reshape(-1, 1), jnp.float32)))[:, 0]
    share = np.bincount(chosen, minlength=V) / M
    assert share[w == 0].sum() == 0
    np.testing.assert_allclose(share, w / w.sum(), atol=2.0 / M + 2e-6)


def test_sampled_frequencies_follow_the_filtered_distribution():
    """End to end through ``pick``: 40,000 draws (one row each) of a top-k + top-p filter over 50 tokens land in
    proportion to the reference probabilities (within 5 standard errors), never outside the kept set."""
    rng = np.random.default_rng(1)
    row = _logits(rng, 1, 50, False)[0]
    k, p = 20, _safe_p(row, 20, 0.85)
    n = 40_000
    sampler = S.sampler_for(0.7, k, p, 50)
    draw = jax.jit(lambda x, key: S.pick(sampler, x, key, jnp.float32(0.7), jnp.int32(k), jnp.float32(p)))
    got = np.asarray(draw(jnp.broadcast_to(jnp.asarray(row), (n, 50)), jax.random.key(5)))
    ref = reference(row / np.float32(0.7), k, p)
    freq = np.bincount(got, minlength=50) / n
    assert (ref[got] > 0).all()
    assert np.all(np.abs(freq - ref) <= 5 * np.sqrt(ref * (1 - ref) / n) + 1e-12)


def test_sampler_is_fixed_by_the_settings_kind_not_their_values():
    assert S.sampler_for(0.0, 40, 0.9, 50257) == S.Sampler(greedy=True)
    assert S.sampler_for(0.8, 40, 0.95, 50257) == S.sampler_for(1.3, 33, 0.5, 50257) == S.Sampler(False, 64, True)
    assert S.sampler_for(1.0, 0, 1.0, 50257) == S.Sampler(False, 0, False)
    assert S.sampler_for(1.0, 3, 1.0, 50257).top_k_cap == S.MIN_TOP_K_CAP
    assert S.sampler_for(1.0, 50257, 1.0, 50257).top_k_cap == 0  # keeping every token is no filter
    assert S.sampler_for(1.0, 40000, 1.0, 50257).top_k_cap == 50257


@pytest.mark.slow
def test_nucleus_cut_between_adjacent_floats():
    """The radix select resolves every bit: of two logits one float32 step apart (about equally likely), top-p 0.4
    keeps only the larger."""
    hi = np.nextafter(np.float32(1.0), np.float32(2.0))
    logits = np.full((1, 300), -10.0, np.float32)
    logits[0, :2] = [hi, 1.0]
    sampler = S.sampler_for(1.0, 0, 0.4, 300)
    w = np.asarray(S.filtered_weights(sampler, jnp.asarray(logits), jnp.int32(0), jnp.float32(0.4)))[0]
    assert np.flatnonzero(w).tolist() == [0]


def test_greedy_is_argmax_first_maximum_ties_nan_and_inf():
    """``greedy`` (max, then the least index holding it, on CPU) chooses what jnp.argmax chooses: the first of tied
    maxima, the first NaN when there is one, index 0 of a row that is all -inf, and any finite row."""
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((6, 50257)).astype(np.float32)
    rows[1, [7, 900, 50000]] = 9.0  # tied maxima: the first wins
    rows[2, [5, 40000]] = np.nan  # a NaN counts as the maximum: the first NaN
    rows[3] = -np.inf
    rows[4, -1] = 50.0  # the maximum in the last slot
    rows[5, :] = 1.0  # all equal
    got = np.asarray(jax.jit(S.greedy)(jnp.asarray(rows)))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.asarray(jnp.argmax(jnp.asarray(rows), axis=-1)))
    np.testing.assert_array_equal(got, [np.argmax(rows[0]), 7, 5, 0, 50256, 0])

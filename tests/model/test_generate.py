"""KV-cache generation: equals full recomputation, sampling is seeded and filtered, EOT stops rows, shapes reuse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model import compile_options
from model import generate as G
from model import gpt
from model import sampling
from model.config import get_config

CFG = get_config("tiny").replace(n_layers=2, vocab_size=300, max_seq_len=64)
NEVER = -1  # an eot id no token can equal
PROMPTS = [[1, 2, 3], [5, 9, 11, 4, 4, 8, 250, 17, 3, 3, 2], [7, 8, 9, 10, 11, 12]]  # 3, 11, 6 tokens


@pytest.fixture(scope="module")
def params():
    # Larger than default init so that logits are spread out and argmax is never a near tie.
    rng = np.random.default_rng(0)
    shapes = gpt.param_shapes(CFG)
    return jax.tree.map(lambda s: jnp.asarray(0.1 * rng.standard_normal(s), jnp.float32), shapes,
                        is_leaf=lambda x: isinstance(x, tuple))


_forward = jax.jit(gpt.forward, static_argnums=0)


def _last_logits(params, seq):
    """Logits after ``seq`` from the full (uncached) forward pass. The sequence is right-padded to the context so
    that one compiled program serves every length; causal attention makes the padding invisible to position
    len(seq) - 1."""
    buf = np.zeros((1, CFG.max_seq_len), np.int32)
    buf[0, :len(seq)] = seq
    return np.asarray(_forward(CFG, params, jnp.asarray(buf))[0, len(seq) - 1])


def _recompute_greedy(params, prompt, n):
    """Reference: the full forward pass over the whole sequence at every step, no cache, no left padding."""
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(np.argmax(_last_logits(params, seq))))
    return seq[len(prompt):]


def test_cached_batch_equals_full_recompute(params):
    out = G.generate(CFG, params, PROMPTS, 10, eot_id=NEVER)
    assert out.finish_reasons == ["length"] * 3 and out.generated == 30
    for prompt, tokens in zip(PROMPTS, out.tokens):
        assert tokens == _recompute_greedy(params, prompt, 10)


def test_nearby_shapes_share_one_compiled_program(params):
    """Greedy or sampling, and which filters, are fixed when a program is built (issue 29: no conditional in the
    decode step); nearby shapes, and other values of the same settings, reuse it."""
    G.generate(CFG, params, [[1, 2], [3, 4, 5, 6, 7], [9]], 5, eot_id=NEVER)
    compiled = G.compile_cache_size()
    again = G.generate(CFG, params, [[1, 2, 3, 4, 5, 6, 7, 8, 9], [3], [4, 5]], 12, eot_id=NEVER)
    assert G.compile_cache_size() == compiled and again.compile_seconds == 0.0
    G.generate(CFG, params, [[1, 2], [3], [4]], 5, temperature=0.9, top_k=5, top_p=0.8, seed=4, eot_id=NEVER)
    assert G.compile_cache_size() == compiled + 1  # sampling with top-k (cap 16) and top-p: one more program
    again = G.generate(CFG, params, [[1, 2, 3, 4, 5, 6, 7, 8, 9], [3], [4, 5]], 12, temperature=1.3, top_k=9,
                       top_p=0.5, seed=5, eot_id=NEVER)
    assert G.compile_cache_size() == compiled + 1 and again.compile_seconds == 0.0
    assert [len(t) for t in again.tokens] == [12, 12, 12]
    assert again.decode_steps == 11 and again.step_seconds > 0  # the first token comes from the prefill


def test_sampling_is_seeded(params):
    kw = dict(temperature=1.0, eot_id=NEVER)
    a = G.generate(CFG, params, PROMPTS, 12, seed=1, **kw).tokens
    assert G.generate(CFG, params, PROMPTS, 12, seed=1, **kw).tokens == a
    assert G.generate(CFG, params, PROMPTS, 12, seed=2, **kw).tokens != a
    assert a != G.generate(CFG, params, PROMPTS, 12, eot_id=NEVER).tokens  # not greedy at temperature 1


@pytest.mark.slow
def test_top_k_1_and_tiny_top_p_are_greedy(params):
    greedy = G.generate(CFG, params, PROMPTS, 8, eot_id=NEVER).tokens
    assert G.generate(CFG, params, PROMPTS, 8, temperature=1.5, top_k=1, seed=3, eot_id=NEVER).tokens == greedy
    assert G.generate(CFG, params, PROMPTS, 8, temperature=1.5, top_p=1e-6, seed=3, eot_id=NEVER).tokens == greedy


def test_filters_keep_exactly_the_top_set():
    logits = jnp.log(jnp.array([[0.05, 0.4, 0.1, 0.3, 0.15]]))
    kept = lambda k, p: np.isfinite(np.asarray(sampling.filter_logits(logits, jnp.int32(k), jnp.float32(p))))[0]  # noqa: E731
    assert kept(2, 1.0).tolist() == [False, True, False, True, False]
    # nucleus 0.75: 0.4 + 0.3 = 0.7 < 0.75, so 0.15 is needed too
    assert kept(0, 0.75).tolist() == [False, True, False, True, True]
    assert kept(0, 0.65).tolist() == [False, True, False, True, False]
    # top-k first, then top-p over the renormalised top-k: {0.4, 0.3} -> 0.57, 0.43
    assert kept(2, 0.5).tolist() == [False, True, False, False, False]


def test_sampled_tokens_stay_inside_top_k(params):
    """Hot sampling with top-k 3: every token is among the 3 best of the uncached logits at its step."""
    out = G.generate(CFG, params, PROMPTS, 12, temperature=5.0, top_k=3, seed=0, eot_id=NEVER)
    ranks = []
    for prompt, tokens in zip(PROMPTS, out.tokens):
        for i, t in enumerate(tokens):
            order = np.argsort(-_last_logits(params, prompt + tokens[:i]))
            ranks.append(int(np.where(order == t)[0][0]))
    assert max(ranks) <= 2 and len(set(ranks)) == 3  # all three ranks drawn, nothing beyond


def test_eot_stops_only_its_row(params):
    base = G.generate(CFG, params, PROMPTS, 10, eot_id=NEVER).tokens
    eot = base[2][3]  # the 4th token of row 2 becomes the stop token
    stop = base[2].index(eot)
    out = G.generate(CFG, params, PROMPTS, 10, eot_id=eot)
    assert out.tokens[2] == base[2][:stop] and out.finish_reasons[2] == "eot"
    for row in (0, 1):
        expect = base[row][:base[row].index(eot)] if eot in base[row] else base[row]
        assert out.tokens[row] == expect
        assert out.finish_reasons[row] == ("eot" if eot in base[row] else "length")


def test_prompt_too_long_names_both_numbers(params):
    with pytest.raises(G.GenerationError, match=r"prompt of 60 tokens plus max_new_tokens 5 = 65 .* context of 64"):
        G.generate(CFG, params, [[1] * 60, [2]], 5)
    with pytest.raises(G.GenerationError, match="vocabulary"):
        G.generate(CFG, params, [[300]], 1)
    with pytest.raises(G.GenerationError, match="top_p"):
        G.generate(CFG, params, [[1]], 1, top_p=0.0)


def test_prompt_filling_the_context_exactly(params):
    out = G.generate(CFG, params, [list(range(1, 60))], 5, eot_id=NEVER)
    assert out.tokens[0] == _recompute_greedy(params, list(range(1, 60)), 5)


@pytest.mark.slow
def test_bfloat16_casts_weights_once_and_keeps_layernorm_float32():
    params = gpt.init_params(get_config("tiny"), jax.random.key(0))
    cast = G.cast_weights(params, jnp.bfloat16)
    for path, x in jax.tree_util.tree_leaves_with_path(cast):
        names = {getattr(k, "key", None) for k in path}
        assert x.dtype == (jnp.float32 if names & {"ln_1", "ln_2", "ln_f"} else jnp.bfloat16), path


@pytest.mark.slow
def test_bfloat16_generation_on_tiny_returns_tokens():
    cfg = get_config("tiny")
    params = gpt.init_params(cfg, jax.random.key(0))
    out = G.generate(cfg, params, [[1, 2, 3], [40, 41]], 6, eot_id=NEVER, dtype=jnp.bfloat16)
    assert out.finish_reasons == ["length", "length"] and out.generated == 12
    assert all(len(row) == 6 and all(0 <= t < cfg.vocab_size for t in row) for row in out.tokens)


@pytest.mark.slow
def test_repetition_penalty_follows_transformers_and_min_new_tokens_bars_eot(params):
    """The penalty divides positive and multiplies negative logits of every token already in the prompt or output
    (transformers' RepetitionPenaltyLogitsProcessor), so greedy decoding with it picks what the reference picks after
    the same adjustment; ``min_new_tokens`` holds <|endoftext|> back for that many tokens."""
    prompt, penalty = PROMPTS[1], 1.7
    out = G.generate(CFG, params, [prompt], 12, eot_id=NEVER, repetition_penalty=penalty)
    seq = list(prompt)
    for _ in range(12):  # the reference: full forward, the penalty applied by hand
        logits = _last_logits(params, seq)
        seen = np.zeros(CFG.vocab_size, bool)
        seen[seq] = True
        logits = np.where(seen, np.where(logits > 0, logits / penalty, logits * penalty), logits)
        seq.append(int(np.argmax(logits)))
    assert out.tokens[0] == seq[len(prompt):]
    plain = G.generate(CFG, params, [prompt], 12, eot_id=NEVER).tokens[0]
    assert plain != out.tokens[0]  # the penalty changed something at this setting
    # min_new_tokens: make the greedy choice at step 0 the end-of-text id; it then ends the row at once, unless barred
    eot = plain[0]
    assert G.generate(CFG, params, [prompt], 12, eot_id=eot).finish_reasons == ["eot"]
    held = G.generate(CFG, params, [prompt], 12, eot_id=eot, min_new_tokens=6)
    assert len(held.tokens[0]) >= 6 and eot not in held.tokens[0][:6]
    for bad in ({"repetition_penalty": 0.0}, {"min_new_tokens": 13}):
        with pytest.raises(G.GenerationError):
            G.generate(CFG, params, [prompt], 12, **bad)


def test_vocab_limit_bars_ids_and_a_decode_without_bars_builds_none(params):
    """Ids at or above ``vocab_limit`` are never generated; a decode with neither that bar nor ``min_new_tokens``
    is built without them (``bars`` is part of the program's key) and picks what the barred program picks when the
    bars bar nothing."""
    prompt = PROMPTS[2]
    plain = G.generate(CFG, params, [prompt], 10, eot_id=NEVER).tokens[0]
    limit = sorted(plain)[len(plain) // 2]  # below about half of what the unbarred decode picks
    limited = G.generate(CFG, params, [prompt], 10, eot_id=NEVER, vocab_limit=limit).tokens[0]
    assert max(plain) >= limit and max(limited) < limit
    assert {k[-2] for k in G._COMPILED} >= {True, False}  # both programs were built
    logits = jax.random.normal(jax.random.key(3), (4, CFG.vocab_size)).at[1, 7].set(jnp.inf).at[2, 5].set(jnp.nan)
    knobs = {"key": jax.random.key(0), "temperature": jnp.float32(0), "top_k": jnp.int32(0),
             "top_p": jnp.float32(1), "eot_id": jnp.int32(2), "min_new": jnp.int32(0),
             "vocab_limit": jnp.int32(CFG.vocab_size)}
    greedy = sampling.sampler_for(0.0, 0, 1.0, CFG.vocab_size)
    pick = [G._next_token(greedy, False, bars, logits, None, 3, knobs, G._vocab_bar(CFG.vocab_size, knobs))
            for bars in (True, False)]
    np.testing.assert_array_equal(pick[0], pick[1])
    np.testing.assert_array_equal(pick[1], jnp.argmax(logits, -1))


@pytest.mark.slow
def test_every_decode_layout_gives_the_same_tokens(params):
    """The layer loop scanned or unrolled, the head and the MLP down projection stored as trained or transposed,
    weights prepared once and reused: the same greedy tokens as the full recompute; a dtype that contradicts prepared
    weights is refused."""
    want = [_recompute_greedy(params, p, 6) for p in PROMPTS[:2]]
    for loop in G.LAYER_LOOPS:
        for head in (False, True):
            w = G.prepare_weights(CFG, params, layer_loop=loop, transpose_head=head)
            assert ("wte_t" in w.tree) == head and isinstance(w.tree["blocks"], list) == (loop == "unroll")
            first = w.tree["blocks"][0] if loop == "unroll" else w.tree["blocks"]
            assert ("kernel_t" in first["mlp"]["c_proj"]) == head  # the down projection [d, f] with the head
            assert G.generate(CFG, w, PROMPTS[:2], 6, eot_id=NEVER).tokens == want, (loop, head)
    assert G.default_transpose_head(8) is False  # batch >= 2 keeps [V, d] (a matrix product, not matrix-vector)
    with pytest.raises(G.GenerationError, match="dtype bfloat16 given with weights prepared in float32"):
        G.generate(CFG, w, PROMPTS[:1], 2, dtype=jnp.bfloat16)
    with pytest.raises(G.GenerationError, match="unknown layer loop"):
        G.generate(CFG, params, PROMPTS[:1], 2, layer_loop="while")


@pytest.mark.parametrize("name", ["tiny", "llama-tiny", "qwen3-tiny", "gptj-tiny"])
def test_matvec_layout_decodes_the_same_tokens_in_every_family(name, monkeypatch):
    """The batch-1 CPU layout (layers.matvec_layout: block matrices transposed, widening ones cut into
    MATVEC_BLOCKS; here every widening one, the size floor lowered) gives each family's matrices (fused QKV or
    separate Q and grouped K/V, the two-axis attention output, plain or gated FFN, parallel residual) the same
    logits and greedy tokens as the trained layout."""
    from model import layers

    monkeypatch.setattr(layers, "MATVEC_SPLIT_BYTES", 0)
    cfg = get_config(name, n_layers=2, vocab_size=101, max_seq_len=32)  # a shape no other test prepares
    rng = np.random.default_rng(3)
    params = jax.tree.map(lambda s: jnp.asarray(0.1 * rng.standard_normal(s), jnp.float32), gpt.param_shapes(cfg),
                          is_leaf=lambda x: isinstance(x, tuple))
    trained = G.prepare_weights(cfg, params, layer_loop="scan", transpose_head=False)
    layout = G.prepare_weights(cfg, params, layer_loop="scan", transpose_head=True)
    blocks = layout.tree["blocks"]
    assert "kernel" not in blocks["mlp"]["c_fc"] and len(blocks["mlp"]["c_fc"]["kernel_t"]) == layers.MATVEC_BLOCKS
    assert len(blocks["mlp"]["c_proj"]["kernel_t"]) == 1 and len(blocks["attn"]["c_proj"]["kernel_t"]) == 1
    tokens = jnp.asarray([[5, 17, 3, 88, 42]])
    run = jax.jit(gpt.forward_cached, static_argnums=0)
    logits = [run(cfg, w.tree, tokens, jnp.arange(5)[None], gpt.init_kv_cache(cfg, 1, 8), 0)[0]
              for w in (trained, layout)]
    np.testing.assert_allclose(logits[1], logits[0], rtol=1e-5, atol=1e-5)
    prompt = [[5, 17, 3, 88, 42]]
    assert G.generate(cfg, layout, prompt, 8, eot_id=NEVER).tokens == \
        G.generate(cfg, trained, prompt, 8, eot_id=NEVER).tokens


def test_cpu_programs_get_the_vector_width_option_and_survive_an_unknown_one(params, monkeypatch):
    """On CPU the prefill and decode programs are compiled with CPU_COMPILER_OPTIONS (the same tokens as ever); an
    option this jaxlib does not know is dropped rather than failing the call."""
    on_cpu = jax.default_backend() == "cpu"
    assert compile_options.compiler_options() == ({"xla_cpu_prefer_vector_width": 512} if on_cpu else {})
    want = G.generate(CFG, params, PROMPTS[:1], 4, eot_id=NEVER).tokens
    monkeypatch.setattr(compile_options, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option_anywhere": True})
    monkeypatch.setattr(G, "_COMPILED", {})
    jax.clear_caches()
    assert G.generate(CFG, params, PROMPTS[:1], 4, eot_id=NEVER).tokens == want

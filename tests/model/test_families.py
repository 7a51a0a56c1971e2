"""The families' model code on CPU: config rules, parameter and FLOP counts against transformers' own models of the
published shapes (built on the meta device: no memory, nothing downloaded), grouped attention against JAX's,
hand-written backward passes against autodiff, the chunked loss with an untied head and its bias, remat, the KV cache,
labels and axes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model import gpt
from model.config import GPTConfig, ModelConfigError, get_config
from model.presets import FAMILY_PRESETS, PUBLISHED_FAMILY_PRESETS, SHAPE_DEFAULTS

SMALL = dict(n_layers=2, vocab_size=97, max_seq_len=32)
FAMILIES = ["llama-tiny", "mistral-tiny", "qwen3-tiny", "gptj-tiny"]


def _rel(a, b) -> float:
    """Largest elementwise error relative to the largest magnitude of b, over two equal trees."""
    return max(float(jnp.abs(x - y).max() / (jnp.abs(y).max() + 1e-30)) for x, y in zip(jax.tree.leaves(a),
                                                                                          jax.tree.leaves(b)))


def _random(cfg, seed=0, scale=0.1):
    """Random float32 params (norm scales near 1) so every tensor's mapping and gradient shows."""
    rng = np.random.default_rng(seed)

    def leaf(path, shape):
        noise = rng.standard_normal(shape).astype(np.float32)
        return jnp.asarray(1 + 0.1 * noise if path[-1].key == "scale" else scale * noise)

    return jax.tree_util.tree_map_with_path(leaf, gpt.param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple))


def test_shape_defaults_are_the_config_defaults():
    for key, value in SHAPE_DEFAULTS.items():
        assert GPTConfig.model_fields[key].default == value, key


@pytest.mark.parametrize("fields, message", [
    (dict(n_kv_heads=3), "n_kv_heads (3) must divide n_heads (4)"),
    (dict(positions="rotary", rotary_dim=7), "rotary_dim must be even"),
    (dict(positions="rotary", rotary_dim=64), "rotary_dim must be even and between 2 and d_head (32)"),
    (dict(mup=True, tied_embeddings=False), "mup needs tied_embeddings"),
    (dict(positions="rotary", rope_scaling="llama3", rope_low_freq_factor=4.0), "rope_low_freq_factor"),
    (dict(norm="batchnorm"), "norm"),
])
def test_bad_architecture_fields_name_the_problem(fields, message):
    with pytest.raises(ModelConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_config("tiny", **fields)


@pytest.mark.parametrize("name", FAMILIES)
def test_cpu_family_presets_are_small_and_have_their_parameters(name):
    cfg = get_config(name)
    assert 5e6 < cfg.parameters < 1.6e7 and cfg.vocab_size == 50257 and cfg.max_seq_len == 256
    params = gpt.param_shapes(cfg)
    assert sum(int(np.prod(s)) for s in jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, tuple))) == cfg.parameters


def _meta_model(cfg):
    """transformers' model of ``cfg`` on the meta device (shapes only) and its config.json dict."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from model.hf_configs import config_to_hf

    conf = config_to_hf(cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**conf))
    return model


@pytest.mark.parametrize("name", PUBLISHED_FAMILY_PRESETS)
def test_published_shapes_count_what_transformers_builds(name):
    """Parameters (a tied head counted once) and dense forward FLOPs equal those of transformers' model of the
    same config; the FLOPs are counted independently here from its Linear layers."""
    cfg = get_config(name)
    model = _meta_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == cfg.parameters
    linear = sum(m.weight.numel() for m in model.modules() if type(m).__name__ == "Linear" and m is not model.lm_head)
    t = 1024
    dense = 2 * linear + 2 * cfg.vocab_size * cfg.d_model + 2 * 2 * t * cfg.n_heads * cfg.d_head * cfg.n_layers
    assert cfg.forward_flops_per_token(t) == dense


def test_published_parameter_counts_match_the_model_cards():
    """Totals the model cards and papers state (rounded there): Llama 3.1 8B/70B/405B, Mistral 7B, Qwen3-32B,
    GPT-J 6B, Llama 2 7B."""
    published = {"llama3.1-8b": 8.03e9, "llama3.1-70b": 70.6e9, "llama3.1-405b": 405.9e9, "mistral-7b": 7.25e9,
                 "qwen3-32b": 32.8e9, "gptj-6b": 6.05e9, "llama2-7b": 6.74e9}
    for name, n in published.items():
        assert get_config(name).parameters == pytest.approx(n, rel=2e-3), name


def test_gptj_rotates_a_quarter_of_each_head_and_qwen3_heads_are_wider_than_the_model():
    j, q = get_config("gptj-6b"), get_config("qwen3-32b")
    assert (j.rotary_dims, j.d_head, j.rope_style, j.parallel_residual, j.lm_head_bias) == (64, 256, "interleaved",
                                                                                            True, True)
    assert (q.n_heads * q.d_head, q.d_model, q.kv_heads, q.qk_norm) == (8192, 5120, 8, True)
    assert get_config("llama3.1-8b").summary()["n_kv_heads"] == 8 and not get_config("llama3.1-8b").learned_positions


@pytest.mark.slow
@pytest.mark.parametrize("K", [1, 2, 4])
def test_grouped_xla_attention_equals_jax_attention_and_its_autodiff(K):
    """Grouped K/V heads (MQA, GQA, MHA) in the hand-written kernel equal jax.nn.dot_product_attention's own GQA,
    values and gradients; the cudnn kernel takes the same grouped layout."""
    q = jax.random.normal(jax.random.key(0), (2, 12, 4, 8))
    k, v = (jax.random.normal(jax.random.key(i), (2, 12, K, 8)) for i in (1, 2))
    lib = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, scale=0.3, is_causal=True)  # noqa: E731
    np.testing.assert_allclose(gpt.causal_attention(q, k, v, 0.3), lib(q, k, v), atol=1e-6)
    loss = lambda f: lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v)))  # noqa: E731
    ours = jax.grad(loss(lambda q, k, v: gpt.causal_attention(q, k, v, 0.3)), (0, 1, 2))(q, k, v)
    assert _rel(ours, jax.grad(loss(lib), (0, 1, 2))(q, k, v)) < 1e-5


@pytest.mark.slow
def test_rms_norm_and_activation_backward_equal_autodiff():
    x = 3 * jax.random.normal(jax.random.key(0), (4, 8, 32))
    p = {"scale": jax.random.normal(jax.random.key(1), (32,))}
    w = jax.random.normal(jax.random.key(3), x.shape)

    def plain_rms(x, p):
        return x * jax.lax.rsqrt(jnp.square(x).mean(-1, keepdims=True) + 1e-6) * p["scale"]

    grad = lambda f: jax.grad(lambda x, p: jnp.sum(w * f(x, p)), (0, 1))(x, p)  # noqa: E731
    assert _rel(grad(lambda x, p: gpt.rms_norm(x, p, 1e-6)), grad(plain_rms)) < 1e-5
    for ours, ref in ((gpt.gelu_tanh, lambda x: jax.nn.gelu(x, approximate=True)), (gpt.silu, jax.nn.silu)):
        act = lambda f: jax.grad(lambda x: jnp.sum(w * f(x)))(x)  # noqa: E731
        np.testing.assert_allclose(ours(x), ref(x), rtol=1e-6, atol=1e-6)
        assert _rel(act(ours), act(ref)) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gptj-tiny", "mistral-tiny"])
@pytest.mark.parametrize("masked", [False, True])
def test_chunked_loss_with_untied_head_equals_whole_logits(name, masked):
    """The untied head (GPT-J's with its bias) in chunks of 10 tokens equals the loss of the whole logits, value and
    gradients (the head's matrix and bias included)."""
    cfg = get_config(name, **SMALL)
    params = _random(cfg)
    x = jax.random.normal(jax.random.key(1), (3, 21, cfg.d_model))
    targets = jax.random.randint(jax.random.key(2), (3, 21), 0, cfg.vocab_size)
    mask = jax.random.bernoulli(jax.random.key(3), 0.7, (3, 21)) if masked else None

    def whole(p, x):
        per = gpt.nll(gpt.head(cfg, p, x), targets)
        return per.sum() if mask is None else (per * mask).sum()

    chunked = lambda p, x: gpt.head_nll_sum(cfg, p, x, targets, mask, chunk_tokens=10)  # noqa: E731
    (a, ga), (b, gb) = (jax.value_and_grad(f, (0, 1))(params, x) for f in (chunked, whole))
    assert abs(float(a) - float(b)) <= 1e-5 * abs(float(b)) and _rel(ga, gb) < 1e-5
    assert float(jnp.abs(ga[0]["lm_head"]["weight"]).max()) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen3-tiny", "gptj-tiny"])
def test_remat_policies_give_the_same_gradients(name):
    cfg = get_config(name, **SMALL)
    params = _random(cfg, seed=1)
    tokens = jax.random.randint(jax.random.key(4), (2, 13), 0, cfg.vocab_size)
    grads = {r: jax.jit(jax.grad(lambda p: gpt.loss_fn(cfg, p, tokens[:, :-1], tokens[:, 1:], remat=r)))(params)
             for r in gpt.REMAT_POLICIES}
    assert _rel(grads["dots"], grads["none"]) < 1e-5 and _rel(grads["full"], grads["none"]) < 1e-5


_cached = jax.jit(gpt.forward_cached, static_argnums=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_cache_holds_kv_heads_and_decoding_equals_the_full_pass(name):
    """Prefill + one-token decode through a cache of n_kv_heads heads (rotary positions applied to the cached keys)
    equals the full forward pass."""
    cfg = get_config(name, **SMALL)
    params = _random(cfg, seed=1)
    tokens = jax.random.randint(jax.random.key(4), (2, 13), 0, cfg.vocab_size)
    full = jax.jit(gpt.forward, static_argnums=0)(cfg, params, tokens)
    cache = gpt.init_kv_cache(cfg, 2, 16)
    assert cache[0].shape == (cfg.n_layers, 2 * cfg.kv_heads, cfg.d_head, 16)  # keys position-minor
    assert cache[1].shape == (cfg.n_layers, 2 * cfg.kv_heads, 16, cfg.d_head)
    logits, cache = _cached(cfg, params, tokens[:, :8], jnp.broadcast_to(jnp.arange(8), (2, 8)), cache, 0)
    np.testing.assert_allclose(logits, full[:, :8], atol=1e-5)
    for t in range(8, 13):
        step, cache = _cached(cfg, params, tokens[:, t:t + 1], jnp.full((2, 1), t), cache, t)
        np.testing.assert_allclose(step[:, 0], full[:, t], atol=1e-5)


@pytest.mark.slow
def test_bf16_compute_close_to_f32_for_a_gated_rotary_model():
    cfg = get_config("qwen3-tiny", **SMALL)
    params = gpt.initial_params(cfg, 7)
    tokens = jax.random.randint(jax.random.key(8), (2, 16), 0, cfg.vocab_size)
    loss = jax.jit(gpt.loss_fn, static_argnums=0, static_argnames="dtype")
    a = loss(cfg, params, tokens[:, :-1], tokens[:, 1:])
    b = loss(cfg, params, tokens[:, :-1], tokens[:, 1:], dtype=jnp.bfloat16)
    assert abs(float(a) - float(b)) < 0.05 and abs(float(a) - np.log(cfg.vocab_size)) < 1.0


def test_labels_decay_mask_and_axes_of_the_new_tensors():
    cfg = get_config("gptj-tiny", **SMALL)
    labels, decay, axes = gpt.param_labels(cfg), gpt.weight_decay_mask(cfg), gpt.logical_axes(cfg)
    assert labels["lm_head"]["weight"] == "vector" and decay["lm_head"]["weight"] and not decay["lm_head"]["bias"]
    assert "ln_2" not in axes["blocks"] and "wpe" not in axes and "bias" in axes["blocks"]["mlp"]["c_fc"]
    assert "bias" not in axes["blocks"]["attn"]["c_attn"] and axes["lm_head"]["bias"] == ("vocab",)
    q = get_config("qwen3-tiny", **SMALL)
    qa, ql = gpt.logical_axes(q), gpt.param_labels(q)
    assert qa["blocks"]["attn"]["c_kv"]["kernel"] == ("layers", "embed", "qkv", "kv_heads", "head_dim")
    assert qa["blocks"]["attn"]["q_norm"]["scale"] == ("layers", "head_dim") and "bias" not in qa["ln_f"]
    assert qa["blocks"]["mlp"]["c_fc"]["kernel"] == ("layers", "embed", "gate", "mlp")
    assert ql["blocks"]["attn"]["c_q"]["kernel"] == "hidden" and ql["blocks"]["attn"]["k_norm"]["scale"] == "vector"
    assert not gpt.weight_decay_mask(q)["blocks"]["attn"]["q_norm"]["scale"]


def test_outside_blocks_names_the_top_level_tensors():
    assert gpt.outside_blocks(get_config("tiny")) == ("wte", "wpe", "ln_f")
    assert gpt.outside_blocks(get_config("llama-tiny")) == ("wte", "ln_f")
    assert gpt.outside_blocks(get_config("gptj-tiny")) == ("wte", "ln_f", "lm_head")


@pytest.mark.slow
def test_init_gives_unit_norms_zero_biases_and_scaled_output_projections():
    cfg = get_config("gptj-tiny", n_layers=4)
    p = gpt.initial_params(cfg, 0)
    std = lambda x: float(jnp.std(x))  # noqa: E731
    assert std(p["lm_head"]["weight"]) == pytest.approx(0.02 * 0.8796, rel=0.02)
    assert std(p["blocks"]["mlp"]["c_proj"]["kernel"]) == pytest.approx(0.02 / np.sqrt(8) * 0.8796, rel=0.05)
    assert float(jnp.abs(p["lm_head"]["bias"]).max()) == 0 and float(jnp.abs(p["ln_f"]["scale"] - 1).max()) == 0
    q = gpt.initial_params(get_config("qwen3-tiny", n_layers=1), 0)
    assert float(jnp.abs(q["blocks"]["attn"]["q_norm"]["scale"] - 1).max()) == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen3-tiny", "gptj-tiny"])
def test_family_presets_learn(name):
    """A family's tiny shape (2 layers, a 97-token vocabulary) fits a repeated batch: 30 Adam steps lower the loss by
    more than a nat (Qwen3's Q/K norms and GQA; GPT-J's parallel block, untied head with bias, partial RoPE)."""
    import optax

    cfg = get_config(name, **SMALL)
    params = gpt.initial_params(cfg, 0)
    tokens = jax.random.randint(jax.random.key(1), (4, 33), 0, cfg.vocab_size)
    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, state):
        loss, g = jax.value_and_grad(lambda p: gpt.loss_fn(cfg, p, tokens[:, :-1], tokens[:, 1:]))(params)
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state, loss

    state, losses = tx.init(params), []
    for _ in range(30):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 1.0, (name, losses[0], losses[-1])


def test_family_presets_are_outside_the_cerebras_catalog():
    from model.presets import PRESETS

    assert not set(FAMILY_PRESETS) & set(PRESETS) and "llama3.1-8b" in FAMILY_PRESETS


def test_bf16_generation_keeps_every_norm_in_float32():
    """generate.cast_weights narrows the projections and embeddings to the compute dtype, never a norm's parameters
    (Qwen3's Q/K norms included): the model applies every norm in float32."""
    from model.generate import cast_weights

    cfg = get_config("qwen3-tiny", **SMALL)
    cast = cast_weights(gpt.initial_params(cfg, 0), jnp.bfloat16)
    attn = cast["blocks"]["attn"]
    assert attn["q_norm"]["scale"].dtype == attn["k_norm"]["scale"].dtype == cast["ln_f"]["scale"].dtype == jnp.float32
    assert attn["c_q"]["kernel"].dtype == cast["wte"].dtype == jnp.bfloat16

"""The Flax model: shapes, init rules, muP, cached forward = full forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from model import gpt
from model.config import get_config

CFG = get_config("tiny").replace(n_layers=2, max_seq_len=32)


def test_parameter_count_matches_config():
    params = gpt.init_params(CFG, jax.random.key(0))
    assert sum(x.size for x in jax.tree.leaves(params)) == CFG.parameters
    gpt.check_params(CFG, params)


def test_shape_mismatch_names_the_tensor():
    params = gpt.init_params(CFG, jax.random.key(0))
    params["blocks"]["mlp"]["c_fc"]["kernel"] = params["blocks"]["mlp"]["c_fc"]["kernel"][:, :, :10]
    with pytest.raises(ValueError, match="blocks/mlp/c_fc/kernel"):
        gpt.check_params(CFG, params)


def test_nnx_module_carries_logical_axes():
    model = gpt.GPT(CFG, rngs=nnx.Rngs(0))
    specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
    assert tuple(specs["blocks"]["attn"]["c_attn"]["kernel"].get_value()) == ("layers", "embed", "qkv", "heads", "head_dim")
    assert tuple(specs["wte"].get_value()) == ("vocab", "embed")
    logits = model(jnp.zeros((2, 5), jnp.int32))
    assert logits.shape == (2, 5, CFG.vocab_size) and logits.dtype == jnp.float32


@pytest.mark.slow
def test_init_std_rules_sp_and_mup():
    sp = gpt.init_params(CFG.replace(n_layers=4, d_model=256, n_heads=4, d_head=64, d_ffn=1024), jax.random.key(1))
    std = lambda x: float(jnp.std(x))  # noqa: E731
    # truncated normal at +-2 std has std 0.8796 of the nominal
    assert std(sp["wte"]) == pytest.approx(0.02 * 0.8796, rel=0.02)
    assert std(sp["blocks"]["mlp"]["c_proj"]["kernel"]) == pytest.approx(0.02 / np.sqrt(8) * 0.8796, rel=0.05)
    mcfg = get_config("tiny").replace(n_layers=4, d_model=512, n_heads=8, d_head=64, d_ffn=2048, mup=True, init_std=0.08)
    mp = gpt.init_params(mcfg, jax.random.key(2))
    m_w = 2.0
    assert std(mp["wte"]) == pytest.approx(0.08 * 0.8796, rel=0.02)
    assert std(mp["blocks"]["attn"]["c_attn"]["kernel"]) == pytest.approx(0.08 / np.sqrt(m_w) * 0.8796, rel=0.03)
    assert std(mp["blocks"]["attn"]["c_proj"]["kernel"]) == pytest.approx(0.08 / np.sqrt(2 * 4 * m_w) * 0.8796, rel=0.05)
    assert float(jnp.abs(mp["blocks"]["ln_1"]["scale"] - 1).max()) == 0 and float(jnp.abs(mp["blocks"]["attn"]["c_attn"]["bias"]).max()) == 0


@pytest.mark.slow
def test_mup_forward_multipliers():
    """muP: embeddings x10, 1/d_head attention, logits / m_w — checked against the SP forward on the same weights."""
    mcfg = CFG.replace(mup=True, d_model=512, n_heads=8, d_head=64, d_ffn=2048, mup_base_width=256)
    params = gpt.init_params(mcfg, jax.random.key(3))
    tokens = jnp.array([[5, 6, 7]])
    x = gpt.embed(mcfg, params, tokens)
    x_sp = gpt.embed(mcfg.replace(mup=False), params, tokens)
    np.testing.assert_allclose(x, 10 * x_sp, rtol=1e-6)
    assert gpt.attention_scale(mcfg) == 1 / 64 and gpt.attention_scale(mcfg.replace(mup=False)) == 1 / 8
    h = jax.random.normal(jax.random.key(4), (1, 3, 512))
    np.testing.assert_allclose(gpt.head(mcfg, params, h), gpt.head(mcfg.replace(mup=False), params, h) / 2.0, rtol=1e-5)


def test_labels_and_decay_mask():
    labels = gpt.param_labels(CFG)
    assert labels["blocks"]["mlp"]["c_fc"]["kernel"] == "hidden" and labels["wte"] == "vector"
    assert labels["blocks"]["ln_1"]["scale"] == "vector" and labels["blocks"]["attn"]["c_attn"]["bias"] == "vector"
    mask = gpt.weight_decay_mask(CFG)
    assert mask["wte"] and mask["blocks"]["attn"]["c_proj"]["kernel"]
    assert not mask["ln_f"]["scale"] and not mask["blocks"]["mlp"]["c_fc"]["bias"]


@pytest.mark.slow
def test_cached_forward_equals_full_forward():
    params = gpt.init_params(CFG, jax.random.key(5))
    tokens = jax.random.randint(jax.random.key(6), (2, 9), 0, CFG.vocab_size)
    full = gpt.forward(CFG, params, tokens)
    cache = gpt.init_kv_cache(CFG, 2, 16)
    logits, cache = gpt.forward_cached(CFG, params, tokens[:, :5], jnp.broadcast_to(jnp.arange(5), (2, 5)), cache, 0)
    np.testing.assert_allclose(logits, full[:, :5], atol=1e-5)
    for t in range(5, 9):
        step, cache = gpt.forward_cached(CFG, params, tokens[:, t:t + 1], jnp.full((2, 1), t), cache, t)
        np.testing.assert_allclose(step[:, 0], full[:, t], atol=1e-5)


def test_bf16_compute_close_to_f32():
    params = gpt.init_params(CFG, jax.random.key(7))
    tokens = jax.random.randint(jax.random.key(8), (2, 16), 0, CFG.vocab_size)
    a = gpt.loss_fn(CFG, params, tokens[:, :-1], tokens[:, 1:])
    b = gpt.loss_fn(CFG, params, tokens[:, :-1], tokens[:, 1:], dtype=jnp.bfloat16)
    assert abs(float(a) - float(b)) < 0.05 and abs(float(a) - np.log(CFG.vocab_size)) < 1.0


def _rel(a, b) -> float:
    """Largest elementwise error relative to the largest magnitude of b, over two equal trees."""
    return max(float(jnp.abs(x - y).max() / (jnp.abs(y).max() + 1e-30))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _small():
    cfg = CFG.replace(d_model=32, n_heads=4, d_head=8, d_ffn=64, vocab_size=97)
    return cfg, gpt.init_params(cfg, jax.random.key(0))


@pytest.mark.slow
def test_xla_attention_kernel_equals_library_attention_and_its_autodiff():
    """The hand-written backward (probabilities recomputed from the log-sum-exp) equals autodiff of
    jax.nn.dot_product_attention to float32 rounding."""
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 24, 4, 8)) for i in range(3))
    ours = lambda q, k, v: jnp.sum(jnp.sin(gpt.causal_attention(q, k, v, 0.3)))  # noqa: E731
    lib = lambda q, k, v: jnp.sum(jnp.sin(jax.nn.dot_product_attention(q, k, v, scale=0.3, is_causal=True)))  # noqa: E731
    np.testing.assert_allclose(gpt.causal_attention(q, k, v, 0.3),
                               jax.nn.dot_product_attention(q, k, v, scale=0.3, is_causal=True), atol=1e-6)
    assert _rel(jax.grad(ours, (0, 1, 2))(q, k, v), jax.grad(lib, (0, 1, 2))(q, k, v)) < 1e-5
    with pytest.raises(ValueError, match="unknown attention kernel 'flash'"):
        gpt.causal_attention(q, k, v, 0.3, "flash")


def test_layer_norm_and_gelu_backward_equal_autodiff():
    x = 3 * jax.random.normal(jax.random.key(0), (4, 8, 32))
    p = {"scale": jax.random.normal(jax.random.key(1), (32,)), "bias": jax.random.normal(jax.random.key(2), (32,))}

    def plain_ln(x, p):
        m = x.mean(-1, keepdims=True)
        return (x - m) * jax.lax.rsqrt(jnp.square(x - m).mean(-1, keepdims=True) + 1e-5) * p["scale"] + p["bias"]

    w = jax.random.normal(jax.random.key(3), x.shape)
    ln = lambda f: jax.grad(lambda x, p: jnp.sum(w * f(x, p)), (0, 1))(x, p)  # noqa: E731
    assert _rel(ln(lambda x, p: gpt.layer_norm(x, p, 1e-5)), ln(plain_ln)) < 1e-5
    act = lambda f: jax.grad(lambda x: jnp.sum(w * f(x)))(x)  # noqa: E731
    assert _rel(act(gpt.gelu), act(lambda x: jax.nn.gelu(x, approximate=False))) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("masked", [False, True])
def test_chunked_loss_equals_whole_logits(masked):
    """The loss computed chunk by chunk (with padding: 21 positions into chunks of 3 rows x 4) equals the loss of the
    whole logits, value and gradients, to 1e-5 relative."""
    cfg, params = _small()
    x = jax.random.normal(jax.random.key(1), (3, 21, cfg.d_model))
    targets = jax.random.randint(jax.random.key(2), (3, 21), 0, cfg.vocab_size)
    mask = jax.random.bernoulli(jax.random.key(3), 0.7, (3, 21)) if masked else None

    def whole(p, x):
        per = gpt.nll(gpt.head(cfg, p, x), targets)
        return per.sum() if mask is None else (per * mask).sum()

    chunked = lambda p, x: gpt.head_nll_sum(cfg, p, x, targets, mask, chunk_tokens=10)  # noqa: E731
    (a, ga), (b, gb) = (jax.value_and_grad(f, (0, 1))(params, x) for f in (chunked, whole))
    assert abs(float(a) - float(b)) <= 1e-5 * abs(float(b))
    assert _rel(ga, gb) < 1e-5
    # the chunked program never holds the whole [B, T, V] logits
    hlo = jax.jit(jax.grad(chunked)).lower(params, x).as_text()
    assert f"3x21x{cfg.vocab_size}x" not in hlo and f"3,21,{cfg.vocab_size}]" not in hlo


@pytest.mark.slow
def test_remat_policies_give_the_same_gradients():
    cfg, params = _small()
    tokens = jax.random.randint(jax.random.key(4), (2, 17), 0, cfg.vocab_size)
    grads = {r: jax.grad(lambda p: gpt.loss_fn(cfg, p, tokens[:, :-1], tokens[:, 1:], remat=r))(params)
             for r in (*gpt.REMAT_POLICIES, True)}
    for r in ("dots", "full", True):
        assert _rel(grads[r], grads["none"]) < 1e-5, r
    with pytest.raises(ValueError, match="unknown remat policy"):
        gpt.remat_policy("sometimes")


def test_the_planner_and_the_model_share_one_remat_vocabulary():
    """wse/ may not import model/, so the planner keeps its own tuple of remat policies: it must be the model's."""
    from model.remat import REMAT_POLICIES
    from wse.devices.cost_model import REMATS

    assert REMATS == REMAT_POLICIES

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

"""HuggingFace interop: parity with transformers' PyTorch GPT-2 both ways, and refusals that name the culprit."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from model import gpt, hf
from model.config import get_config
from model.generate import architecture, generate

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOL = 1e-4
# (n_layer, n_embd, n_head, n_inner, vocab, n_positions): plain, 256M's odd 17 x 64 heads, 3 heads with a non-4x FFN.
SHAPES = [(2, 64, 4, None, 128, 32), (2, 1088, 17, None, 256, 48), (3, 96, 3, 200, 100, 40)]


def _randomise(model, seed):
    """Random weights everywhere (HF init leaves biases 0 and LayerNorm 1, which would not test their mapping)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if ".ln_" in name and name.endswith("weight") else 0.02 * noise)
    return model


def _hf_model(shape, seed=0):
    L, d, H, f, V, T = shape
    conf = transformers.GPT2Config(n_layer=L, n_embd=d, n_head=H, n_inner=f, vocab_size=V, n_positions=T,
                                   activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                   bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(conf)
    return _randomise(model, seed).eval()


def _hf_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor(np.asarray(tokens), dtype=torch.long)).logits.numpy()


def _hf_greedy(model, prompt, n):
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(_hf_logits(model, [seq])[0, -1].argmax()))
    return seq[len(prompt):]


_forward = jax.jit(gpt.forward, static_argnums=0)


def _ours(cfg, params, tokens):
    return np.asarray(_forward(architecture(cfg), params, jnp.asarray(tokens)))


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES, ids=["4x16", "17x64", "3x32-ffn200"])
def test_import_matches_transformers(tmp_path, shape):
    model = _hf_model(shape)
    model.save_pretrained(tmp_path, safe_serialization=True)
    cfg, params = hf.load_hf(tmp_path)
    L, d, H, f, V, T = shape
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_ffn, cfg.vocab_size, cfg.max_seq_len) == (L, d, H, f or 4 * d, V, T)
    tokens = np.random.default_rng(1).integers(0, V, (2, T))
    diff = np.abs(_hf_logits(model, tokens) - _ours(cfg, params, tokens)).max()
    print(f"import {shape}: max |logit diff| = {diff:.2e}")
    assert diff <= TOL
    prompt = tokens[0, :5].tolist()
    assert generate(cfg, params, [prompt], 8, eot_id=-1).tokens[0] == _hf_greedy(model, prompt, 8)


@pytest.mark.parametrize("shape", SHAPES[:2], ids=["4x16", "17x64"])
def test_export_loads_in_transformers_with_same_logits(tmp_path, shape):
    L, d, H, f, V, T = shape
    cfg = get_config("tiny").replace(n_layers=L, d_model=d, n_heads=H, d_head=d // H, d_ffn=f or 4 * d,
                                     vocab_size=V, max_seq_len=T)
    params = _random_params(cfg, seed=2)
    hf.save_hf(tmp_path / "out", cfg, params)
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "out").eval()
    tokens = np.random.default_rng(3).integers(0, V, (2, T))
    diff = np.abs(_hf_logits(model, tokens) - _ours(cfg, params, tokens)).max()
    print(f"export {shape}: max |logit diff| = {diff:.2e}")
    assert diff <= TOL
    prompt = tokens[1, :4].tolist()
    assert generate(cfg, params, [prompt], 8, eot_id=-1).tokens[0] == _hf_greedy(model, prompt, 8)
    # and back: the round trip is exact
    cfg2, params2 = hf.load_hf(tmp_path / "out")
    assert cfg2.d_ffn == cfg.d_ffn and not cfg2.mup
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(np.asarray(a), b)


def _random_params(cfg, seed):
    """Random float32 params in numpy (no per-shape JAX compiles): LayerNorm gains near 1, everything else small
    and non-zero, so that a wrong mapping of any tensor (biases and LayerNorms included) shows in the logits."""
    rng = np.random.default_rng(seed)
    shapes = gpt.param_shapes(cfg)

    def leaf(path, shape):
        noise = rng.standard_normal(shape).astype(np.float32)
        return 1 + 0.1 * noise if path[-1].key == "scale" else 0.05 * noise

    return jax.tree_util.tree_map_with_path(leaf, shapes, is_leaf=lambda x: isinstance(x, tuple))


@pytest.mark.slow
def test_mup_export_folds_multipliers_for_transformers(tmp_path):
    """GPT-2 has no muP knobs: the export folds x10 embeddings, 1/d_head attention and 1/m_w logits into weights."""
    cfg = get_config("tiny").replace(n_layers=2, d_model=128, n_heads=2, d_head=64, d_ffn=512, vocab_size=200,
                                     max_seq_len=32, mup=True, mup_base_width=32, init_std=0.08)
    params = _random_params(cfg, seed=4)
    hf.save_hf(tmp_path / "mup", cfg, params)
    assert json.loads((tmp_path / "mup" / "config.json").read_text())["tie_word_embeddings"] is False
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "mup").eval()
    tokens = np.random.default_rng(5).integers(0, 200, (2, 32))
    ours = _ours(cfg, params, tokens)
    diff = np.abs(_hf_logits(model, tokens) - ours).max()
    print(f"muP export: max |logit diff| = {diff:.2e} (logits up to {np.abs(ours).max():.1f})")
    assert diff <= TOL * max(1.0, np.abs(ours).max())
    # and back: an untied standard-parametrisation model with the same logits
    back, back_params = hf.load_hf(tmp_path / "mup")
    assert not back.mup and not back.tied_embeddings
    assert np.abs(_ours(back, back_params, tokens) - ours).max() <= TOL * max(1.0, np.abs(ours).max())


def test_cerebras_mup_config_imports_as_mup(tmp_path):
    """A Cerebras muP (BTLM-format) config maps onto our muP fields; the tensors are plain GPT-2 names."""
    cfg = get_config("tiny").replace(n_layers=2, d_model=128, n_heads=2, d_head=64, d_ffn=512, vocab_size=200,
                                     max_seq_len=32)
    params = _random_params(cfg, seed=6)
    save_file(hf.params_to_hf(cfg, params), str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    conf = hf.config_to_hf(cfg) | {"model_type": "btlm", "position_embedding_type": "learned",
                                   "mup_embeddings_scale": 10.0, "mup_scale_qk_dot_by_d": True,
                                   "mup_output_alpha": 2.0, "mup_width_scale": 0.125}
    (tmp_path / "config.json").write_text(json.dumps(conf))
    mcfg, mparams = hf.load_hf(tmp_path)
    assert mcfg.mup and mcfg.mup_embedding_multiplier == 10.0 and mcfg.mup_base_width == 32  # 2 * 0.125 * 128
    assert mcfg.width_multiplier == 4.0
    tokens = np.arange(10)[None]
    x = np.asarray(gpt.embed(mcfg, mparams, jnp.asarray(tokens)))
    np.testing.assert_allclose(x, 10 * np.asarray(gpt.embed(cfg, params, jnp.asarray(tokens))), rtol=1e-6)
    conf["mup_output_alpha"] = 1.01  # 1.01 * 0.125 * 128 is not an integer base width
    (tmp_path / "config.json").write_text(json.dumps(conf))
    with pytest.raises(hf.HFFormatError, match="mup_output_alpha"):
        hf.load_hf(tmp_path)


# ---- refusals ---------------------------------------------------------------------------------------------------

SMALL = get_config("tiny").replace(n_layers=2, d_model=32, n_heads=2, d_head=16, d_ffn=64, vocab_size=50, max_seq_len=16)


@pytest.fixture
def small_dir(tmp_path):
    d = tmp_path / "small"
    hf.save_hf(d, SMALL, _random_params(SMALL, seed=7))
    return d


def _edit_config(d, **changes):
    conf = json.loads((d / "config.json").read_text())
    conf.update(changes)
    (d / "config.json").write_text(json.dumps(conf))


@pytest.mark.parametrize("changes, field", [
    ({"model_type": "bert"}, "model_type"),
    ({"activation_function": "relu"}, "activation_function"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"scale_attn_weights": False}, "scale_attn_weights"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings"),
    ({"mup_width_scale": 0.5}, "mup_width_scale"),
    ({"n_head": 3}, "n_head"),
])
def test_bad_config_names_the_field(small_dir, changes, field):
    _edit_config(small_dir, **changes)
    with pytest.raises(hf.HFFormatError, match=field):
        hf.load_hf(small_dir)


def test_missing_activation_means_gelu_new(small_dir):
    """GPT2Config's default activation is tanh GELU: a config.json without the field imports as gelu_tanh."""
    conf = json.loads((small_dir / "config.json").read_text())
    del conf["activation_function"]
    (small_dir / "config.json").write_text(json.dumps(conf))
    cfg, _ = hf.load_hf(small_dir)
    assert cfg.activation == "gelu_tanh"


def _edit_tensors(d, fn):
    tensors = load_file(str(d / "model.safetensors"))
    fn(tensors)
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("edit, pattern", [
    (lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"), "'transformer.h.1.mlp.c_fc.bias' is missing"),
    (lambda t: t.update({"transformer.h.0.attn.c_attn.weight": np.zeros((32, 64), np.float32)}),
     r"'transformer.h.0.attn.c_attn.weight' has shape \(32, 64\)"),
    (lambda t: t.update({"transformer.h.0.mlp.c_fc2.weight": np.zeros((32, 64), np.float32)}),
     "unexpected tensor 'transformer.h.0.mlp.c_fc2.weight'"),
    (lambda t: t.update({"transformer.h.2.ln_1.weight": np.ones(32, np.float32)}), "beyond config.json n_layer"),
    (lambda t: t.update({"lm_head.weight": np.zeros((50, 32), np.float32)}), "lm_head.weight"),
])
def test_bad_tensor_names_the_tensor(small_dir, edit, pattern):
    _edit_tensors(small_dir, edit)
    with pytest.raises(hf.HFFormatError, match=pattern):
        hf.load_hf(small_dir)


def test_tied_lm_head_and_old_buffers_are_accepted(small_dir):
    def add(t):
        t["lm_head.weight"] = t["transformer.wte.weight"].copy()
        t["transformer.h.0.attn.bias"] = np.tril(np.ones((1, 1, 16, 16), np.float32))
    _edit_tensors(small_dir, add)
    cfg, _ = hf.load_hf(small_dir)
    assert cfg.n_layers == 2


def test_pickle_needs_explicit_permission(small_dir):
    tensors = load_file(str(small_dir / "model.safetensors"))
    (small_dir / "model.safetensors").unlink()
    torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, small_dir / "pytorch_model.bin")
    with pytest.raises(hf.HFFormatError, match="allow-pickle"):
        hf.load_hf(small_dir)
    cfg, params = hf.load_hf(small_dir, allow_pickle=True)
    np.testing.assert_array_equal(params["wte"], tensors["transformer.wte.weight"])


def test_corrupt_or_missing_weights(small_dir, tmp_path):
    (small_dir / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(hf.HFFormatError, match="not a valid safetensors"):
        hf.load_hf(small_dir)
    (small_dir / "model.safetensors").unlink()
    with pytest.raises(hf.HFFormatError, match="has no model.safetensors"):
        hf.load_hf(small_dir)
    with pytest.raises(hf.HFFormatError, match="does not exist"):
        hf.load_hf(tmp_path / "nope")


def test_sharded_safetensors(small_dir):
    tensors = load_file(str(small_dir / "model.safetensors"))
    (small_dir / "model.safetensors").unlink()
    names = sorted(tensors)
    half = {n: ("a.safetensors" if i % 2 else "b.safetensors") for i, n in enumerate(names)}
    for shard in ("a.safetensors", "b.safetensors"):
        save_file({n: tensors[n] for n in names if half[n] == shard}, str(small_dir / shard), metadata={"format": "pt"})
    (small_dir / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": half}))
    _, params = hf.load_hf(small_dir)
    np.testing.assert_array_equal(params["ln_f"]["scale"], tensors["transformer.ln_f.weight"])


def test_base_model_names_without_transformer_prefix(small_dir):
    """GPT2Model checkpoints (e.g. Cerebras-GPT-13B's) store 'h.0...' rather than 'transformer.h.0...'."""
    _edit_tensors(small_dir, lambda t: t.update({k.removeprefix("transformer."): t.pop(k) for k in list(t)}))
    _, params = hf.load_hf(small_dir)
    assert params["blocks"]["attn"]["c_attn"]["kernel"].shape == (2, 32, 3, 2, 16)

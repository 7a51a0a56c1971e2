"""HF interop for the families beside GPT-2: small random Llama, Mistral, Qwen2, Qwen3 and GPT-J models built with
transformers (nothing downloaded) import with transformers' logits (float32, <= 1e-4 of the largest logit) and
greedy tokens, export back into AutoModelForCausalLM with the same logits, and round-trip exactly."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model import gpt, hf
from model.generate import architecture, generate

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOL = 1e-4
V, T = 128, 48
ROPE_LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16}
# (id, config class, fields): each exercises a different set of architecture choices.
CASES = [
    ("llama-gqa-llama3", "LlamaConfig", dict(hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                             num_key_value_heads=2, rope_theta=500000.0, rope_scaling=ROPE_LLAMA3)),
    ("llama-mha-biases-tied-linear", "LlamaConfig", dict(hidden_size=64, intermediate_size=80, num_attention_heads=4,
                                                         attention_bias=True, mlp_bias=True, tie_word_embeddings=True,
                                                         rope_scaling={"rope_type": "linear", "factor": 2.0})),
    ("mistral-mqa", "MistralConfig", dict(hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                          num_key_value_heads=1, sliding_window=None, rope_theta=1e6)),
    ("qwen2-qkv-bias-tied", "Qwen2Config", dict(hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                                num_key_value_heads=2, tie_word_embeddings=True)),
    ("qwen3-wide-heads", "Qwen3Config", dict(hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                             num_key_value_heads=2, head_dim=24, rope_theta=1e6)),
    ("gptj-partial-rotary", "GPTJConfig", dict(n_embd=64, n_head=4, rotary_dim=8, n_inner=None)),
]
ARCH = {"LlamaConfig": "LlamaForCausalLM", "MistralConfig": "MistralForCausalLM", "Qwen2Config": "Qwen2ForCausalLM",
        "Qwen3Config": "Qwen3ForCausalLM", "GPTJConfig": "GPTJForCausalLM"}


def _hf_model(config_class: str, fields: dict, seed: int = 0):
    common = dict(vocab_size=V, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    if config_class == "GPTJConfig":
        common.update(n_layer=2, n_positions=T, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    else:
        common.update(num_hidden_layers=2, max_position_embeddings=T)
    conf = getattr(transformers, config_class)(**common, **fields)
    model = transformers.AutoModelForCausalLM.from_config(conf).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random everywhere: HF init leaves norms 1 and biases 0, which would not test their mapping
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if "norm" in name or "ln_" in name else 0.1 * noise)
    return model


def _hf_logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor(np.asarray(tokens), dtype=torch.long)).logits.float().numpy()


def _hf_greedy(model, prompt, n):
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(_hf_logits(model, [seq])[0, -1].argmax()))
    return seq[len(prompt):]


_forward = jax.jit(gpt.forward, static_argnums=0)


def _ours(cfg, params, tokens):
    return np.asarray(_forward(architecture(cfg), params, jnp.asarray(tokens)))


def _rel_diff(a, b):
    return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def imported(request, tmp_path_factory):
    _, config_class, fields = request.param
    model = _hf_model(config_class, fields)
    d = tmp_path_factory.mktemp("hf")
    model.save_pretrained(d, safe_serialization=True)
    cfg, params = hf.load_hf(d)
    return config_class, model, cfg, params


def test_import_matches_transformers_logits_greedy_and_parameter_count(imported):
    config_class, model, cfg, params = imported
    assert sum(p.numel() for p in model.parameters()) == cfg.parameters  # tied weights are one Parameter
    tokens = np.random.default_rng(1).integers(0, V, (2, T))
    diff = _rel_diff(_ours(cfg, params, tokens), _hf_logits(model, tokens))
    print(f"{config_class}: max |logit diff| / max |logit| = {diff:.2e}")
    assert diff <= TOL
    prompts = [tokens[0, :5].tolist(), tokens[1, :9].tolist()]  # left-padded to one bucket: positions per row
    out = generate(cfg, params, prompts, 8, eot_id=-1).tokens
    assert out == [_hf_greedy(model, p, 8) for p in prompts]


def test_export_loads_in_auto_model_and_round_trips(imported, tmp_path):
    config_class, model, cfg, params = imported
    arch = ARCH[config_class]
    res = hf.save_hf(tmp_path / "out", cfg, params, architecture=arch)
    assert res["architecture"] == arch and res["tokenizer"] is None  # a 128-token vocabulary has no GPT-2 tokenizer
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(theirs).__name__ == arch
    tokens = np.random.default_rng(2).integers(0, V, (2, T))
    assert _rel_diff(_ours(cfg, params, tokens), _hf_logits(theirs, tokens)) <= TOL
    cfg2, params2 = hf.load_hf(tmp_path / "out")
    assert cfg2.replace(name=cfg.name) == cfg
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_default_architecture_is_the_family(imported):
    config_class, _, cfg, _ = imported
    want = "LlamaForCausalLM" if config_class == "MistralConfig" else ARCH[config_class]  # Mistral only when asked
    assert hf.export_architecture(cfg) == want


def test_interleaved_rope_model_exports_as_llama_by_permuting_qk(tmp_path):
    """A model whose RoPE pairs (2i, 2i+1) (as the ModelZoo and Meta's original Llama compute it) is the same function
    as the half-paired one with each Q/K head's dims reordered; exporting it as LlamaForCausalLM permutes them."""
    model = _hf_model("LlamaConfig", CASES[0][2], seed=3)
    model.save_pretrained(tmp_path / "half", safe_serialization=True)
    cfg, params = hf.load_hf(tmp_path / "half")
    D = cfg.d_head
    to_interleaved = np.argsort(np.concatenate([np.arange(0, D, 2), np.arange(1, D, 2)]))
    inter = jax.tree.map(np.copy, params)
    inter["blocks"]["attn"]["c_q"]["kernel"] = params["blocks"]["attn"]["c_q"]["kernel"][..., to_interleaved]
    kv = params["blocks"]["attn"]["c_kv"]["kernel"].copy()
    kv[:, :, 0] = kv[:, :, 0][..., to_interleaved]
    inter["blocks"]["attn"]["c_kv"]["kernel"] = kv
    icfg = cfg.replace(rope_style="interleaved")
    tokens = np.random.default_rng(4).integers(0, V, (1, T))
    reference = _ours(cfg, params, tokens)
    assert _rel_diff(_ours(icfg, inter, tokens), reference) <= TOL
    hf.save_hf(tmp_path / "out", icfg, inter)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert _rel_diff(_hf_logits(theirs, tokens), reference) <= TOL


# ---- refusals ---------------------------------------------------------------------------------------------------

def _write_config(d, conf: dict):
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(conf))
    return d


LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
         "num_attention_heads": 4, "vocab_size": V, "max_position_embeddings": 8192}


@pytest.mark.parametrize("conf, field", [
    ({**LLAMA, "model_type": "mistral"}, "sliding_window"),  # MistralConfig's default window 4096 < 8192
    ({**LLAMA, "model_type": "mistral", "sliding_window": 1024}, "sliding_window"),
    ({**LLAMA, "model_type": "qwen2", "use_sliding_window": True, "max_window_layers": 1}, "sliding_window"),
    ({**LLAMA, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
    ({**LLAMA, "rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}}, "dynamic"),
    ({**LLAMA, "partial_rotary_factor": 0.5}, "partial_rotary_factor"),
    ({**LLAMA, "hidden_act": "gelu"}, "hidden_act"),
    ({**LLAMA, "model_type": "mixtral"}, "model_type"),
    ({"model_type": "gptj", "n_embd": 64, "n_layer": 2, "n_head": 4, "rotary_dim": None}, "rotary_dim"),
    ({"model_type": "gptj", "n_embd": 64, "n_layer": 2, "n_head": 4, "activation_function": "relu"},
     "activation_function"),
])
def test_unsupported_config_is_refused_naming_the_field(tmp_path, conf, field):
    with pytest.raises(hf.HFFormatError, match=field) as info:
        hf.load_hf(_write_config(tmp_path / "m", conf))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("conf", [
    {**LLAMA, "model_type": "mistral", "sliding_window": 8192},  # a window as long as the context never bites
    {**LLAMA, "model_type": "qwen2", "use_sliding_window": False, "sliding_window": 16},  # not applied
    {**LLAMA, "model_type": "qwen2", "use_sliding_window": True, "sliding_window": 16, "max_window_layers": 2},
])
def test_sliding_windows_that_never_apply_are_accepted(conf):
    from model.hf_configs import config_from_hf

    assert config_from_hf(conf).positions == "rotary"


@pytest.mark.parametrize("preset, arch, field", [
    ("llama-tiny", "GPT2LMHeadModel", "positions"),
    ("gptj-tiny", "LlamaForCausalLM", "norm"),
    ("qwen3-tiny", "LlamaForCausalLM", "qk_norm"),
    ("llama-tiny", "Qwen2ForCausalLM", "qkv_bias"),
    ("tiny", "GPTJForCausalLM", "positions"),
    ("llama-tiny", "BertModel", "unknown HF architecture"),
])
def test_export_refuses_an_architecture_that_cannot_hold_the_model(tmp_path, preset, arch, field):
    from model.config import get_config

    cfg = get_config(preset)
    with pytest.raises(hf.HFFormatError, match=field):
        hf.save_hf(tmp_path / "x", cfg, {}, architecture=arch)
    assert not (tmp_path / "x").exists()

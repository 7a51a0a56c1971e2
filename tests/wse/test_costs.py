"""The simulator's own FLOP and parameter counts agree with model.config's (same convention, computed separately)."""

from types import SimpleNamespace

import pytest

from model.config import get_config
from model.presets import ALL_PRESETS
from wse.costs import forward_flops_per_token, model_layers, parameters, training_flops_per_token
from wse.errors import PlanError


@pytest.mark.parametrize("name", list(ALL_PRESETS))  # Cerebras-GPT and every family: one description, one count
@pytest.mark.parametrize("seq_len", [1, 100, 2048])
def test_layer_flops_sum_to_config_forward_flops(name, seq_len):
    cfg = get_config(name)
    t = min(seq_len, cfg.max_seq_len)
    for split in (True, False):
        layers = model_layers(cfg, t, split_blocks=split)
        assert forward_flops_per_token(layers) == pytest.approx(cfg.forward_flops_per_token(t), rel=1e-12)
        assert training_flops_per_token(layers) == pytest.approx(cfg.flops_per_token_algorithmic(t), rel=1e-12)
        assert parameters(layers) == cfg.parameters


def test_layer_sequence_shape():
    cfg = get_config("111M")
    names = [layer.name for layer in model_layers(cfg, 2048)]
    assert names[0] == "embedding" and names[-1] == "head" and len(names) == 2 * cfg.n_layers + 2
    assert names[1:3] == ["block0.attention", "block0.ffn"]
    head = model_layers(cfg, 2048)[-1]
    assert head.replica_params == cfg.vocab_size * cfg.d_model  # the tied matrix is needed where the logits are


def test_duck_typed_shape_and_refusals():
    shape = SimpleNamespace(n_layers=2, d_model=64, n_heads=4, d_head=16, d_ffn=256, vocab_size=100, max_seq_len=32)
    assert len(model_layers(shape, 32)) == 6
    with pytest.raises(PlanError, match="lacks 'd_ffn'"):
        model_layers(SimpleNamespace(**{k: v for k, v in vars(shape).items() if k != "d_ffn"}), 32)
    with pytest.raises(PlanError, match="max_seq_len"):
        model_layers(shape, 64)
    # query heads narrower (or wider) than the model, as Qwen3-32B's 64 x 128 on a 5,120-wide model
    narrow = model_layers(SimpleNamespace(**{**vars(shape), "d_head": 8}), 32)
    d, q = 64, 4 * 8
    assert narrow[1].params == d * q + 2 * d * q + q * d + (q + 2 * q + d) + 2 * d  # Q, K, V, O, biases, norm
    assert narrow[1].flops_per_token == 2 * (4 * d * q) + 2 * 2 * 32 * q


def test_parallel_residual_and_head_bias():
    """GPT-J: one LayerNorm per block (the FFN shares the attention's), an untied head with a bias of V values."""
    from wse.validation.shapes import PLANNING_SHAPES

    gptj = PLANNING_SHAPES["gptj-6b"][0]
    layers = model_layers(gptj, 2048)
    assert parameters(layers) == pytest.approx(6.05e9, rel=0.01)  # GPT-J 6B (EleutherAI: 6,053,381,344)
    sequential = model_layers(SimpleNamespace(**{**vars(gptj), "parallel_residual": False, "head_bias": False}), 2048)
    assert parameters(sequential) == parameters(layers) + 28 * 2 * 4096 - 50257  # one more norm a block, no bias
    qwen = get_config("qwen3-32b")
    assert parameters(model_layers(qwen, 1)) == qwen.parameters == pytest.approx(32.76e9, rel=0.01)  # Qwen3-32B: 32.8B

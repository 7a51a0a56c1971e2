import json

import pytest

from model.config import PRESETS, PUBLISHED_PRESETS, ModelConfigError, get_config

# The parameter column of the Cerebras-GPT architecture table (cerebras-gpt.md).
PUBLISHED_PARAMETERS = {
    "111M": 111_050_496, "256M": 255_977_024, "590M": 590_310_912, "1.3B": 1_315_723_264,
    "2.7B": 2_651_553_280, "6.7B": 6_658_404_352, "13B": 12_853_386_240,
}


@pytest.mark.parametrize("name", PUBLISHED_PRESETS)
def test_published_parameter_counts(name):
    cfg = get_config(name)
    assert cfg.parameters == PUBLISHED_PARAMETERS[name.removesuffix("-mup")]
    assert cfg.n_heads * cfg.d_head == cfg.d_model and cfg.d_ffn == 4 * cfg.d_model
    assert cfg.vocab_size == 50257 and cfg.max_seq_len == 2048


def test_mup_width_multipliers():
    assert [get_config(f"{n}-mup").width_multiplier for n in ("111M", "256M", "590M", "1.3B", "2.7B")] == [3, 4.25, 6, 8, 10]
    assert get_config("111M").width_multiplier == 1


def test_flops_megatron_formula():
    # 72 L h^2 + 12 s L h + 6 h V  (Megatron-LM, per token, training, no recomputation)
    c = get_config("1.3B")
    L, h, s, V = c.n_layers, c.d_model, c.max_seq_len, c.vocab_size
    assert c.flops_per_token_algorithmic() == pytest.approx(72 * L * h * h + 12 * s * L * h + 6 * h * V)
    assert c.flops_per_token_6n() == 6 * c.parameters
    assert c.summary()["train_flops_6nd"] == 6 * c.parameters * 20 * c.parameters


def test_cpu_presets_are_small():
    assert 2e6 < get_config("tiny").parameters < 1e7
    assert get_config("small").parameters < 5e7
    assert set(PUBLISHED_PRESETS) < set(PRESETS)


def test_model_file_yaml_and_json(tmp_path):
    y = tmp_path / "m.yaml"
    y.write_text("preset: tiny\nn_layers: 3\n")
    assert get_config(y).n_layers == 3 and get_config(y).name == "m"
    j = tmp_path / "m.json"
    j.write_text(json.dumps({"n_layers": 2, "d_model": 64, "n_heads": 2, "d_head": 32, "d_ffn": 256}))
    assert get_config(j).d_model == 64


@pytest.mark.parametrize(
    "text, needle",
    [
        ("preset: tiny\nn_layer: 3\n", "unknown field 'n_layer' (did you mean 'n_layers'?)"),
        ("preset: tiny\nn_kv_heads: 3\n", "n_kv_heads (3) must divide n_heads (4)"),
        ("preset: tiny\nd_model: -1\n", "d_model"),
        ("n_layers: 2\n", "missing field 'd_model'"),
        ("preset: huge\n", "unknown model 'huge'"),
        (": : :\n", "not valid YAML"),
    ],
)
def test_bad_model_files_name_the_problem(tmp_path, text, needle):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ModelConfigError) as info:
        get_config(p)
    assert needle in str(info.value) and "\n" not in str(info.value)

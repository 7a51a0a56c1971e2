"""Cerebras ModelZoo configs of the other families (models/nlp/{llama,mistral,gptj}/configs, model sections as the
ModelZoo publishes them) read as this project's model; what the model cannot compute is refused by name."""

import pytest
import yaml

from model.config import ModelConfigError, get_config

# params_llama3p1_70b_msl_128k.yaml
LLAMA31_70B = {
    "name": "llama", "vocab_size": 128256, "hidden_size": 8192, "position_embedding_type": "rotary",
    "pos_scaling_factor": 8.0, "rope_theta": 500000.0, "rotary_dim": 128, "share_embedding_weights": False,
    "max_position_embeddings": 131072, "embedding_dropout_rate": 0.0, "embedding_layer_norm": False,
    "pos_scaling_extra_args": {"high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192},
    "pos_scaling_type": "llama3", "num_hidden_layers": 80, "dropout_rate": 0.0, "layer_norm_epsilon": 1.0e-05,
    "norm_type": "rmsnorm", "num_heads": 64, "attention_type": "scaled_dot_product",
    "attention_module": "multiquery_attention", "attention_dropout_rate": 0.0,
    "use_projection_bias_in_attention": False, "use_ffn_bias_in_attention": False,
    "extra_attention_params": {"num_kv_groups": 8}, "filter_size": 28672, "nonlinearity": "swiglu",
    "use_ffn_bias": False, "use_bias_in_output": False, "loss_scaling": "num_tokens", "loss_weight": 1.0,
    "initializer_range": 0.02, "mixed_precision": True, "fp16_type": "cbfloat16", "fold_rope_consts": False,
}
# params_mistral_7B.yaml (v0.1: a 4096-token sliding window on a 32768 context)
MISTRAL_7B = {
    "name": "mistral", "vocab_size": 32000, "hidden_size": 4096, "position_embedding_type": "rotary",
    "rotary_dim": 128, "share_embedding_weights": False, "max_position_embeddings": 32768,
    "embedding_dropout_rate": 0.0, "num_hidden_layers": 32, "dropout_rate": 0.0, "layer_norm_epsilon": 1.0e-05,
    "norm_type": "rmsnorm", "num_heads": 32, "attention_type": "scaled_dot_product",
    "attention_module": "multiquery_attention", "extra_attention_params": {"num_kv_groups": 8},
    "attention_dropout_rate": 0.0, "use_projection_bias_in_attention": False, "use_ffn_bias_in_attention": False,
    "attention_sliding_window_length": 4096, "filter_size": 14336, "nonlinearity": "swiglu", "use_ffn_bias": False,
    "use_bias_in_output": False, "fp16_type": "cbfloat16", "mixed_precision": True,
}
# continuous_pretraining/configs/params_gptj_6B_TRC2.yaml
GPTJ_6B = {
    "name": "gptj", "vocab_size": 50400, "position_embedding_type": "rotary", "embedding_dropout_rate": 0.0,
    "share_embedding_weights": False, "hidden_size": 4096, "num_heads": 16, "num_hidden_layers": 28,
    "max_position_embeddings": 512, "attention_type": "scaled_dot_product", "use_projection_bias_in_attention": False,
    "use_ffn_bias_in_attention": False, "use_ffn_bias": True, "filter_size": 16384, "nonlinearity": "gelu",
    "attention_dropout_rate": 0.0, "residual_dropout_rate": 0.0, "rotary_dim": 64, "layer_norm_epsilon": 1e-05,
    "use_bias_in_output": True, "initializer_range": 0.02, "loss_scaling": "num_tokens",
    "initializer": {"name": "truncated_normal", "mean": 0.0, "std": 0.015625}, "fp16_type": "cbfloat16",
    "mixed_precision": True,
}


def _file(tmp_path, model, optimizer=None, schedulers=None):
    init = {"model": model, "optimizer": optimizer or {"AdamW": {"betas": [0.9, 0.95], "weight_decay": 0.1}}}
    if schedulers:
        init["schedulers"] = schedulers
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"init": init, "fit": {"train_dataloader": {"batch_size": 16}}}}))
    return path


def test_llama31_70b_reads_as_the_published_shape_with_interleaved_rope(tmp_path):
    cfg = get_config(_file(tmp_path, LLAMA31_70B))
    preset = get_config("llama3.1-70b")
    assert cfg.parameters == preset.parameters == 70_553_706_496
    assert (cfg.kv_heads, cfg.norm, cfg.activation, cfg.ffn_gated, cfg.tied_embeddings) == (8, "rmsnorm", "silu",
                                                                                            True, False)
    assert (cfg.rope_scaling, cfg.rope_scaling_factor, cfg.rope_original_max_seq_len) == ("llama3", 8.0, 8192)
    assert cfg.rope_style == "interleaved" and cfg.rope_theta == 500000.0 and cfg.rotary_dim is None
    assert cfg.replace(name=preset.name, rope_style="half", batch_size=preset.batch_size) == preset


def test_mistral_sliding_window_is_refused_and_reads_without_it(tmp_path):
    with pytest.raises(ModelConfigError, match="attention_sliding_window_length"):
        get_config(_file(tmp_path, MISTRAL_7B))
    cfg = get_config(_file(tmp_path, {k: v for k, v in MISTRAL_7B.items() if k != "attention_sliding_window_length"}))
    assert (cfg.n_layers, cfg.d_model, cfg.kv_heads, cfg.d_ffn, cfg.vocab_size) == (32, 4096, 8, 14336, 32000)
    assert cfg.parameters == 7_241_732_096  # Mistral 7B v0.1 (32000-token vocabulary)


def test_gptj_reads_as_a_parallel_block_with_a_biased_head(tmp_path):
    schedule = [{"SequentialLR": {"schedulers": [
        {"LinearLR": {"initial_learning_rate": 0.0, "end_learning_rate": 6e-06, "total_iters": 500}},
        {"CosineDecayLR": {"initial_learning_rate": 6e-06, "end_learning_rate": 1.2e-06, "total_iters": 50000}},
        {"ConstantLR": {"learning_rate": 1.2e-06}}]}}]
    cfg = get_config(_file(tmp_path, GPTJ_6B, {"adamw": {"eps": 1e-06, "weight_decay": 0.1}}, schedule))
    assert cfg.parallel_residual and cfg.lm_head_bias and cfg.mlp_bias and not cfg.qkv_bias and not cfg.attn_out_bias
    assert (cfg.rotary_dims, cfg.d_head, cfg.rope_style, cfg.activation) == (64, 256, "interleaved", "gelu")
    assert (cfg.init_std, cfg.adam_eps, cfg.learning_rate, cfg.lr_decay) == (0.015625, 1e-6, 6e-6, "cosine")
    assert cfg.parameters == get_config("gptj-6b").parameters  # rotary: the 512 context adds no parameters


@pytest.mark.parametrize("key, value", [
    ("use_untied_layer_norm", True), ("pos_scaling_type", "yarn"), ("nonlinearity", "reglu"),
    ("position_embedding_type", "alibi"), ("norm_type", "biasless-layernorm"), ("name", "falcon"),
])
def test_unsupported_family_switches_are_refused_by_name(tmp_path, key, value):
    with pytest.raises(ModelConfigError, match=key):
        get_config(_file(tmp_path, {**GPTJ_6B, key: value}))


def test_the_catalog_does_not_import_its_readers():
    """No import circle: the catalog (model/presets.py) imports no reader, and the ModelZoo reader does not import
    model.config (whose get_config calls it)."""
    import ast
    from pathlib import Path

    import model

    def imports(name):
        tree = ast.parse((Path(model.__file__).parent / f"{name}.py").read_text(encoding="utf-8"))
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}

    assert not {m for m in imports("presets") if m.startswith("model")}
    for reader in ("modelzoo", "modelzoo_training"):
        assert "model.config" not in imports(reader), reader

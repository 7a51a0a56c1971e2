"""Cerebras ModelZoo configs (both layouts) as models (`wse info`, `wse plan`) and as run configs (`wse train`):
the published Cerebras-GPT 111M numbers (cerebras-gpt.md) map onto the 111M presets; unsupported math is refused."""

import copy
import json

import pytest
import yaml

from model.config import ModelConfigError, get_config
from runtime.cli import main
from runtime.config import load_config

# Cerebras-GPT 111M as ModelZoo 2.x writes it (gpt3/configs/Cerebras_GPT/111m.yaml): 10 x 768, 12 heads, FFN 3072,
# batch 120, AdamW 0.9/0.95, peak 6e-4 after 1525 warmup steps, linear decay to 6e-5 over 7512 more, clip 1.0.
MODEL_111M = {
    "name": "gpt3", "hidden_size": 768, "position_embedding_type": "learned", "share_embedding_weights": True,
    "max_position_embeddings": 2048, "vocab_size": 50257, "num_hidden_layers": 10, "dropout_rate": 0.0,
    "layer_norm_epsilon": 1.0e-5, "num_heads": 12, "attention_type": "scaled_dot_product",
    "attention_dropout_rate": 0.0, "use_projection_bias_in_attention": True, "use_ffn_bias_in_attention": True,
    "filter_size": 3072, "nonlinearity": "gelu", "use_ffn_bias": True, "use_bias_in_output": False,
    "initializer": {"name": "truncated_normal", "mean": 0.0, "std": 0.02, "a": -0.04, "b": 0.04},
    "output_layer_initializer": {"name": "truncated_normal", "mean": 0.0, "std": 0.004472135954999579},
    "loss_scaling": "batch_size", "loss_weight": 0.00048828125, "mixed_precision": True, "fp16_type": "bfloat16",
}
MUP = {"mup_base_hidden_size": 256, "mup_base_filter_size": 1024, "scale_qk_dot_by_d": True,
       "output_logits_alpha": 1.0, "embeddings_scale": 10}


def current_layout(model=MODEL_111M, peak=6e-4, decay="LinearLR"):
    return {"trainer": {
        "init": {"backend": {"backend_type": "CSX"}, "model": dict(model),
                 "optimizer": {"AdamW": {"betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "correct_bias": True}},
                 "schedulers": [{"SequentialLR": {"schedulers": [
                     {"LinearLR": {"initial_learning_rate": 0.0, "end_learning_rate": peak, "total_iters": 1525}},
                     {decay: {"initial_learning_rate": peak, "end_learning_rate": peak / 10, "total_iters": 7512}}]}}],
                 "precision": {"enabled": True, "fp16_type": "bfloat16", "max_gradient_norm": 1.0},
                 "loop": {"max_steps": 9037, "eval_frequency": 903, "eval_steps": 1546},
                 "checkpoint": {"steps": 903}, "callbacks": [{"ComputeNorm": {}}]},
        "fit": {"train_dataloader": {"data_processor": "GptHDF5DataProcessor", "data_dir": ["./pile/0/"],
                                     "batch_size": 120}}}}


def older_layout(model=MODEL_111M, peak=6e-4, decay="Linear", adjust=None):
    optimizer = {"optimizer_type": "AdamW", "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "max_gradient_norm": 1.0,
                 "weight_decay_rate": 0.1, "correct_bias": True, "log_summaries": True,
                 "learning_rate": [
                     {"scheduler": "Linear", "initial_learning_rate": 0.0, "end_learning_rate": peak, "steps": 1525},
                     {"scheduler": decay, "initial_learning_rate": peak, "end_learning_rate": peak / 10, "steps": 7512}]}
    if adjust:
        optimizer["adjust_learning_rate"] = {"decoder_kernel": adjust}
    return {"train_input": {"data_processor": "GptHDF5DataProcessor", "batch_size": 120, "shuffle": True},
            "model": dict(model), "optimizer": optimizer,
            "runconfig": {"max_steps": 9037, "checkpoint_steps": 903, "log_steps": 1}}


def write(tmp_path, tree, name="zoo.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def old_mup_model():
    model = {**MODEL_111M, "scale_qk_dot_by_d": True, "output_logits_scale": 1 / 3, "embeddings_scale": 10}
    model["initializer"] = {**model["initializer"], "std": 0.08}
    return model


@pytest.mark.parametrize("tree, preset", [
    (current_layout(), "111M"),
    (older_layout(), "111M"),
    (current_layout({**MODEL_111M, **MUP, "initializer": {"std": 0.08}}, peak=6e-3), "111M-mup"),
    (older_layout(old_mup_model(), peak=6e-3, adjust=1 / 3), "111M-mup"),
    ({k: v for k, v in MODEL_111M.items()}, "111M"),  # a bare model section
], ids=["2.x", "1.x", "2.x-mup", "1.x-mup", "model-only"])
def test_modelzoo_111m_is_the_111m_preset(tmp_path, tree, preset):
    cfg = get_config(write(tmp_path, tree))
    assert cfg.name == "zoo" and cfg.replace(name=preset) == get_config(preset)


def test_info_and_plan_read_a_modelzoo_file(tmp_path, capsys):
    path = write(tmp_path, current_layout())
    assert main(["info", "--model", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["parameters"] == 111_050_496 and info["n_layers"] == 10
    assert main(["plan", "--model", str(path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plan["model"] == "zoo" and plan["batch_size"] == 120


@pytest.mark.parametrize("layout", [current_layout, older_layout], ids=["2.x", "1.x"])
def test_train_reads_model_optimizer_and_schedule(tmp_path, capsys, layout):
    run = load_config(write(tmp_path, layout()), ["train.steps=100"]).resolve()
    t = run.train
    assert run.gpt_config().replace(name="111M") == get_config("111M")
    assert (t.steps, t.batch_size, t.lr, t.warmup_steps, t.decay_steps, t.decay) == (100, 120, 6e-4, 1525, 9037, "linear")
    assert (t.min_lr_ratio, t.weight_decay, t.grad_clip, t.checkpoint_every) == (pytest.approx(0.1), 0.1, 1.0, 903)
    assert t.dtype == "bfloat16" and run.data == "builtin"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("note: ") and "Cerebras ModelZoo" in err
    data_dir = "trainer.fit.train_dataloader.data_dir" if layout is current_layout else "train_input.data_processor"
    unused = err.split("not used")[1]
    assert data_dir in unused and "max_steps" not in unused
    assert not [k for k, v in MODEL_111M.items() if not isinstance(v, dict) and f"model.{k}" in unused]


def test_cosine_decay_maps(tmp_path):
    t = load_config(write(tmp_path, older_layout(peak=2e-4, decay="CosineDecay"))).resolve().train
    assert (t.decay, t.lr, t.min_lr_ratio) == ("cosine", 2e-4, pytest.approx(0.1))
    t = load_config(write(tmp_path, current_layout(peak=2e-4, decay="CosineDecayLR"))).resolve().train
    assert (t.decay, t.lr) == ("cosine", 2e-4)


def _edit(tree, path, value):
    tree = copy.deepcopy(tree)
    node = tree
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return tree


MODEL = ("trainer", "init", "model")
REFUSED = [
    (MODEL + ("position_embedding_type",), "alibi"),
    (MODEL + ("attention_sliding_window_length",), 1024),
    (MODEL + ("nonlinearity",), "relu"),
    (MODEL + ("pos_scaling_type",), "yarn"),
    (MODEL + ("dropout_rate",), 0.1),
    (MODEL + ("num_heads",), 7),
    (MODEL + ("scale_qk_dot_by_d",), True),
    (("trainer", "init", "optimizer"), {"SGD": {"momentum": 0.9}}),
    (("trainer", "init", "optimizer", "AdamW", "betas"), [0.9, 0.999]),
    (("trainer", "init", "schedulers", 0, "SequentialLR", "schedulers", 0, "LinearLR", "initial_learning_rate"), 1e-5),
]


@pytest.mark.parametrize("path, value", REFUSED, ids=[str(p[-1]) for p, _ in REFUSED])
def test_unsupported_math_is_refused_by_name(tmp_path, capsys, path, value):
    file = write(tmp_path, _edit(current_layout(), path, value))
    name = next(p for p in reversed(path) if isinstance(p, str) and p not in ("LinearLR", "SequentialLR"))
    with pytest.raises(ModelConfigError, match=name):
        get_config(file)
    for argv in (["info", "--model", str(file)], ["train", "--config", str(file)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and name in err


def test_multi_phase_trainer_is_refused(tmp_path):
    with pytest.raises(ModelConfigError, match="trainer is a list of 2 phases"):
        get_config(write(tmp_path, {"trainer": [current_layout(), current_layout()]}))

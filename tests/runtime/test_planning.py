"""One model description for the runtime and the planner: `wse plan` and `wse info` read the model config's
architecture fields (the families' presets, model files with family fields, ModelZoo files, planning-only published
shapes), and the planner costs what the model has."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from model.config import get_config
from model.presets import ALL_PRESETS, FAMILY_PRESETS
from runtime.cli import main
from runtime.planning import config_of_shape, load_model, load_shape
from wse.costs import model_layers, parameters, training_flops_per_token
from wse.shape import as_shape
from wse.validation.shapes import PLANNING_SHAPES


def _json(capsys, *argv) -> dict:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(FAMILY_PRESETS) + ["llama3-8b", "qwen2-72b", "gpt-1t"])
def test_info_accepts_every_model_plan_accepts_and_counts_what_the_planner_counts(capsys, name):
    info = _json(capsys, "info", "--model", name)
    cfg, _ = load_model(name)
    assert info["parameters"] == cfg.parameters == parameters(model_layers(load_shape(name), 1))
    layers = model_layers(load_shape(name), cfg.max_seq_len)
    assert info["flops_per_token_algorithmic"] == pytest.approx(training_flops_per_token(layers), rel=1e-12)
    assert info["n_kv_heads"] == as_shape(cfg).n_kv_heads


def test_planning_only_shapes_are_model_configs():
    for name, (shape, _) in PLANNING_SHAPES.items():
        planned = as_shape(load_shape(name)) if name not in ALL_PRESETS else as_shape(config_of_shape(shape))
        assert replace(planned, batch_size=shape.batch_size) == shape, name
        assert planned.batch_size == shape.batch_size or name in ALL_PRESETS  # no batch: the rule's, as before


def test_a_family_model_file_plans_what_it_describes(tmp_path, capsys):
    """The architecture fields of a model file reach the planner: a Qwen3-style file with grouped K/V heads, Q/K
    norms, untied head and no biases plans with their counts, and the same shape as GPT-2 plans differently."""
    path = tmp_path / "qwen.yaml"
    path.write_text("preset: qwen3-tiny\nn_layers: 12\ntied_embeddings: false\n")
    cfg = get_config(str(path))
    shape = as_shape(load_shape(str(path)))
    assert (shape.n_kv_heads, shape.qk_norm, shape.tied_embeddings, shape.norm, shape.qkv_bias) == (
        2, True, False, "rmsnorm", False)
    plan = _json(capsys, "plan", "--model", str(path), "--system", "cs2", "--task", "decode", "--batch-size", "4")
    gpt2 = tmp_path / "gpt2.yaml"
    gpt2.write_text("preset: tiny\nn_layers: 12\nn_heads: 4\nd_head: 48\nd_ffn: 384\n")
    same_shape = _json(capsys, "plan", "--model", str(gpt2), "--system", "cs2", "--task", "decode", "--batch-size", "4")
    assert plan["memory"]["kv_cache_bytes"] * 2 == same_shape["memory"]["kv_cache_bytes"]  # 2 K/V heads of 4
    assert plan["memory"]["weights_bytes"] != same_shape["memory"]["weights_bytes"]
    assert parameters(model_layers(shape, 1)) == cfg.parameters


def test_legacy_planning_names_in_a_model_file(tmp_path, capsys):
    """Model files written for the planner before the model had the fields still plan, as the same model."""
    old = tmp_path / "old.yaml"
    old.write_text("preset: 1.3B\nbiases: false\nlearned_positions: false\nhead_bias: true\ntied_embeddings: false\n")
    cfg, _ = load_model(str(old))
    assert (cfg.norm, cfg.qkv_bias, cfg.mlp_bias, cfg.positions, cfg.lm_head_bias) == ("rmsnorm", False, False,
                                                                                      "rotary", True)
    assert _json(capsys, "info", "--model", str(old))["parameters"] == cfg.parameters
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: 1.3B\nbiases: maybe\n")
    assert main(["plan", "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'biases' must be true or false" in err and err.count("\n") == 1


def test_published_family_presets_plan_on_a_wafer_and_on_gpus(capsys):
    """`wse plan --model llama3.1-8b` reads the preset (no published batch: the rule's), on a CS-3 and on 8 H100s;
    the gated FFN, the grouped K/V heads and the untied head are in its parameters."""
    wafer = _json(capsys, "plan", "--model", "llama3.1-8b", "--system", "cs3")
    gpus = _json(capsys, "plan", "--model", "llama3.1-8b", "--system", "h100")
    assert "published rule" in wafer["details"]["batch_note"] and wafer["details"]["parameters"] == 8030261248
    assert gpus["tokens_per_s"] > 0 and gpus["memory"]["host_bytes"] == 8 * 8030261248 * 16  # streamed: state on host
    assert "batch_size" not in ALL_PRESETS["llama3.1-8b"]


def test_a_huggingface_directory_plans_from_its_config_json(tmp_path, capsys):
    """`wse plan --model DIR` and `wse info --model DIR` read a HuggingFace directory's config.json (no weights, no
    JAX): the same model as the preset it was exported from; a directory without config.json is one error line."""
    from model.hf_configs import config_to_hf

    hf_dir = tmp_path / "my-llama"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps(config_to_hf(get_config("mistral-tiny"))))
    cfg, batch = load_model(str(hf_dir))
    assert cfg.parameters == get_config("mistral-tiny").parameters and not batch and cfg.name == "my-llama"
    assert _json(capsys, "info", "--model", str(hf_dir))["n_kv_heads"] == 1
    plan = _json(capsys, "plan", "--model", str(hf_dir), "--system", "h100", "--seq-len", "256")
    assert plan["tokens_per_s"] > 0
    (tmp_path / "empty").mkdir()
    assert main(["plan", "--model", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model directory") and "has no config.json" in err and err.count("\n") == 1


def test_modelzoo_llama_and_gptj_files_plan_and_show(tmp_path, capsys):
    """Issue 25 item 4: ModelZoo's Llama and GPT-J config files (once refused for 'rotary') plan and show in `wse
    info` as the published shapes; the file's batch is the plan's."""
    import yaml

    from tests.model.test_modelzoo_families import GPTJ_6B, LLAMA31_70B

    for name, model, preset in (("llama", LLAMA31_70B, "llama3.1-70b"), ("gptj", GPTJ_6B, "gptj-6b")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"trainer": {"init": {"model": model, "optimizer": {"AdamW": {}}},
                                                    "fit": {"train_dataloader": {"batch_size": 16}}}}))
        info = _json(capsys, "info", "--model", str(path))
        assert info["parameters"] == get_config(preset).parameters
        plan = _json(capsys, "plan", "--model", str(path), "--system", "cs3", "--seq-len", "512")
        assert plan["batch_size"] == 16 and "batch_note" not in plan["details"]


def test_waferllms_figures_by_hand_as_the_reference_shows(tmp_path, capsys):
    """docs/reference.md: C3 and C4 from the command line on a 720 x 720 WSE-2 system file."""
    from wse.validation.published import CALIBRATION

    published = {o.id: o.published for o in CALIBRATION if o.id in ("C3", "C4")}
    path = tmp_path / "wse2-720.yaml"
    path.write_text("name: WSE-2 720x720 (WaferLLM)\nbase: cs2\nchip: {grid_cols: 720, grid_rows: 720}\n")
    for key, args in (("C3", ["--task", "generate", "--prompt-len", "4096", "--new-tokens", "4096"]),
                      ("C4", ["--task", "prefill", "--prompt-len", "4096"])):
        assert main(["plan", "--model", "llama3-8b", "--system", str(path), *args, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["tokens_per_s"] == pytest.approx(published[key], rel=0.01)

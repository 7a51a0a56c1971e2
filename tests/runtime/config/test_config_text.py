"""Settings keep the type their field declares (issue 28, item 4): YAML 1.1's number rules never reach a path, a name
or a project, from the command line or from a file; numbers still parse as numbers; a key given twice in a YAML file
is one `error:` line naming the key and both lines. Pure Python (no JAX)."""

import pytest

from model.config import get_config
from model.errors import ModelConfigError
from runtime.cli import main
from runtime.config import load_config
from runtime.config.recipes import run_dir_of
from runtime.errors import UserError

# What PyYAML makes of them: 20240105, 493 (octal), 31 (hex), 1000.0, 1.1
AS_WRITTEN = ["2024_01_05", "0755", "0x1F", "1e3", "1.10"]


@pytest.mark.parametrize("text", AS_WRITTEN)
def test_string_settings_stay_as_typed_on_the_command_line(text):
    cfg = load_config(None, [f"train.run_dir={text}", f"data={text}", f"observe.wandb_project={text}"])
    assert cfg.train.run_dir == text and cfg.data == text and cfg.observe.wandb_project == text
    assert str(run_dir_of(cfg)) == text  # where the run writes


@pytest.mark.parametrize("text", AS_WRITTEN)
def test_string_settings_stay_as_written_in_a_yaml_file(tmp_path, text):
    (tmp_path / "run.yaml").write_text(f"data: {text}\ntrain:\n  run_dir: {text}\n  lr: 1e-3\nobserve:\n"
                                       f"  wandb_project: {text}\nmodel:\n  preset: tiny\n  name: {text}\n")
    cfg = load_config(tmp_path / "run.yaml")
    assert cfg.train.run_dir == text and cfg.data == text and cfg.observe.wandb_project == text
    assert cfg.gpt_config().name == text
    assert cfg.train.lr == 1e-3  # a number field still reads YAML's numbers


def test_a_model_file_keeps_its_name_as_written(tmp_path):
    (tmp_path / "m.yaml").write_text("preset: tiny\nname: 0755\n")
    assert get_config(str(tmp_path / "m.yaml")).name == "0755"


def test_number_settings_still_parse_as_numbers():
    cfg = load_config(None, ["train.lr=1e-3", "train.steps=20", "mesh.devices=2", "train.run_dir=null",
                             "execution.remat=false", "observe.wandb=off"])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.train.steps == 20 and cfg.mesh.devices == 2 and cfg.train.run_dir is None
    assert cfg.execution.remat == "none"
    quoted = load_config(None, ["train.run_dir='my run'"])
    assert quoted.train.run_dir == "my run"


def test_a_duplicate_key_in_a_run_file_is_one_line_naming_it_and_both_lines(tmp_path, capsys):
    run = tmp_path / "run.yaml"
    run.write_text("train:\n  steps: 5\n  lr: 0.01\nmodel: tiny\ntrain:\n  steps: 7\n")
    with pytest.raises(UserError, match=r"key 'train' appears twice \(lines 1 and 5\)"):
        load_config(run)
    assert main(["train", "--config", str(run), f"train.run_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "'train' appears twice" in err, err
    run.write_text("train:\n  steps: 5\n  steps: 6\n")
    with pytest.raises(UserError, match=r"key 'steps' appears twice \(lines 2 and 3\)"):
        load_config(run)
    assert not (tmp_path / "r").exists()


def test_a_duplicate_key_in_a_model_file_is_refused(tmp_path):
    (tmp_path / "m.yaml").write_text("preset: tiny\nn_layers: 2\nn_layers: 3\n")
    with pytest.raises(ModelConfigError, match=r"key 'n_layers' appears twice \(lines 2 and 3\)"):
        get_config(str(tmp_path / "m.yaml"))

"""`wse demo` end to end in a real subprocess (with a couple of steps): every step runs and reports its figures and
where it wrote them; an --out directory that holds something is refused before anything runs."""

import json
import os
import subprocess
import sys

import pytest

FIELDS = ("val_loss", "unigram_entropy", "below_unigram_nats", "task_loss_before_finetune", "finetune_val_loss",
          "sample", "samples", "run_dir", "finetune_dir", "plan_picture", "plan_timeline", "loss_plot",
          "finetune_loss_plot", "wall_s", "mesh", "mode", "plan")


def _wse(args, tmp_path_factory, cwd):
    env = dict(os.environ, WSE_CACHE_DIR=str(tmp_path_factory.getbasetemp() / "wse-cache"))  # shared in a session
    env.pop("XLA_FLAGS", None)  # the demo sets up its own 8 emulated devices
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("demo")
    proc = _wse(["demo", "--steps", "2", "--finetune-steps", "1", "--out", "out", "--json"], tmp_path_factory, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    missing = [f for f in FIELDS if f not in result]
    assert not missing
    assert result["model"] == "demo" and result["parameters"] == 5_744_160  # the width measured to learn fastest
    assert result["mesh"] == {"data": 1, "stage": 1, "model": 1} and result["mode"] == "data"  # fastest on 2 cores
    assert result["finetune_mesh"] == {"data": 8, "stage": 1, "model": 1}  # the emulated 8-device mesh
    assert set(result["sample_words_in_corpus"]) == set(result["samples"])
    assert result["plan"]["system"] == "CS-2" and result["plan"]["step_time_s"] > 0
    assert 5 < result["unigram_entropy"] < 8 and 0 < result["val_loss"] < 12 and 0 < result["finetune_val_loss"] < 12
    assert result["below_unigram_nats"] == pytest.approx(result["unigram_entropy"] - result["val_loss"])
    assert isinstance(result["sample"], str)
    for key in ("plan_picture", "plan_timeline", "loss_plot", "finetune_loss_plot", "summary"):
        assert (cwd / result[key]).is_file(), key
    for key in ("run_dir", "finetune_dir"):
        assert (cwd / result[key] / "checkpoints").is_dir(), key
    assert json.loads((cwd / result["summary"]).read_text())["val_loss"] == result["val_loss"]
    for step in ("1. wafer plan", "2. data", "3. training", "4. fine-tuning", "5. generation"):
        assert step in proc.stderr  # the narration


def test_demo_refuses_a_used_out_dir(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("demo-used")
    (cwd / "out").mkdir()
    (cwd / "out" / "keep.txt").write_text("mine")
    proc = _wse(["demo", "--out", "out"], tmp_path_factory, cwd)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --out out") and proc.stderr.count("\n") == 1
    assert sorted(p.name for p in (cwd / "out").iterdir()) == ["keep.txt"]

"""A run that diverges (issue 28, item 1): a NaN or infinite loss or gradient norm stops the run before anything
non-finite is saved, ``train.keep`` keeps the last finite checkpoint, and the message names the step, that
checkpoint and a command that works; resuming with another learning rate is allowed and reported. On the micro model
of test_train (a module fixture)."""

from __future__ import annotations

import json
import shlex
import shutil

import numpy as np
import pytest

from runtime.checkpoint import load_model
from runtime.cli import main
from runtime.errors import Diverged
from tests.multidevice.test_train import overrides, world  # noqa: F401 - the micro model and its dataset

ONE_DEVICE = ("execution.mode=data", "mesh.devices=1")
# lr 100 without warmup: the micro model's gradient norm overflows to inf within a few steps while its loss is finite
BLOW_UP = ("train.lr=1e2", "train.warmup_steps=0", "train.checkpoint_every=1", "train.steps=8")


def _last_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and all(not line.startswith("error:") for line in lines[:-1]), err
    return lines[-1]


def _run_command(line: str) -> int:
    """Run the shell line an error suggests (``[rm -r DIR && ]wse ...``) in-process."""
    if line.startswith("rm -r "):
        target, line = line[len("rm -r "):].split(" && ", 1)
        shutil.rmtree(shlex.split(target)[0])
    argv = shlex.split(line)
    assert argv[0] == "wse"
    return main([*argv[1:2], "--json", *argv[2:]])


@pytest.mark.slow
@pytest.mark.parametrize("keep", [1, 3])
def test_a_non_finite_gradient_stops_the_run_before_anything_non_finite_is_saved(world, tmp_path, capsys, keep):  # noqa: F811
    run_dir = tmp_path / "run"
    assert main(["train", *overrides(world, run_dir, *ONE_DEVICE, *BLOW_UP, f"train.keep={keep}")]) == 2
    line = _last_error(capsys)
    assert line.startswith("error: training diverged at step "), line
    step = int(line.split("at step ")[1].split(":")[0])
    assert "gradient norm is inf" in line or "gradient norm is nan" in line or "loss is nan" in line, line
    kept = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir())
    assert kept and kept[-1] == step - 1, (kept, line)  # the last finite one survives train.keep, nothing of `step`
    for s in kept:  # every saved step is finite: generate/eval/convert read it
        _, params = load_model(run_dir, step=s)
        assert all(np.isfinite(np.asarray(x)).all() for x in __import__("jax").tree.leaves(params))
    assert f"nothing of step {step} was saved" in line and f"step {step - 1}" in line
    # step `step` was computed from the weights of step - 1: they overflow whatever the rate, so the advice goes back
    # one more checkpoint (keep=3) or starts a new run (keep=1)
    command = line[line.index(": rm -r ") + 2:] if ": rm -r " in line else line[line.index(": wse ") + 2:]
    assert ("rm -r" in command) == (keep > 1), line
    assert "train.lr=" in command
    assert _run_command(command) == 0  # the command works
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert all(np.isfinite(out["losses"]))


@pytest.mark.slow
def test_a_resumed_run_may_lower_its_learning_rate_and_says_so(world, tmp_path, capsys):  # noqa: F811
    run_dir = tmp_path / "run"
    assert main(["train", *overrides(world, run_dir, *ONE_DEVICE, "train.steps=4", "train.lr=0.003")]) == 0
    capsys.readouterr()
    assert main(["train", "--json", *overrides(world, run_dir, *ONE_DEVICE, "train.steps=6", "train.lr=0.001")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["start_step"] == 4 and out["resume_changes"] == {"train.lr": [0.003, 0.001]}
    # data settings still decide the data position: changing them on resume stays refused
    assert main(["train", *overrides(world, run_dir, *ONE_DEVICE, "train.steps=8", "train.seed=5")]) == 2
    assert "was trained with train.seed=0" in _last_error(capsys)


@pytest.mark.slow
def test_the_weights_are_checked_before_every_save(tmp_path):
    """Finite loss and gradients but an update that overflowed: RunCheckpoints refuses to write the step."""
    import jax

    from model.config import build_config
    from model.gpt import initial_params
    from runtime.checkpoint import RunCheckpoints

    cfg = build_config(dict(name="ck", n_layers=1, d_model=16, n_heads=2, d_head=8, d_ffn=32, max_seq_len=16,
                            vocab_size=64))
    params = jax.tree.map(np.array, jax.device_get(initial_params(cfg, 0)))  # writable copies
    ck = RunCheckpoints(tmp_path / "run", keep=1)
    ck.save(1, cfg, params, {"mu": params}, {"step": 1})
    ck.wait()
    params["wte"][3, 4] = np.inf
    with pytest.raises(Diverged, match=r"the weights are not finite \(NaN or inf in 'wte'\) at step 2"):
        ck.save(2, cfg, params, {"mu": params}, {"step": 2})
    ck.close()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["1"]  # keep=1 kept step 1


def test_the_command_that_continues_replaces_the_rate_and_keeps_the_rest():
    from runtime.train.divergence import continue_command

    given = ["train.lr=1e3", "train.steps=9", "train.run_dir=runs/a b"]
    resume = Diverged("x", step=5, checkpoint=3, lr=1e-4)
    assert continue_command(resume, ["finetune", "--from", "src", "--data", "d.jsonl"], given) == \
        "wse finetune --from src --data d.jsonl train.steps=9 'train.run_dir=runs/a b' train.lr=0.0001"
    back = Diverged("x", step=4, checkpoint=3, lr=1e-4, delete="runs/a b/checkpoints/3")
    assert continue_command(back, ["train"], given).startswith("rm -r 'runs/a b/checkpoints/3' && wse train ")
    fresh = Diverged("x", step=4, checkpoint=3, lr=1e-4, new_run_dir="runs/a b-lr0.0001")
    assert continue_command(fresh, ["train"], given) == \
        "wse train train.steps=9 train.lr=0.0001 'train.run_dir=runs/a b-lr0.0001'"

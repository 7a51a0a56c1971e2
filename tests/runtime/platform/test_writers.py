"""Every writer holds its destination and turns a full or read-only one into one `error:` line (issue 28, item 5):
`wse plan --picture/--timeline`, `wse convert`, `wse bench --out`, and `wse train`'s run dir (its lock, metrics and
checkpoints; `wse finetune` runs the same trainer). Faults are real where they can be without root: RLIMIT_FSIZE makes
every write past a size fail with EFBIG, in Python and in TensorStore alike, as a full disk does with ENOSPC; a
read-only mount is EROFS at Python's file calls (tests/fault_injection/sitecustomize.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from model import hf
from model.config import get_config
from model.gpt import param_shapes
from runtime.cli import main
from tests.multidevice.test_train import overrides, world  # noqa: F401 - the micro model and its dataset

ROOT = Path(__file__).resolve().parents[3]
FAULTS = ROOT / "tests" / "fault_injection"
ONE_DEVICE = ("execution.mode=data", "mesh.devices=1")
PLAN = ["plan", "--model", "111M", "--system", "cs2", "--mode", "pipelined"]


def _wse(*argv, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    environ.update(PYTHONPATH=os.pathsep.join([str(FAULTS), str(ROOT)]), **env)
    return subprocess.run([sys.executable, "-m", "runtime.cli", *argv], capture_output=True, text=True, timeout=600,
                          env=environ, cwd=ROOT)


def _last_line_only(res, fragment: str) -> str:
    """The run ends with one `error:` line holding ``fragment``; anything before it is the start summary and progress
    (runtime.train.summary), never a traceback or another error."""
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and fragment in lines[-1], res.stderr[-3000:]
    assert not any(line.startswith(("error: ", "Traceback")) or "Error:" in line for line in lines[:-1]), \
        res.stderr[-3000:]
    return lines[-1]


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_plan_pictures_are_never_replaced_without_overwrite(tmp_path, capsys):
    pic = tmp_path / "p.png"
    assert main([*PLAN, "--picture", str(pic)]) == 0
    first = pic.read_bytes()
    capsys.readouterr()
    assert main([*PLAN, "--picture", str(pic)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --picture") and "already exists; pass --overwrite" in err and err.count("\n") == 1
    assert pic.read_bytes() == first
    assert main([*PLAN, "--picture", str(pic), "--overwrite"]) == 0
    assert _hidden(tmp_path) == []


def test_plan_pictures_on_a_full_or_read_only_disk_are_one_line(tmp_path):
    pic = tmp_path / "p.png"
    pic.write_bytes(b"an earlier picture")
    res = _wse(*PLAN, "--picture", str(pic), "--overwrite", TESTFAULT_FSIZE="2000")
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert f"error: writing --picture '{pic}' failed: a file reached the file-size limit" in res.stderr
    assert pic.read_bytes() == b"an earlier picture" and _hidden(tmp_path) == []
    ro = tmp_path / "ro"
    ro.mkdir()
    res = _wse(*PLAN, "--timeline", str(ro / "t.png"), TESTFAULT_READ_ONLY=str(ro))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "read-only file system" in res.stderr, res.stderr


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    cfg = get_config("tiny").replace(name="w", n_layers=1, d_model=32, n_heads=2, d_head=16, d_ffn=64, max_seq_len=64)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (0.1 * rng.standard_normal(s)).astype(np.float32), param_shapes(cfg),
                          is_leaf=lambda x: isinstance(x, tuple))
    hf.save_hf(root / "hf", cfg, params)
    assert main(["convert", "--from-hf", str(root / "hf"), "--out", str(root / "ckpt")]) == 0
    return root


@pytest.mark.slow
@pytest.mark.parametrize("way", ["--to-hf", "--from-hf"])
def test_convert_on_a_full_or_read_only_disk_is_one_line_and_leaves_nothing(checkpoint, tmp_path, way):
    source = checkpoint / ("ckpt" if way == "--to-hf" else "hf")
    out = tmp_path / "out"
    res = _wse("convert", way, str(source), "--out", str(out), TESTFAULT_FSIZE="100000")
    line = _last_line_only(res, "a file reached the file-size limit (ulimit -f)")
    assert f"'{out}' failed" in line and " free, it needs about " in line
    assert not out.exists() and _hidden(tmp_path) == []
    ro = tmp_path / "ro"
    ro.mkdir()
    res = _wse("convert", way, str(source), "--out", str(ro / "out"), TESTFAULT_READ_ONLY=str(ro))
    _last_line_only(res, "it is on a read-only file system; choose a writable --out")
    assert list(ro.iterdir()) == []


def test_bench_on_a_read_only_disk_is_one_line_before_it_runs(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    res = _wse("bench", "--quick", "--models", "tiny", "--modes", "data", "--out", str(ro / "b"),
               TESTFAULT_READ_ONLY=str(ro))
    _last_line_only(res, f"writing the bench results '{ro / 'b'}' failed: it is on a read-only file system")
    assert list(ro.iterdir()) == []


def test_train_into_a_read_only_run_dir_is_one_line(world, tmp_path):  # noqa: F811
    ro = tmp_path / "ro"
    ro.mkdir()
    res = _wse("train", *overrides(world, ro / "run", *ONE_DEVICE, "train.steps=2"), TESTFAULT_READ_ONLY=str(ro))
    _last_line_only(res, f"writing the run dir '{ro / 'run'}' failed: it is on a read-only file system; choose "
                         "another train.run_dir")
    assert list(ro.iterdir()) == []


@pytest.mark.slow
def test_a_disk_that_fills_during_a_run_is_one_line_and_loses_nothing(world, tmp_path):  # noqa: F811
    """The checkpoint of step 4 meets a full disk for real (TensorStore's writes fail): one line, no tracebacks from
    Orbax's threads, step 2 intact, no half-written step; the same command then resumes from step 2."""
    run_dir = tmp_path / "run"
    args = overrides(world, run_dir, *ONE_DEVICE, "train.steps=6")  # checkpoints every 2 steps
    res = _wse("train", *args, TESTFAULT_FSIZE_AT_SAVE="4:20000")
    line = _last_line_only(res, f"error: writing the checkpoint of step 4 in '{run_dir}' failed: a file reached the "
                                "file-size limit (ulimit -f) (")
    assert "free space or move train.run_dir, then run the same command (the checkpoint of step 2 is intact)" in line
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["2"]
    res = _wse("train", "--json", *args)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["start_step"] == 2


def test_a_file_finished_meanwhile_by_another_writer_is_kept(tmp_path):
    """Two writers of one file without --overwrite: the one that finishes second is refused, the first's file kept."""
    from runtime.platform.storage import Finished, write_file

    out = tmp_path / "p.png"

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"mine")
        out.write_bytes(b"theirs")  # the other writer finishes first

    with pytest.raises(Finished, match="already holds a finished result; pass --overwrite"):
        write_file(out, write, overwrite=False, what="--picture")
    assert out.read_bytes() == b"theirs" and _hidden(tmp_path) == []
    write_file(out, lambda tmp: tmp.write_bytes(b"mine"), overwrite=True, what="--picture")
    assert out.read_bytes() == b"mine" and _hidden(tmp_path) == []

"""Metrics where people look, profiles, and compiling once (issue 14, items 3-5), on the micro model of test_train.

- one run writes TensorBoard event files holding exactly the figures of ``metrics.jsonl``, logs the same to W&B (a
  stand-in ``wandb`` module: the package is optional and not installed by the test extra), and traces the profile
  window; resuming continues the same W&B run and tells TensorBoard to drop the recomputed steps;
- bad ``observe`` settings are refused in one line before anything is written;
- a second `wse train` start loads its compiled programs from the persistent cache (and computes the same losses).
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import types
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.config import load_config
from runtime.platform import cache_enabled, compile_cache_dir, use_compile_cache
from runtime.train import METRICS_FILE, TENSORBOARD_DIR, Trainer, read_metrics, reporting_observers
from tests.multidevice.test_train import overrides, world  # noqa: F401 - the micro model and its dataset (a module fixture)

ONE_DEVICE = ("execution.mode=data", "mesh.devices=1")
STEPS = 6


def tensorboard_scalars(log_dir: Path) -> tuple[dict[tuple[str, int], float], list]:
    """({(tag, step): value} of every scalar in the event files under ``log_dir``, [events that are not scalars]),
    read with the protobuf classes tensorboardX ships (an event file is TFRecord: length, crc, Event, crc)."""
    from tensorboardX.proto import event_pb2

    values, others = {}, []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            if event.HasField("summary"):
                values.update({(v.tag, event.step): v.simple_value for v in event.summary.value})
            else:
                others.append(event)
    return values, others


class FakeWandb(types.ModuleType):
    """Stands in for the ``wandb`` package: records ``init`` arguments, logged rows and ``finish``."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.rows, self.finished = [], [], []
        self.util = types.SimpleNamespace(generate_id=lambda: "abc123")

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return types.SimpleNamespace(log=lambda values, step: self.rows.append((step, dict(values))),
                                     finish=lambda exit_code: self.finished.append(exit_code))


@pytest.mark.slow
def test_tensorboard_wandb_and_a_profile_window_from_one_run(world, tmp_path, monkeypatch):  # noqa: F811
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run_dir = tmp_path / "run"
    observe = ("observe.wandb=offline", "observe.wandb_project=tests", "observe.profile_steps=2:3",
               "train.eval_batches=1", "train.eval_every=3")
    Trainer(load_config(None, overrides(world, run_dir, *ONE_DEVICE, *observe, f"train.steps={STEPS}"))).run()

    records = read_metrics(run_dir / METRICS_FILE)
    expected = {(f"train/{k}", r["step"]): r[k] for r in records if r["kind"] == "train"
                for k in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu")}
    expected.update({(f"eval/{k}", r["step"]): r[k] for r in records if r["kind"] == "eval"
                     for k in ("val_loss", "val_perplexity")})
    assert {s for (_, s) in expected if _ == "eval/val_loss"} == {3, 6}
    scalars, _ = tensorboard_scalars(run_dir / TENSORBOARD_DIR)
    assert scalars.keys() == expected.keys()
    assert all(scalars[k] == pytest.approx(v, rel=1e-6) for k, v in expected.items())  # float32 in the event file

    (init,) = fake.inits
    assert init["mode"] == "offline" and init["project"] == "tests" and init["dir"] == str(run_dir)
    assert init["id"] == "abc123" and init["config"]["train"]["steps"] == STEPS
    logged = {(tag, step): v for step, row in fake.rows for tag, v in row.items()}
    assert logged == pytest.approx(expected) and fake.finished == [0]

    (trace,) = (run_dir / TENSORBOARD_DIR / "plugins" / "profile").iterdir()
    assert any(p.name.endswith(".xplane.pb") for p in trace.iterdir())
    with gzip.open(trace / "perfetto_trace.json.gz") as f:
        assert json.load(f)["traceEvents"]  # a trace Perfetto opens

    # a longer run in the same run dir resumes: the same W&B run, and TensorBoard drops points after the checkpoint
    fake.util.generate_id = lambda: "another"
    Trainer(load_config(None, overrides(world, run_dir, *ONE_DEVICE, *observe[:2], f"train.steps={STEPS + 2}"))).run()
    assert fake.inits[1]["id"] == "abc123" and fake.rows[-1][0] == STEPS + 2
    scalars, others = tensorboard_scalars(run_dir / TENSORBOARD_DIR)
    assert ("train/loss", STEPS + 2) in scalars
    assert [e.step for e in others if e.HasField("session_log")] == [STEPS + 1]  # purge_step of the resumed run


def test_observers_follow_the_settings():
    def kinds(*items):
        return [type(o).__name__ for o in reporting_observers(load_config(None, list(items)))]

    assert kinds() == ["TensorBoard"]
    assert kinds("observe.tensorboard=false") == []
    assert kinds("observe.profile_steps=4", "observe.tensorboard=false") == ["ProfileWindow"]
    assert load_config(None, ["observe.profile_steps=4"]).observe.profile_window() == (4, 4)
    assert load_config(None, ["observe.wandb=true"]).observe.wandb == "online"


@pytest.mark.parametrize("setting, fragment", [
    ("observe.wandb=online", "observe.wandb=online needs the wandb package, which is not installed"),
    ("observe.profile_steps=5:30", "observe.profile_steps=5:30 ends after the run's last step (train.steps=12)"),
    ("observe.profile_steps=5:3", "observe.profile_steps: START:END needs 1 <= START <= END"),
    ("observe.profile_steps=steps", "give the steps to trace as START:END"),
    ("observe.wandb=sometimes", "observe.wandb"),
])
def test_bad_observe_settings_are_refused_in_one_line(world, tmp_path, capsys, monkeypatch, setting, fragment):  # noqa: F811
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed, whatever this machine has
    run_dir = tmp_path / "run"
    code = main(["train", *overrides(world, run_dir, setting)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err
    assert not run_dir.exists()


def test_compile_cache_switch_and_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("WSE_COMPILE_CACHE", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("WSE_CACHE_DIR", str(tmp_path))
    assert cache_enabled(True) and not cache_enabled(False)
    assert compile_cache_dir() == tmp_path / "jax"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache_dir() == tmp_path / "mine"
    for off in ("0", "off", "false"):
        monkeypatch.setenv("WSE_COMPILE_CACHE", off)
        assert not cache_enabled(True)
    assert use_compile_cache(True) is None and not (tmp_path / "mine").exists()


@pytest.mark.slow
def test_a_second_start_loads_its_compiled_programs_from_the_cache(world, tmp_path):  # noqa: F811
    """`wse train` twice in new processes with the default settings: the first writes the compiled programs to
    <cache dir>/jax, the second finds them all there (it writes nothing new) and computes bitwise the same losses.
    JAX caches only programs that took at least jax_persistent_cache_min_compile_time_secs to compile, so on a busy
    machine the first start can cache a program that a faster second start compiles under the threshold and skips
    (or the reverse): with the threshold at 0 every program is cached, whatever the machine's speed."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "WSE_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    env["WSE_CACHE_DIR"] = str(tmp_path / "cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    cache, outs, entries = tmp_path / "cache" / "jax", [], []
    for i in range(2):
        cmd = [sys.executable, "-m", "runtime.cli", "train", "--json",
               *overrides(world, tmp_path / f"run{i}", *ONE_DEVICE, "train.steps=2")]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        outs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        entries.append(sorted(p.name for p in cache.iterdir()))
    assert any(name.startswith("jit_") for name in entries[0]), entries[0]  # the training step at least
    assert entries[1] == entries[0]  # every program the second start needed was in the cache
    assert outs[1]["losses"] == outs[0]["losses"]

"""Training runs end to end on 8 emulated CPU devices with a micro model (5 layers, d_model 32) on real text.

Covers: the same losses whatever the mode and mesh; restore onto another mesh and mode; exact resume after SIGKILL
(a real `wse train` subprocess); the non-finite guard; and bad input refused with one line, exit 2, nothing modified.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from runtime.cli import main
from runtime.config import load_config
from runtime.errors import UserError
from runtime.train import LOSS_PLOT, METRICS_FILE, Observer, Trainer, read_metrics

jax.devices()  # start the backend with conftest's 8 devices before any mesh could ask for fewer

STEPS = 12
MICRO = "n_layers: 5\nd_model: 32\nn_heads: 2\nd_head: 16\nd_ffn: 64\nmax_seq_len: 64\nbatch_size: 8\nlearning_rate: 0.003\n"
# The Llama family's CPU preset at the micro model's size: RMSNorm, SwiGLU, rotary positions, one K/V head for two query
# heads, no biases, and (as Mistral's) an untied head
LLAMA = "preset: llama-tiny\n" + MICRO + "n_kv_heads: 1\ntied_embeddings: false\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A real-text dataset (CPython's help topics) and the micro model file."""
    from pydoc_data.topics import topics

    from runtime.data import build_dataset

    root = tmp_path_factory.mktemp("train")
    src = root / "src"
    src.mkdir()
    for i, name in enumerate(sorted(topics)[:40]):
        (src / f"{i:03d}.txt").write_text(topics[name], encoding="utf-8")
    build_dataset([str(src)], root / "data", val_fraction=0.1)
    (root / "micro.yaml").write_text(MICRO)
    (root / "llama.yaml").write_text(LLAMA)
    return root


def overrides(world: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"model={world / 'micro.yaml'}", f"data={world / 'data'}", f"train.steps={STEPS}", "train.seq_len=32",
            "train.checkpoint_every=2", "train.eval_batches=0", f"train.run_dir={run_dir}", *extra]


def train(world, run_dir, *extra, **kwargs) -> dict:
    return Trainer(load_config(None, overrides(world, run_dir, *extra)), **kwargs).run()


# data 2 x stage 4 (5 layers: an uneven split), and gradient accumulation over 2 slices of the batch
PIPELINED = ("execution.mode=pipelined", "mesh.axes.stage=4", "train.accum_steps=2")
REFERENCE = ("execution.mode=data", "mesh.devices=1", "train.eval_batches=2", "train.eval_every=5")


class Recorder(Observer):
    """An observer that keeps every record the loop reports, and when start and end came."""

    def __init__(self):
        self.records, self.calls = [], []

    def start(self, ctx):
        self.calls.append(("start", ctx.start))

    def record(self, ctx, record):
        self.records.append(record)

    def end(self, ctx):
        self.calls.append(("end", ctx.finished))


@pytest.fixture(scope="module")
def reference(world):
    """Plain data parallelism on one device, with evaluation: what every other execution must reproduce."""
    recorder = Recorder()
    result = train(world, world / "ref", *REFERENCE, observers=[recorder])
    return {**result, "observed": recorder}


@pytest.fixture(scope="module")
def pipelined(world):
    """Pipelined on 8 devices with checkpoints every 2 steps (the restore and resume source)."""
    return train(world, world / "pipelined", *PIPELINED)


def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------------------------


def test_result_metrics_and_plot(world, reference):
    r = reference
    assert r["steps"] == STEPS and r["start_step"] == 0 and len(r["losses"]) == STEPS
    assert r["final_loss"] == r["losses"][-1] < r["losses"][0]  # it learns
    assert r["mode"] == "data" and r["mesh"] == {"data": 1, "stage": 1, "model": 1} and r["plan"]["mode"] == "data"
    assert r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 and "measured" in r["mfu_peak_source"]
    assert r["val_perplexity"] == pytest.approx(np.exp(r["val_loss"]))
    assert r["checkpoint_step"] == STEPS
    run_dir = Path(r["run_dir"])
    records = read_metrics(run_dir / METRICS_FILE)
    train_records = [x for x in records if x["kind"] == "train"]
    assert [x["step"] for x in train_records] == list(range(1, STEPS + 1))
    assert [x["loss"] for x in train_records] == r["losses"]
    assert all(x["grad_norm"] > 0 and x["lr"] >= 0 for x in train_records)
    assert [x["step"] for x in records if x["kind"] == "eval"] == [5, 10, 12]
    assert (run_dir / LOSS_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["10", "12", "8"]  # keep 3
    # an observer added to the run sees exactly what the metrics log holds, between one start and one end
    observed = r.pop("observed")
    assert observed.records == records and observed.calls == [("start", 0), ("end", True)]
    # where each setting came from: given, the preset's recipe, derived, the schema's defaults
    sources = r["config_sources"]
    assert sources["train.seq_len"] == sources["train.eval_batches"] == "given"
    assert sources["train.batch_size"].startswith("preset ") and sources["train.warmup_steps"] == "derived"
    assert sources["train.weight_decay"] == "default"
    json.dumps(r)  # the --json result is plain JSON


@pytest.mark.parametrize("extra", [PIPELINED, ("execution.mode=streaming",)], ids=["pipelined-2x4-uneven", "streaming-8"])
def test_same_losses_whatever_the_mode_and_mesh(world, reference, pipelined, extra):
    r = pipelined if extra == PIPELINED else train(world, world / f"mode-{extra[0]}", *extra)
    assert r["mode"] == extra[0].split("=")[1]
    np.testing.assert_allclose(r["losses"], reference["losses"], rtol=2e-5)


@pytest.mark.parametrize("extra", [("execution.mode=streaming", "mesh.devices=4"), REFERENCE], ids=["streaming-4", "data-1"])
def test_restore_onto_another_mesh_and_mode(world, reference, pipelined, extra):
    run_dir = world / f"restore-{extra[1]}"
    shutil.copytree(world / "pipelined", run_dir)
    for step in (p for p in (run_dir / "checkpoints").iterdir() if int(p.name) > 8):
        shutil.rmtree(step)  # the latest checkpoint is now step 8 (saved pipelined on 8 devices)
    r = train(world, run_dir, *extra)
    assert r["start_step"] == 8 and len(r["losses"]) == STEPS - 8
    assert r["config_sources"]["train.lr"] == r["config_sources"]["train.warmup_steps"] == "checkpoint"
    np.testing.assert_allclose(r["losses"], reference["losses"][8:], rtol=2e-5)
    steps = [x["step"] for x in read_metrics(run_dir / METRICS_FILE) if x["kind"] == "train"]
    assert steps == list(range(1, STEPS + 1))  # the log continues without duplicates


def test_sigkill_at_any_moment_then_resume_is_exact(world, pipelined, tmp_path):
    """A real `wse train` killed with SIGKILL (aimed at a checkpoint being written), then started again, computes
    bitwise the losses of the uninterrupted run (the `pipelined` fixture, same config)."""
    kill_then_resume(world, tmp_path, PIPELINED, pipelined["losses"])


def kill_then_resume(world, tmp_path, extra, losses):
    """Run `wse train` with ``extra`` in a subprocess, SIGKILL it while it checkpoints, run it again: the resumed run
    starts at the last complete checkpoint and its losses, and the metrics log, are bitwise ``losses``."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "runtime.cli", "train", "--json", *overrides(world, run_dir, *extra),
           "mesh.devices=8"]
    env = dict(os.environ, WSE_COMPILE_CACHE="1", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # the resumed run loads what the killed one compiled
    env.pop("XLA_FLAGS", None)  # `wse train` must set up the 8 emulated devices itself
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = run_dir / "checkpoints"
    during_save = False
    try:
        while proc.poll() is None:
            names = [p.name for p in ckpts.iterdir()] if ckpts.is_dir() else []
            complete = [n for n in names if n.isdigit()]
            during_save = any("tmp" in n for n in names)
            if complete and (during_save or len(complete) >= 3):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()  # already SIGKILLed, or the test failed while watching
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
    before = max(int(n) for n in os.listdir(ckpts) if n.isdigit())
    assert before < STEPS

    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["start_step"] == before and len(out["losses"]) == STEPS - before
    assert out["losses"] == losses[before:], f"killed during a save: {during_save}"
    logged = [x["loss"] for x in read_metrics(run_dir / METRICS_FILE) if x["kind"] == "train"]
    assert logged == losses  # the killed run's logged steps up to the checkpoint, then the resumed ones


# ---------------------------------------------------------------------------------------------------- the families


@pytest.fixture(scope="module")
def llama(world):
    """The Llama micro model on one device (with evaluation) and pipelined on 8 (the resume source)."""
    model = (f"model={world / 'llama.yaml'}",)
    return {"reference": train(world, world / "llama-ref", *REFERENCE, *model),
            "pipelined": train(world, world / "llama-pipelined", *PIPELINED, *model)}


@pytest.mark.parametrize("extra", [PIPELINED, ("execution.mode=streaming",), ("execution.mode=data", "mesh.axes.model=2")],
                         ids=["pipelined-2x4-uneven", "streaming-8", "data-4x-model2"])
def test_a_llama_trains_in_every_mode_as_on_one_device(world, llama, extra):
    """Grouped K/V heads, the gated FFN, rotary positions and the untied head in every execution mode: the losses of
    one device's run to 1e-5; its evaluation ran (validation loss and perplexity)."""
    ref = llama["reference"]
    r = llama["pipelined"] if extra == PIPELINED else train(world, world / f"llama-{'-'.join(extra)}", *extra,
                                                           f"model={world / 'llama.yaml'}")
    assert r["mode"] == extra[0].split("=")[1] and ref["final_loss"] < ref["losses"][0]
    np.testing.assert_allclose(r["losses"], ref["losses"], rtol=1e-5)
    assert ref["val_perplexity"] == pytest.approx(np.exp(ref["val_loss"]))


def test_a_llama_killed_while_checkpointing_resumes_bitwise(world, llama, tmp_path):
    kill_then_resume(world, tmp_path, (*PIPELINED, f"model={world / 'llama.yaml'}"), llama["pipelined"]["losses"])


def test_two_processes_form_one_mesh(world, reference, tmp_path):
    """Two `wse train` processes with 4 CPU devices each (jax.distributed on 127.0.0.1) train like one process."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    common = [sys.executable, "-m", "runtime.cli", "train", "--json",
              *overrides(world, tmp_path / "run", "execution.mode=data", "mesh.devices=8", "mesh.num_processes=2",
                         f"mesh.coordinator_address=127.0.0.1:{port}")]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen(common + [f"mesh.process_id={i}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        outs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert results[0]["mesh"] == {"data": 8, "stage": 1, "model": 1}
    assert results[0]["losses"] == results[1]["losses"]
    np.testing.assert_allclose(results[0]["losses"], reference["losses"], rtol=2e-5)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["10", "12", "8"]


def test_non_finite_loss_stops_and_names_the_step(world, reference, tmp_path):
    from model.gpt import param_shapes

    cfg = load_config(None, overrides(world, tmp_path, *REFERENCE)).resolve().gpt_config()
    params = jax.tree.map(lambda s: np.zeros(s, np.float32), param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple))
    params["wte"][7, 3] = np.nan  # one poisoned weight (the same compiled step as the reference run)
    with pytest.raises(UserError, match=r"training diverged at step 1: the loss is nan; nothing of step 1 was saved "
                                        r"and no checkpoint was written; start again with a lower learning rate"):
        train(world, tmp_path / "run", *REFERENCE, init_params=params)


# ----------------------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing modified.


def _cli(capsys, *args) -> tuple[int, str]:
    code = main(["train", *args])
    err = capsys.readouterr().err
    return code, err


def _assert_one_line(code, err, fragment):
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err


@pytest.mark.parametrize("args, fragment", [
    (["train.stpes=3"], "did you mean 'train.steps'"),
    (["model=tiny", "train.seq_len=512"], "beyond model 'tiny' context of 256"),
    (["mesh.devices=16"], "mesh.devices=16 but 8 cpu devices are available"),
    (["mesh.devices=8", "mesh.axes.stage=3"], "mesh axes"),
])
def test_bad_config_is_refused(capsys, tmp_path, args, fragment):
    code, err = _cli(capsys, *args, f"train.run_dir={tmp_path / 'run'}")
    _assert_one_line(code, err, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["other-model", "garbled", "truncated", "changed-seed", "foreign-dir"])
def test_run_dir_that_cannot_be_resumed_is_left_alone(capsys, world, pipelined, tmp_path, case):
    run_dir = tmp_path / "run"
    extra: list[str] = list(PIPELINED)
    fragment = "corrupt"
    if case == "foreign-dir":
        run_dir.mkdir()
        (run_dir / "notes.txt").write_text("my thesis")
        fragment = "not a training run"
    else:
        shutil.copytree(world / "pipelined", run_dir)
    if case == "other-model":
        extra, fragment = ["model=tiny"], "holds checkpoints of model"
    elif case == "changed-seed":  # the data position; the optimisation may change (test_divergence)
        extra, fragment = extra + ["train.seed=7"], "was trained with train.seed=0"
    elif case in ("garbled", "truncated"):
        step = run_dir / "checkpoints" / str(STEPS)
        files = [p for p in (step / "params").rglob("*") if p.is_file() and "ocdbt.process" in str(p)]
        target = max(files, key=lambda p: p.stat().st_size)
        data = bytearray(target.read_bytes())
        if case == "garbled":
            for i in range(len(data) // 2, len(data) // 2 + 16):
                data[i] ^= 0x5A
        else:
            data = data[: len(data) // 3]
        target.write_bytes(bytes(data))
    before = _tree_hash(run_dir)
    args = overrides(world, run_dir, *extra, f"train.steps={STEPS + 2}")
    if case == "other-model":
        args = [a for a in args if not a.startswith("model=")] + ["model=tiny", "train.seq_len=32"]
    code, err = _cli(capsys, *args)
    _assert_one_line(code, err, fragment)
    assert _tree_hash(run_dir) == before


def test_data_with_more_ids_than_the_model_is_refused_before_anything_is_written(world, tmp_path, capsys):
    """GPT-2 ids into a model of 1000: jnp.take would clamp them silently; refused in one line, no run dir."""
    (tmp_path / "narrow.yaml").write_text(MICRO + "vocab_size: 1000\n")
    run_dir = tmp_path / "run"
    argv = overrides(world, run_dir)
    argv[0] = f"model={tmp_path / 'narrow.yaml'}"
    rc = main(["train", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: the data was tokenized into 50257 ids but model 'narrow' has a "
                                      "vocabulary of 1000") and err.count("\n") == 1
    assert not run_dir.exists()


def test_progress_without_a_terminal_is_plain_lines_on_stderr(world, tmp_path, capsys):
    """Redirected (no terminal), a run is not silent: plain progress lines on stderr, the last step's among them."""
    train(world, tmp_path / "run", "train.steps=3")
    out, err = capsys.readouterr()
    assert "train step 3/3  loss " in err and "tok/s" in err and "\x1b[" not in err and out == ""


def test_one_command_extends_a_finished_run_with_a_continuous_learning_rate(world, tmp_path, capsys):
    """The same command with a larger train.steps continues the run: settings left unset (the derived warmup, the
    decay horizon) keep their saved values, and the rate, at its floor when the first run ended, stays there."""
    run_dir = tmp_path / "run"
    assert main(["train", *overrides(world, run_dir, "train.warmup_steps=2")]) == 0  # STEPS steps
    assert main(["train", *overrides(world, run_dir, "train.warmup_steps=2", f"train.steps={STEPS + 6}")]) == 0
    capsys.readouterr()
    rows = [r for r in read_metrics(run_dir / METRICS_FILE) if r["kind"] == "train"]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 7))
    lrs = [r["lr"] for r in rows]
    floor = 0.003 * 0.1  # the micro model's peak x min_lr_ratio
    assert all(b <= a + 1e-12 for a, b in zip(lrs[2:], lrs[3:]))  # never rises after warmup
    assert lrs[STEPS - 1] > floor and all(abs(lr - floor) < 1e-9 for lr in lrs[STEPS:])
    saved = load_config(run_dir / "config.yaml", []).train
    assert saved.steps == STEPS + 6 and saved.decay_steps == STEPS


# ---------------------------------------------------------------------------------------------------- cluster faults

ONE_DEVICE = ("execution.mode=data", "mesh.devices=1")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_checkpoints_the_current_step_then_the_run_resumes_there(world, tmp_path, capsys, sig):
    """A scheduler's SIGTERM (or Ctrl-C) mid-run: the step in flight finishes, is checkpointed, one line says so, and
    the status is 128 + the signal; the same command then resumes from that step."""
    run_dir = tmp_path / "run"
    args = overrides(world, run_dir, *ONE_DEVICE, "train.steps=400", "train.checkpoint_every=100")
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "train", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics, deadline = run_dir / METRICS_FILE, time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {signal.Signals(sig).name} after step ") and "run the same command" in last
    step = int(last.split("after step ")[1].split()[0])
    assert 3 <= step < 100 and (run_dir / "checkpoints" / str(step)).is_dir()  # a step no cadence would have saved
    assert main(["train", "--json", *overrides(world, run_dir, *ONE_DEVICE, f"train.steps={step + 2}")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["start_step"] == step and len(out["losses"]) == 2


def test_a_run_dir_in_use_is_refused_and_a_killed_holder_releases_it(world, tmp_path, capsys):
    """Two runs in one run dir: the second is refused with one line naming the first's process and host, writing
    nothing; a holder killed with SIGKILL leaves no stale lock."""
    import socket

    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom runtime.train.faults import RunDirLock\n"
                               "lock = RunDirLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(600)",
                               str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = ["train", *overrides(world, run_dir, *ONE_DEVICE, "train.steps=2")]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert f"in use by process {holder.pid} on host {socket.gethostname()}" in err
        assert [p.name for p in run_dir.iterdir()] == [".lock"]  # nothing else written
    finally:
        holder.kill()
        holder.wait()
    assert main(args) == 0  # the killed holder's lock went with it


def test_a_full_disk_during_a_checkpoint_is_one_line_and_loses_nothing(world, tmp_path, capsys, monkeypatch):
    """A save that runs out of space (the OS's ENOSPC, injected into Orbax's save of step 4): one `error:` line with the
    run dir, the free space and the size needed; the half-written step is removed, step 2 stays and resumes."""
    import errno

    import orbax.checkpoint as ocp

    run_dir = tmp_path / "run"
    real_save = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        if step == 4:
            (run_dir / "checkpoints" / "4.orbax-checkpoint-tmp-0").mkdir()  # what a save cut short leaves behind
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    args = overrides(world, run_dir, *ONE_DEVICE, "train.steps=6")  # checkpoints every 2 steps
    assert main(["train", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # the start summary and progress lines come first (one every 10 s without a terminal: how many depends on the
    # machine's speed); the error is the last line
    assert lines[0].startswith("training micro"), lines  # what the run was about to do (runtime.train.summary)
    err = lines[-1]
    assert sum(line.startswith("error: ") for line in lines) == 1, lines
    assert err.startswith(f"error: writing the checkpoint of step 4 in '{run_dir}' failed: the disk is full (")
    assert " free, it needs about " in err and "step 2 is intact" in err
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["2"]
    monkeypatch.undo()
    assert main(["train", "--json", *args]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["start_step"] == 2


def test_two_processes_stop_at_the_same_step_when_one_is_signalled(world, tmp_path):
    """SIGTERM to one process of a two-process run: both finish the same step, save it once, and stop with 143."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run_dir = tmp_path / "run"
    common = [sys.executable, "-m", "runtime.cli", "train",
              *overrides(world, run_dir, "execution.mode=data", "mesh.devices=8", "mesh.num_processes=2",
                         f"mesh.coordinator_address=127.0.0.1:{port}", "train.steps=400", "train.checkpoint_every=100")]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen(common + [f"mesh.process_id={i}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    metrics, deadline = run_dir / METRICS_FILE, time.time() + 300
    try:
        while time.time() < deadline and all(p.poll() is None for p in procs):
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGTERM)
        errs = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [143, 143], errs[0][-2000:] + errs[1][-2000:]
    lasts = [err.strip().splitlines()[-1] for err in errs]
    assert lasts[0] == lasts[1] and lasts[0].startswith("stopped by SIGTERM after step ")
    step = int(lasts[0].split("after step ")[1].split()[0])
    assert 3 <= step < 100 and sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [str(step)]

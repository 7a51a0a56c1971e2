"""Every check that needs no JAX runs before JAX is imported: each refusal below is one `error:` line with exit
status 2, and the process that refused it never imported jax (so it returns in about a second, not after JAX's
start-up: 34-68 s on a busy 2-core machine before). Nothing here measures time."""

import json
import subprocess
import sys

import pytest

# Runs every case in one fresh interpreter through the CLI's main(); per case: exit status, stderr, whether jax is
# loaded afterwards. A case that imports jax marks itself and (jax stays loaded) every case after it: the first
# failure names the culprit.
HARNESS = r"""
import contextlib, io, json, sys
from runtime.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's own refusals
            rc = e.code
    out.append({"argv": argv, "rc": rc, "stderr": err.getvalue(), "jax": "jax" in sys.modules})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """A run dir whose latest step records the tiny model (all a pre-JAX check reads), a HF directory without a
    config.json, a non-empty output directory, a text file."""
    from model.config import get_config

    root = tmp_path_factory.mktemp("refusals")
    model_record = root / "run" / "checkpoints" / "3" / "model"
    model_record.mkdir(parents=True)
    (model_record / "metadata").write_text(json.dumps(get_config("tiny").model_dump()))
    (root / "hf").mkdir()
    (root / "full").mkdir()
    (root / "full" / "kept.txt").write_text("somebody's results")
    (root / "notes.txt").write_text("A short text file to score.\n")
    return root


def cases(r):
    run, missing, text = str(r / "run"), str(r / "no-such-dir"), str(r / "notes.txt")
    return [
        (["generate", "--checkpoint", missing, "--prompt", "Hi"], "does not exist"),
        (["generate", "--checkpoint", str(r), "--prompt", "Hi"], "holds no complete checkpoint"),
        (["generate", "--model", "tiny", "--prompt", "Hi", "--max-new-tokens", "-3"], "max_new_tokens must be at least 1"),
        (["generate", "--model", "tiny", "--prompt", "Hi", "--temperature", "-1"], "temperature must be >= 0"),
        (["generate", "--model", "tiny", "--prompt", "Hi", "--top-p", "0"], "top_p must be in (0, 1]"),
        (["generate", "--checkpoint", run, "--prompt", "Hi", "--max-new-tokens", "300"], "exceeds the model context of 256"),
        (["generate", "--hf", str(r / "hf"), "--prompt", "Hi"], "has no config.json"),
        (["generate", "--model", "no-such-model", "--prompt", "Hi"], "unknown model"),
        (["eval", "--checkpoint", missing, "--text", text], "does not exist"),
        (["eval", "--checkpoint", run, "--text", text, "--seq-len", "1"], "too short"),
        (["eval", "--checkpoint", run, "--text", text, "--seq-len", "999"], "beyond the model context"),
        (["convert", "--to-hf", missing, "--out", str(r / "out")], "does not exist"),
        (["convert", "--to-hf", run, "--out", str(r / "full")], "is not empty"),
        (["convert", "--to-hf", run, "--out", str(r / "out"), "--max-shard-size", "lots"], "is not a size"),
        (["convert", "--from-hf", missing, "--out", str(r / "out")], "does not exist"),
        (["finetune", "--from", missing, "--data", "builtin"], "does not exist"),
        (["finetune", "--from", run, "--data", "builtin", "train.batch_size=0"], "train.batch_size must be positive"),
        (["finetune", "--from", run, "--data", str(r / "no.jsonl")], "does not exist"),
        (["finetune", "--from", run, "--data", "builtin", "model=tiny"], "drop the model= override"),
        (["train", "model=tiny", "train.batch_size=0"], "train.batch_size must be positive, got 0"),
        (["train", "model=tiny", "train.lr=-1"], "train.lr must be positive"),
        (["train", "--model", "tiny", f"data={missing}"], "is not a token dataset"),
        (["train", "model=tiny", "mesh.devices=4", "train.batch_size=6"], "does not split over"),
        (["data", str(r / "no.txt"), "--out", str(r / "ds")], "does not exist"),
        (["data", text, "--out", str(r / "full")], "not a token dataset"),
        (["plan", "--model", "no-such-model"], "unknown model"),
        (["demo", "--steps", "0"], "--steps must be positive"),
    ]


def test_refusals_are_one_line_and_never_import_jax(places):
    todo = cases(places)
    res = subprocess.run([sys.executable, "-c", HARNESS, json.dumps([argv for argv, _ in todo])], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    for (argv, fragment), got in zip(todo, json.loads(res.stdout.strip().splitlines()[-1])):
        assert got["rc"] == 2, (argv, got)
        assert got["stderr"].startswith("error: ") and got["stderr"].count("\n") == 1, (argv, got["stderr"])
        assert fragment in got["stderr"], (argv, got["stderr"])
        assert not got["jax"], f"{' '.join(argv)} imported jax before refusing"

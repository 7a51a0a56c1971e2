"""The tutorial workflow runs as written (with tiny step counts and a micro model), writes the same run dirs and
checkpoints as the command line, and `import runtime` stays free of JAX."""

import contextlib
import io
import json
import subprocess
import sys

import jax
import pytest

from runtime.cli import main

jax.devices()  # conftest's 8 emulated devices

MICRO = "preset: tiny\nname: micro\nn_layers: 2\nd_model: 32\nn_heads: 2\nd_head: 16\nd_ffn: 64\nmax_seq_len: 64\n"


def test_import_runtime_and_cli_help_stay_jax_free():
    code = ("import sys, runtime; from runtime import initialize_model, load_task_data; "
            "m = initialize_model(); assert 'jax' not in sys.modules, 'jax imported'; "
            "from runtime.cli import build_parser; build_parser(); assert 'jax' not in sys.modules, 'jax via cli'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    """The tutorial snippet, with a micro model, 2 + 1 steps, and an isolated data cache."""
    root = tmp_path_factory.mktemp("tutorial")
    cache = tmp_path_factory.getbasetemp() / "wse-cache"  # shared with the demo test of the same session
    (root / "micro.yaml").write_text(MICRO)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WSE_CACHE_DIR", str(cache))
        from runtime import initialize_model, load_pretrain_data, load_task_data

        model = initialize_model(str(root / "micro.yaml"), run_dir=root / "pre")
        trained = model.train(load_pretrain_data(), steps=2, eval_batches=10_000)  # every validation window
        trained["evaluated"] = model.evaluate()  # the same weights, before fine-tuning
        tasks = load_task_data()
        tuned = model.fine_tune(tasks, steps=1)
        text = model.generate_text("The assert statement", max_new_tokens=8)
        task_eval = model.evaluate(tasks)
        corpus_eval = model.evaluate()
    return root, model, trained, tuned, text, task_eval, corpus_eval


@pytest.mark.slow
def test_snippet_trains_fine_tunes_and_generates(tutorial):
    root, model, trained, tuned, text, _, _ = tutorial
    assert trained["run_dir"] == str(root / "pre") and trained["checkpoint_step"] == 2
    assert trained["mesh"] == {"data": 8, "stage": 1, "model": 1} and trained["mode"] == "data"  # defaults: 8 CPU devices, auto
    assert tuned["run_dir"] == str((root / "pre-ft").absolute()) and tuned["checkpoint_step"] == 1
    assert tuned["train_examples"]["examples"] > 400 and tuned["val_examples"]["examples"] > 40  # the built-in task set
    assert isinstance(text, str) and text
    assert model.checkpoint == root / "pre-ft"


@pytest.mark.slow
def test_same_checkpoints_as_the_command_line(tutorial):
    """`wse generate` on the fine-tuning run dir, with the same sampling settings, continues the prompt exactly as
    generate_text did."""
    from runtime.workflow import SAMPLING

    root, _, _, tuned, text, _, _ = tutorial
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        settings = {**SAMPLING, "min_new_tokens": min(SAMPLING["min_new_tokens"], 8)}  # generate_text caps it too
        flags = [x for k, v in settings.items() for x in (f"--{k.replace('_', '-')}", str(v))]
        assert main(["generate", "--json", "--checkpoint", tuned["run_dir"], "--prompt", "The assert statement",
                     "--max-new-tokens", "8", *flags]) == 0
    assert json.loads(out.getvalue().strip().splitlines()[-1])["completion"] == text
    for run in ("pre", "pre-ft"):
        assert (root / run / "checkpoints").is_dir() and (root / run / "loss.png").is_file()
    assert "data: builtin\n" in (root / "pre" / "config.yaml").read_text()  # as `wse train data=builtin` records it


@pytest.mark.slow
def test_evaluate_and_plan(tutorial):
    _, model, trained, tuned, _, task_eval, corpus_eval = tutorial
    assert 0 < task_eval["val_loss"] < 12 and task_eval["val_perplexity"] > 1
    assert task_eval["val_loss"] == pytest.approx(tuned["val_loss"], rel=1e-4)  # same held-out completions, same weights
    assert corpus_eval["tokens"] > 10_000 and 0 < corpus_eval["val_loss"] < 12
    # one "validation loss" per model: training's (over the whole split) is the tutorial's evaluate() of its weights
    assert trained["val_coverage"] == 1 and trained["val_tokens"] == trained["evaluated"]["tokens"] > 10_000
    assert trained["evaluated"]["val_loss"] == pytest.approx(trained["val_loss"], rel=1e-5)
    plan = model.plan("cs2")
    assert plan["model"] == "micro" and plan["mode"] == "pipelined" and plan["step_time_s"] > 0


def test_bad_arguments_fail_before_training(tmp_path):
    from runtime import initialize_model, load_task_data
    from runtime.errors import UserError

    with pytest.raises(Exception, match="unknown model"):
        initialize_model("tinyy")
    with pytest.raises(UserError, match="mesh.axes"):
        initialize_model(mesh={"data": -1, "stage": -1})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(UserError, match="no \"completion\""):
        load_task_data(bad)


@pytest.mark.slow
def test_load_takes_another_run_dirs_weights(tutorial):
    """load() gives a fresh model the weights another run (or process) wrote: it then generates what the model that
    trained them does; a run dir of another shape is refused with a UserError that names both."""
    import numpy as np

    from runtime import initialize_model
    from runtime.errors import UserError

    root, model, _, tuned, text, _, _ = tutorial
    fresh = initialize_model(str(root / "micro.yaml"), run_dir=root / "elsewhere").load(tuned["run_dir"])
    assert fresh.checkpoint == root / "pre-ft"
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(fresh.params), jax.tree.leaves(model.params)))
    assert fresh.generate_text("The assert statement", max_new_tokens=8) == text
    with pytest.raises(UserError, match="holds a micro model, not this tiny"):
        initialize_model("tiny").load(tuned["run_dir"])

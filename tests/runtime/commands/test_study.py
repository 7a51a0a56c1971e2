"""`wse study` on micro settings (a few steps of 16-wide models on a small text corpus with a 300-token BPE): the
sweep trains one run dir per point and measures it; running again reuses every finished point and retrains only a
missing one; the scaling study predicts its largest size before training it; bad settings are one error line (exit
2) and write nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.study.settings import describe, parse_settings
from runtime.study.sweep import POINTS_DIR

MICRO = ["batch_size=2", "seq_len=16", "eval_batches=2", "vocab=300", "d_head=16"]
MUP = ["widths=16,32", "lrs=2e-3,1.6e-2,1e30", "steps=2", "layers=1"]  # 1e30: every model diverges at step 2
SCALING = ["shapes=1x16,1x32,1x48,1x64", "tokens_per_param=0.05", "lr=4e-3"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Thirty help topics of CPython as text files (the study trains its BPE on them)."""
    from pydoc_data.topics import topics

    root = tmp_path_factory.mktemp("study-corpus")
    for i, name in enumerate(sorted(topics)[:30]):
        (root / f"{i:02d}.txt").write_text(topics[name], encoding="utf-8")
    return root


def study(capsys, *args) -> tuple[int, dict | None, str]:
    code = main(["study", *args, "--json"])
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1]) if code == 0 else None
    return code, result, captured.err


@pytest.mark.slow
def test_mup_sweep_then_resume_reuses_finished_points(corpus, tmp_path, capsys):
    out = tmp_path / "mup"
    args = ["mup", "--quick", "--out", str(out), f"data={corpus}", *MICRO, *MUP]
    code, first, err = study(capsys, *args)
    assert code == 0, err
    assert first["trained"] == 8 and first["diverged"] == 4 and first["reused"] == 0 and len(first["points"]) == 12
    assert err.count("trained in") == 8 and "--quick: sized for 2 CPU cores" in err
    assert err.count("diverged at step 2 (the loss is nan)") == 4  # recorded as the sweep's outcome, not an error
    assert sorted(p.name for p in (out / POINTS_DIR).iterdir())[:2] == ["mup-w16-lr0.002", "mup-w16-lr0.016"]
    diverged = json.loads((out / "diverged.json").read_text())
    assert sorted(diverged) == ["mup-w16-lr1e+30", "mup-w32-lr1e+30", "sp-w16-lr1e+30", "sp-w32-lr1e+30"]
    assert all(d["step"] == 2 and not (out / POINTS_DIR / name / "checkpoints").exists()  # nothing non-finite saved
               for name, d in diverged.items())
    assert first["data"]["vocab_size"] == 300 and (out / "tokenizer.json").is_file()
    for param in ("sp", "mup"):
        best = first["summary"][param]["best"]
        assert set(best) == {"16", "32"} and first["summary"][param]["drift"] is not None
        assert all(b["lr"] in (2e-3, 1.6e-2) for b in best.values())  # a diverged rate is never the best
    assert Path(first["figure"]).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "study.json").read_text())["points"] == first["points"]
    assert {r["target"] for r in first["costs"]["rows"]} == {"1 CS-2", "Andromeda (16 CS-2)", "8 H100 (one node)"}

    shutil.rmtree(out / POINTS_DIR / "sp-w32-lr0.016")  # one point lost: only it is trained again
    code, again, err = study(capsys, *args)
    assert code == 0, err
    assert (again["reused"], again["trained"], again["diverged"]) == (7, 1, 4) and "resuming wse study mup" in err
    assert [p["val_loss"] for p in again["points"]] == pytest.approx([p["val_loss"] for p in first["points"]])


@pytest.mark.slow
def test_scaling_predicts_the_largest_size_before_training_it(corpus, tmp_path, capsys):
    out = tmp_path / "scaling"
    code, result, err = study(capsys, "scaling", "--quick", "--out", str(out), f"data={corpus}", *MICRO, *SCALING)
    assert code == 0, err
    lines = err.splitlines()
    predicted = next(i for i, line in enumerate(lines) if line.startswith("prediction for 1x64"))
    trained = next(i for i, line in enumerate(lines) if line.startswith("[4/4] 1x64"))
    assert predicted < trained  # printed first, then trained
    p, held = result["prediction"], result["held_out"]
    assert p["fitted_sizes"] == ["1x16", "1x32", "1x48"] and p["low"] < p["loss"] < p["high"]
    assert held["error"] == pytest.approx((held["measured"] - p["loss"]) / p["loss"])
    assert result["fit"]["chosen"] == "power_law" and result["fit"]["power_law"]["points"] == 3
    assert json.loads((out / "prediction.json").read_text())["loss"] == p["loss"]
    sizes = [pt["non_embedding"] for pt in result["points"]]
    assert sizes == sorted(sizes) and all(pt["compute"] == 6 * pt["non_embedding"] * pt["tokens"]
                                          for pt in result["points"])
    assert Path(result["figure"]).read_bytes()[:4] == b"\x89PNG"
    assert result["paper"]["f0"] == 5.984e22 and result["paper"]["alpha"] == 0.0737 and result["paper"]["c"] == 0.5066


@pytest.mark.parametrize("args, message", [
    (["mup", "widht=3"], "unknown setting 'widht' for `wse study mup` (did you mean 'widths'?)"),
    (["mup", "lrs=1e-3,2e-3"], "lrs needs at least 3 different positive learning rates"),
    (["scaling", "shapes=2x32,3x"], "shape '3x' is not LAYERSxWIDTH"),
    (["mup", "widths=32,48", "d_head=32"], "width 48 is not a positive multiple of d_head=32"),
    (["mup", "data=/no/such/corpus"], "data: /no/such/corpus does not exist"),
    (["scaling", "vocab=12"], "vocab must be 257"),
])
def test_bad_settings_are_one_error_line_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "study"
    code = main(["study", *args, "--quick", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert not out.exists()


def test_another_studys_directory_is_refused(corpus, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["study", "mup", "--quick", "--out", str(out)]) == 2
    assert "not a study" in capsys.readouterr().err
    (out / "notes.txt").unlink()
    saved = {"kind": "mup", **describe(parse_settings("mup", True, ["steps=7"]))}
    (out / "settings.json").write_text(json.dumps(saved))
    assert main(["study", "mup", "--quick", "--out", str(out), "steps=5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out} holds a study with steps=7, not 5;") and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["settings.json"]
    assert json.loads((out / "settings.json").read_text()) == saved

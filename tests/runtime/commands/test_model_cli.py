"""`wse convert`, `wse generate`, `wse eval`: the JSON contract, agreement with the library, one-line user errors."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from model import gpt, hf
from model.config import get_config
from model.generate import generate
from runtime.workflow import SAMPLING
from model.tokenizer import get_tokenizer
from runtime.cli import main

# GPT-2's vocabulary (so the real tokenizer applies) on a very small body.
CFG = get_config("tiny").replace(name="clitest", n_layers=2, d_model=32, n_heads=2, d_head=16, d_ffn=64, max_seq_len=64)


def wse(capsys, *argv):
    """Run the CLI in-process; returns (exit code, parsed last stdout line or None, stderr)."""
    rc = main([*argv])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return rc, (json.loads(lines[-1]) if rc == 0 and lines else None), err


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """A HF directory with random weights and its converted checkpoint."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (0.1 * rng.standard_normal(s)).astype(np.float32), gpt.param_shapes(CFG),
                          is_leaf=lambda x: isinstance(x, tuple))
    hf.save_hf(root / "hf", CFG, params)
    assert main(["convert", "--from-hf", str(root / "hf"), "--out", str(root / "ckpt"), "--json"]) == 0
    return root


def test_convert_both_ways_is_lossless(dirs, capsys):
    rc, res, _ = wse(capsys, "convert", "--to-hf", str(dirs / "ckpt"), "--out", str(dirs / "back"), "--json")
    assert rc == 0 and res["conversion"] == "checkpoint->hf" and res["parameters"] == CFG.parameters
    a, b = load_file(str(dirs / "hf" / "model.safetensors")), load_file(str(dirs / "back" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.slow
def test_generate_json_matches_library(dirs, capsys):
    rc, res, _ = wse(capsys, "generate", "--checkpoint", str(dirs / "ckpt"), "--prompt", "Hello world",
                     "--max-new-tokens", "6", "--json")
    assert rc == 0
    assert {"prompt", "completion", "tokens", "tokens_per_s"} <= res.keys() and res["prompt"] == "Hello world"
    tok = get_tokenizer()
    cfg, params = hf.load_hf(dirs / "hf")
    # the defaults are the tutorial's sampling (runtime.workflow.SAMPLING), its minimum capped at --max-new-tokens
    lib = generate(cfg, params, [tok.encode("Hello world")], 6, eot_id=tok.eot_id, **{**SAMPLING, "min_new_tokens": 6})
    assert res["tokens"] == lib.tokens[0] and res["completion"] == tok.decode(lib.tokens[0])
    assert res["tokens_per_s"] > 0
    rc, greedy, _ = wse(capsys, "generate", "--checkpoint", str(dirs / "ckpt"), "--prompt", "Hello world",
                        "--max-new-tokens", "6", "--temperature", "0", "--repetition-penalty", "1", "--json")
    lib = generate(cfg, params, [tok.encode("Hello world")], 6, eot_id=tok.eot_id, min_new_tokens=6)
    assert rc == 0 and greedy["tokens"] == lib.tokens[0]
    rc, via_hf, _ = wse(capsys, "generate", "--hf", str(dirs / "hf"), "--prompt", "Hello world",
                        "--max-new-tokens", "6", "--json")
    assert rc == 0 and via_hf["tokens"] == res["tokens"]
    rc, sampled, _ = wse(capsys, "generate", "--hf", str(dirs / "hf"), "--prompt", "Hello world", "--max-new-tokens",
                         "6", "--temperature", "1.0", "--top-k", "50", "--top-p", "0.9", "--seed", "7", "--json")
    assert rc == 0 and len(sampled["tokens"]) <= 6


@pytest.mark.slow
def test_generate_fresh_model(capsys, tmp_path):
    """--model takes a preset or a model file (a small file here, to keep the test fast); weights from seed 0. Its
    vocabulary padded past the tokenizer's (nanoGPT's 50304) never yields an id the tokenizer lacks, even at a high
    temperature; a vocabulary smaller than the tokenizer's is refused in one line."""
    model = tmp_path / "mini.json"
    model.write_text(json.dumps({"preset": "tiny", "n_layers": 1, "vocab_size": 50304}))
    argv = ["generate", "--model", str(model), "--prompt", "The", "--max-new-tokens", "40", "--temperature", "50",
            "--seed", "1", "--json"]
    (rc, res, _), (rc2, res2, _) = (wse(capsys, *argv) for _ in range(2))
    assert rc == rc2 == 0 and res["prompt_tokens"] == 1 and len(res["tokens"]) == 40
    assert res2["tokens"] == res["tokens"] and "seed 0" in res["model"]
    assert max(res["tokens"]) < get_tokenizer().vocab_size
    model.write_text(json.dumps({"preset": "tiny", "n_layers": 1, "vocab_size": 1000}))
    rc, _, err = wse(capsys, "generate", "--model", str(model), "--prompt", "The", "--json")
    assert rc == 2 and err.startswith("error: model 'mini' has a vocabulary of 1000 ids but tokenizer gpt2")


def _reference_loss(params, tokens, seq_len):
    """Independent restatement of the eval definition: windows of seq_len, m - 1 predictions each, tails < 2 dropped."""
    nll, count = 0.0, 0
    fwd = jax.jit(gpt.forward, static_argnums=0)
    for s in range(0, len(tokens), seq_len):
        w = tokens[s:s + seq_len]
        if len(w) < 2:
            continue
        padded = np.zeros(seq_len, np.int32)
        padded[:len(w)] = w  # right padding is invisible to earlier positions (causal): one compile per seq_len
        logits = np.asarray(fwd(CFG, params, jnp.asarray([padded])), np.float64)[0, :len(w) - 1]
        top = logits.max(-1, keepdims=True)
        logp = logits - (top + np.log(np.exp(logits - top).sum(-1, keepdims=True)))
        nll -= logp[np.arange(len(w) - 1), w[1:]].sum()
        count += len(w) - 1
    return nll / count, count


@pytest.mark.slow
def test_eval_matches_definition(dirs, capsys, tmp_path):
    tok = get_tokenizer()
    text = "The quick brown fox jumps over the lazy dog."
    while len(tok.encode(text)) % 16 != 1:  # make the last window a single token, which must be dropped
        text += " again"
    n = len(tok.encode(text))
    (tmp_path / "t.txt").write_text(text)
    rc, res, _ = wse(capsys, "eval", "--checkpoint", str(dirs / "ckpt"), "--text", str(tmp_path / "t.txt"),
                     "--seq-len", "16", "--json")
    assert rc == 0
    _, params = hf.load_hf(dirs / "hf")
    loss, count = _reference_loss(params, tok.encode(text), 16)
    assert res["tokens"] == n - 1 and res["predictions"] == count == (n - 1) - (n - 1) // 16
    assert res["loss"] == pytest.approx(loss, rel=1e-5) and res["perplexity"] == pytest.approx(np.exp(loss), rel=1e-5)
    rc, full, _ = wse(capsys, "eval", "--hf", str(dirs / "hf"), "--text", str(tmp_path / "t.txt"), "--json")
    assert rc == 0 and full["seq_len"] == CFG.max_seq_len
    assert full["loss"] == pytest.approx(_reference_loss(params, tok.encode(text), 64)[0], rel=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["generate", "--hf", "{root}/nope", "--prompt", "x"], "does not exist"),
    (["generate", "--checkpoint", "{root}/nope", "--prompt", "x"], "does not exist"),
    (["generate", "--hf", "{root}/hf", "--prompt", "Hello", "--max-new-tokens", "100"], "plus max_new_tokens 100"),
    (["eval", "--hf", "{root}/hf", "--text", "{root}/empty.txt"], "is empty"),
    (["eval", "--hf", "{root}/hf", "--text", "{root}/one.txt", "--seq-len", "65"], "beyond the model context of 64"),
    (["eval", "--hf", "{root}/hf", "--text", "{root}/missing.txt"], "does not exist"),
    (["convert", "--from-hf", "{root}/bad", "--out", "{root}/x"], "not a valid safetensors"),
    (["convert", "--to-hf", "{root}/ckpt", "--out", "{root}/hf"], "not empty"),
])
def test_user_errors_exit_2(dirs, capsys, argv, message):
    (dirs / "empty.txt").write_text("")
    (dirs / "one.txt").write_text("Hello world, again and again.")
    if not (dirs / "bad").exists():
        (dirs / "bad").mkdir()
        (dirs / "bad" / "config.json").write_text((dirs / "hf" / "config.json").read_text())
        (dirs / "bad" / "model.safetensors").write_bytes(b"garbage")
    rc, _, err = wse(capsys, *[a.format(root=dirs) for a in argv], "--json")
    assert rc == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last


def test_subprocess_contract(dirs):
    """Out of process: stdout's last line is the JSON result; a user error is exactly one stderr line, exit 2."""
    run = lambda *a: subprocess.run([sys.executable, "-m", "runtime.cli", *a], capture_output=True, text=True)  # noqa: E731
    res = run("generate", "--checkpoint", str(dirs / "ckpt"), "--prompt", "Hi", "--max-new-tokens", "70", "--json")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and "70" in res.stderr


def test_generated_text_on_stdout_statistics_on_stderr(capsys, tmp_path):
    """Without --json: stdout holds the prompt and its continuation only (redirect-safe, never wrapped); the
    statistics line is a diagnostic on stderr."""
    model = tmp_path / "mini.json"
    model.write_text(json.dumps({"preset": "tiny", "n_layers": 1}))
    prompt = "A prompt long enough that a renderer wrapping at eighty columns would have to break it into two lines"
    assert main(["generate", "--model", str(model), "--prompt", prompt, "--max-new-tokens", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(prompt) and "tokens/s" not in out and "tokens/s" in err

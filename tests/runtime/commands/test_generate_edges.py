"""`wse generate` at the numeric edges of its settings (issue 28, item 5 of Build): what transformers' generate
accepts behaves as it does there (top_k beyond the vocabulary keeps every token, top_p 0 keeps the most likely one,
a huge temperature samples), the rest is one `error:` line (runtime/config/sampling.py)."""

import json

import pytest

from runtime.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "mini.json"
    path.write_text(json.dumps({"preset": "tiny", "n_layers": 1}))
    return str(path)


# transformers' own defaults (no filter, no penalty, no minimum) under the settings each case gives: `wse generate`'s
# defaults are the tutorial's sampling
NEUTRAL = ("--top-k", "0", "--top-p", "1", "--repetition-penalty", "1", "--min-new-tokens", "0")


def tokens(capsys, model, *extra) -> list[int]:
    assert main(["generate", "--model", model, "--prompt", "The assert statement", "--max-new-tokens", "6",
                 "--json", *NEUTRAL, *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tokens"]


@pytest.mark.parametrize("extra, fragment", [
    (["--temperature", "-1"], "--temperature must be a finite number >= 0"),
    (["--temperature", "nan"], "--temperature must be a finite number >= 0"),
    (["--temperature", "inf"], "--temperature must be a finite number >= 0"),
    (["--top-k", "-1"], "--top-k must be >= 0"),
    (["--top-p", "-0.1"], "--top-p must be between 0 and 1"),
    (["--top-p", "1.5"], "--top-p must be between 0 and 1"),
    (["--top-p", "nan"], "--top-p must be between 0 and 1"),
    (["--repetition-penalty", "0"], "--repetition-penalty must be a finite number > 0"),
    (["--repetition-penalty", "-1.2"], "--repetition-penalty must be a finite number > 0"),
    (["--repetition-penalty", "nan"], "--repetition-penalty must be a finite number > 0"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["--max-new-tokens", "-3"], "--max-new-tokens must be at least 1"),
    (["--max-new-tokens", "3", "--min-new-tokens", "5"], "--min-new-tokens must be between 0 and --max-new-tokens (3)"),
    (["--seed", str(2**70)], "--seed must be a 64-bit integer"),
])
def test_settings_no_generator_can_use_are_one_line(capsys, model, extra, fragment):
    argv = ["generate", "--model", model, "--prompt", "x", *extra]
    if "--max-new-tokens" not in extra:
        argv += ["--max-new-tokens", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err


@pytest.mark.slow
def test_edges_transformers_accepts_behave_as_there(capsys, model):
    sampled = tokens(capsys, model, "--temperature", "1", "--seed", "3")
    # top_k at or beyond the vocabulary (even beyond int32) keeps every token: transformers clamps it to the vocabulary
    assert tokens(capsys, model, "--temperature", "1", "--seed", "3", "--top-k", "60000") == sampled
    assert tokens(capsys, model, "--temperature", "1", "--seed", "3", "--top-k", str(2**40)) == sampled
    # top_p 0 keeps the most likely token alone (transformers' top-p keeps at least one): greedy
    greedy = tokens(capsys, model, "--temperature", "0")
    assert tokens(capsys, model, "--temperature", "1", "--seed", "3", "--top-p", "0") == greedy
    # a huge temperature samples (close to uniform), and a seed of any sign is a seed
    assert len(tokens(capsys, model, "--temperature", "1e30", "--seed", "-7")) == 6

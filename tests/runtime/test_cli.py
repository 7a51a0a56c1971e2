import json
import subprocess
import sys


def wse(*args):
    return subprocess.run([sys.executable, "-m", "runtime.cli", *args], capture_output=True, text=True)


def test_help_does_not_import_jax():
    code = "import sys; from runtime.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit: pass\nassert 'jax' not in sys.modules, 'wse --help imported jax'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_info_json_contract():
    res = wse("info", "--model", "111M", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("name", "n_layers", "d_model", "n_heads", "d_head", "d_ffn", "vocab_size", "max_seq_len", "parameters",
                "flops_per_token_6n", "flops_per_token_algorithmic", "chinchilla_tokens", "train_flops_6nd",
                "train_flops_algorithmic"):
        assert key in out
    assert out["parameters"] == 111_050_496


def test_user_error_is_one_line_exit_2():
    res = wse("info", "--model", "112M", "--json")
    assert res.returncode == 2
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_overrides_anywhere_on_the_line():
    """KEY=VALUE overrides (and input lists) may follow options; anything else unknown is refused by argparse."""
    from runtime.cli import build_parser, parse

    parser, _ = build_parser()
    args = parse(parser, ["train", "model=tiny", "--json", "train.steps=5", "--config", "run.yaml", "mesh.devices=2"])
    assert args.overrides == ["model=tiny", "train.steps=5", "mesh.devices=2"] and args.json and args.config == "run.yaml"
    args = parse(parser, ["finetune", "--from", "runs/x", "--data", "builtin", "--json", "train.steps=3"])
    assert args.overrides == ["train.steps=3"]
    res = wse("train", "model=tiny", "--json", "--bogus")
    assert res.returncode == 2 and "unrecognized arguments: --bogus" in res.stderr
    res = wse("info", "--model", "tiny", "stray=1")
    assert res.returncode == 2 and "unrecognized arguments: stray=1" in res.stderr


def test_train_takes_model_and_data_options_like_the_other_commands():
    """`wse train --model X --data D` is `model=X data=D`; both forms of one setting at once is one error line."""
    import pytest

    from runtime.cli import build_parser, parse
    from runtime.commands.train import overrides
    from runtime.config import load_config
    from runtime.errors import UserError

    parser, _ = build_parser()
    args = parse(parser, ["train", "--model", "demo", "train.steps=3", "--data", "builtin"])
    assert load_config(None, overrides(args)).model == "demo"
    assert sorted(overrides(args)) == ["data=builtin", "model=demo", "train.steps=3"]
    with pytest.raises(UserError, match="--model and model= both set the model"):
        overrides(parse(parser, ["train", "--model", "demo", "model=tiny"]))

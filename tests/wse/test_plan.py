"""`wse plan`: the JSON contract, one-line errors with exit 2, pictures, and no JAX anywhere near it."""

import json
import subprocess
import sys

import pytest

from runtime.cli import main

TOP = {"model", "system", "systems", "mode", "fits", "grid", "batch_size", "seq_len", "step_time_s", "tokens_per_s",
       "utilization", "time_to_train_s", "memory", "stages", "layers", "scaling", "assumptions"}
MEMORY = {"capacity_bytes_per_core", "peak_bytes_per_core", "weights_bytes", "optimizer_bytes", "activations_bytes"}


def plan_json(capsys, *args):
    assert main(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_pipelined_json_contract(capsys):
    out = plan_json(capsys, "--model", "111M", "--system", "cs2")
    assert TOP <= set(out) and MEMORY <= set(out["memory"])
    assert out["mode"] == "pipelined" and out["fits"] and out["systems"] == 1
    assert out["batch_size"] == 120 and out["seq_len"] == 2048  # the preset's published batch, 2048 tokens
    assert out["grid"] == {"rows": 996, "cols": 757}
    for stage in out["stages"]:
        assert set(stage) >= {"layers", "region", "memory_bytes_per_core", "time_s"}
        assert set(stage["region"]) == {"row", "col", "rows", "cols"} and len(stage["layers"]) == 2
    assert out["stages"][0]["layers"][0] == 0 and out["stages"][-1]["layers"][1] == len(out["layers"]) - 1
    assert all(set(a) == {"value", "reason"} for a in out["assumptions"].values())


def test_system_defaults_to_cs2_and_says_so(capsys):
    out = plan_json(capsys, "--model", "111M")
    assert out["system"] == plan_json(capsys, "--model", "111M", "--system", "cs2")["system"]
    assert "--system not given: planned on cs2" in out["system_note"]
    assert "system_note" not in plan_json(capsys, "--model", "111M", "--system", "cs3")


def test_streaming_json_contract_and_seq_len_cap(capsys):
    out = plan_json(capsys, "--model", "tiny", "--system", "cs3", "--mode", "streaming", "--systems", "4",
                    "--batch-size", "64")
    assert out["mode"] == "streaming" and out["systems"] == 4 and out["seq_len"] == 256  # capped at max_seq_len
    assert out["stages"] == []
    assert all({"name", "compute_time_s", "stream_time_s"} <= set(layer) for layer in out["layers"])
    assert [p["systems"] for p in out["scaling"]] == [1, 2, 4, 8, 16]
    assert all({"systems", "tokens_per_s", "efficiency"} <= set(p) for p in out["scaling"])


def test_auto_picks_streaming_for_13b_and_clusters(capsys):
    assert plan_json(capsys, "--model", "13B", "--system", "cs2")["mode"] == "streaming"
    out = plan_json(capsys, "--model", "1.3B", "--system", "cg1")
    assert out["mode"] == "streaming" and out["systems"] == 64


def test_pictures(tmp_path, capsys):
    for mode in ("pipelined", "streaming"):
        pic, tl = tmp_path / f"{mode}.png", tmp_path / f"{mode}-timeline.png"
        out = plan_json(capsys, "--model", "111M", "--system", "cs2", "--mode", mode, "--picture", str(pic),
                        "--timeline", str(tl))
        for path in (pic, tl):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
        assert out["picture"] == str(pic) and out["timeline"] == str(tl)


def test_rich_table_by_default(capsys):
    assert main(["plan", "--model", "111M", "--system", "cs2"]) == 0
    text = capsys.readouterr().out
    assert "stages" in text and "assumptions" in text and "tokens/s" in text


@pytest.mark.parametrize("args, fragment", [
    (["--model", "13B", "--system", "cs2", "--mode", "pipelined"], "--mode streaming"),
    (["--model", "111M", "--system", "cs7"], "unknown system 'cs7'"),
    (["--model", "111M", "--system", "cs2", "--seq-len", "4096"], "max_seq_len 2048"),
    (["--model", "111M", "--system", "cs2", "--picture", "/nonexistent/dir/p.png"], "does not exist"),
])
def test_user_errors_are_one_line_exit_2(args, fragment, capsys):
    assert main(["plan", *args, "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err


def test_system_file_unknown_key(tmp_path, capsys):
    path = tmp_path / "my.yaml"
    path.write_text("base: cs2\nswarmx:\n  fanout: 8\n")
    assert main(["plan", "--model", "111M", "--system", str(path), "--json"]) == 2
    assert "unknown key 'swarmx.fanout' (did you mean 'fan_out'?)" in capsys.readouterr().err
    path.write_text("base: cs2\nplanner:\n  compute_efficiency: 0.25\n")
    out = plan_json(capsys, "--model", "111M", "--system", str(path))
    assert out["assumptions"]["plan.compute_efficiency"]["value"] == 0.25


def test_no_jax_and_no_model_in_the_simulator():
    code = (
        "import sys\n"
        "import wse, wse.wafer.pictures, wse.schedule\n"
        "assert 'jax' not in sys.modules and 'model' not in sys.modules, 'wse must not import jax or model'\n"
        "from runtime.cli import main\n"
        "assert main(['plan', '--model', '111M', '--system', 'cs2', '--json']) == 0\n"
        "assert 'jax' not in sys.modules, 'wse plan imported jax'\n"
        "import wse.devices.specs, wse.devices.files, wse.devices.cost_model, wse.devices.plan\n"
        "assert main(['plan', '--model', '1.3B', '--system', 'h200', '--mode', 'streaming', '--json']) == 0\n"
        "assert 'jax' not in sys.modules, 'a device plan imported jax'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    json.loads(res.stdout.strip().splitlines()[-1])


INFERENCE_TOP = {"model", "system", "systems", "task", "mode", "batch_size", "seq_len", "prompt_len", "token_latency_s",
                 "tokens_per_s_per_request", "tokens_per_s", "time_to_first_token_s", "memory", "layers",
                 "assumptions", "details"}


def test_decode_and_prefill_json_contract(capsys):
    out = plan_json(capsys, "--model", "llama3.1-70b", "--system", "cs3", "--systems", "6", "--task", "decode",
                    "--batch-size", "4")
    assert INFERENCE_TOP <= set(out) and out["mode"] == "inference" and out["task"] == "decode"
    assert 4 <= out["details"]["wafers_used"] <= 6 and out["time_to_first_token_s"] is None
    assert out["tokens_per_s"] == pytest.approx(4 * out["tokens_per_s_per_request"])
    pre = plan_json(capsys, "--model", "llama3.1-8b", "--system", "cs3", "--task", "prefill", "--prompt-len", "512")
    assert pre["prompt_len"] == 512 and pre["time_to_first_token_s"] == pre["token_latency_s"] > 0
    assert main(["plan", "--model", "llama3.1-8b", "--system", "cs3", "--task", "decode"]) == 0
    assert "tokens/s per request" in capsys.readouterr().out


def test_planning_only_fields_in_a_model_file(tmp_path, capsys):
    path = tmp_path / "gqa.yaml"
    path.write_text("preset: 1.3B\nn_kv_heads: 4\nffn_gated: true\n")
    gqa = plan_json(capsys, "--model", str(path), "--system", "cs3", "--task", "decode", "--batch-size", "8")
    mha = plan_json(capsys, "--model", "1.3B", "--system", "cs3", "--task", "decode", "--batch-size", "8")
    assert gqa["memory"]["kv_cache_bytes"] * 4 == mha["memory"]["kv_cache_bytes"]
    assert gqa["details"]["ffn_gated"] and gqa["memory"]["weights_bytes"] > mha["memory"]["weights_bytes"]


def test_streaming_reports_both_flop_conventions_and_memoryx(capsys):
    out = plan_json(capsys, "--model", "13B", "--system", "cs3", "--mode", "streaming", "--memoryx", "12TB")
    d = out["details"]
    assert d["utilization_paper"] > out["utilization"] > 0 and 0 < d["kernel_efficiency"] <= 1
    assert out["memory"]["memoryx_capacity_bytes"] == 12e12
    assert main(["plan", "--model", "13B", "--system", "cs3", "--memoryx", "100GB", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "use --memoryx 1.5TB" in err and err.count("\n") == 1


def test_info_names_three_flop_conventions(capsys):
    assert main(["info", "--model", "111M", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["flops_per_token_6n"] < out["flops_per_token_algorithmic"] < out["flops_per_token_paper"]
    assert out["train_flops_published"] == 2.6e18
    assert out["train_flops_paper"] == pytest.approx(2.6e18, rel=0.025)
    assert set(out["flop_conventions"]) == {"flops_per_token_6n", "flops_per_token_algorithmic", "flops_per_token_paper"}


def test_generate_json_contract(capsys):
    out = plan_json(capsys, "--model", "llama3-8b", "--system", "cs2", "--task", "generate", "--prompt-len", "4096",
                    "--new-tokens", "4096")
    assert INFERENCE_TOP <= set(out) and out["task"] == "generate" and out["seq_len"] == 8192
    assert out["new_tokens"] == 4096 and out["time_to_first_token_s"] > 0 and out["time_per_output_token_s"] > 0
    assert out["end_to_end_s"] == pytest.approx(out["time_to_first_token_s"] + 4095 * out["time_per_output_token_s"])
    assert out["tokens_per_s_per_request"] == pytest.approx(4096 / out["end_to_end_s"])
    assert main(["plan", "--model", "llama3-8b", "--system", "cs2", "--task", "generate"]) == 0
    text = capsys.readouterr().out
    assert "time to first token" in text and "time per output token" in text and "end to end" in text


def test_published_prints_both_tables_with_summary_lines(capsys):
    assert main(["plan", "--published"]) == 0
    text = capsys.readouterr().out
    for table in ("calibration", "validation"):
        line = next(l for l in text.splitlines() if l.startswith(f"{table}: "))
        assert "mean |error|" in line and "within 10%" in line and "within 25%" in line
    assert "GPT-J" in text or "gptj-6b" in text

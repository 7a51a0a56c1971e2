"""Odd but legal inputs (issue 25): every one gives a plan or one error line whose advice is true when followed;
throughput never falls with more systems, utilisation never passes 1, prefill latency never jumps when a wafer is
added; defaults say where they come from; idle systems and off-linear scaling are explained."""

import re
from dataclasses import replace

import pytest
from hypothesis import event, given, settings, strategies as st
from hypothesis.control import currently_in_test_context

from model.config import get_config
from runtime.cli import main
from wse.errors import PlanError
from wse.plan import make_plan
from wse.shape import PlanShape
from wse.validation.shapes import PLANNING_SHAPES
from wse.wafer.hardware import CS2, CS3, with_chip
from wse.wafer.inference import plan_inference

SHAPES = {name: shape for name, (shape, _) in PLANNING_SHAPES.items()}


def follow(advice: str, kwargs: dict, system):
    """Apply the fix a refusal names to the plan's inputs (and system); None when it names none."""
    if m := re.search(r"use --systems (\d+)", advice):
        return {**kwargs, "systems": int(m[1])}, system
    if m := re.search(r"use --batch-size (\d+)", advice):
        return {**kwargs, "batch_size": int(m[1])}, system
    if m := re.search(r"use a context of (\d+) tokens", advice):
        return {**kwargs, "seq_len": int(m[1]), "prompt_len": None}, system
    if m := re.search(r"sram_bytes_per_core: (\d+)", advice):
        return kwargs, with_chip(system, sram_bytes_per_core=int(m[1]))
    return None


def plan_following_advice(shape, system, **kwargs):
    """Plan; on a refusal follow its advice (up to three times). The advice must lead to a plan."""
    for _ in range(4):
        try:
            return make_plan(shape, system, **kwargs)
        except PlanError as err:
            step = follow(str(err), kwargs, system)
            assert step is not None, f"a refusal without advice to follow: {err}"
            if currently_in_test_context():
                event(f"followed: {' '.join(str(err).rsplit('; ', 1)[-1].split(' ')[:2])}")
            kwargs, system = step
    raise AssertionError("the advice did not lead to a plan")


@pytest.mark.parametrize("name, system, task, kwargs", [
    ("gpt-24t", CS3, "decode", {"seq_len": 16, "batch_size": 1}),  # a layer's weights alone exceed a wafer
    ("llama3.1-70b", CS3, "decode", {"seq_len": 8192, "batch_size": 512}),  # the KV cache overflows a layer
    ("llama3.1-405b", CS2, "prefill", {"seq_len": 2048, "prompt_len": 2048}),  # needs more wafers
    ("llama3-8b", CS2, "generate", {"prompt_len": 4096, "new_tokens": 4096, "batch_size": 64}),
])
def test_inference_refusals_advice_is_true_when_followed(name, system, task, kwargs):
    plan = plan_following_advice(SHAPES[name], system, task=task, **kwargs)
    assert plan.fits and plan.tokens_per_s > 0


def test_streaming_refusal_on_a_tiny_wafer_names_tiles_and_length_that_fit():
    tiny = with_chip(CS2, grid_cols=4, grid_rows=4)
    with pytest.raises(PlanError, match="weight_tile_bytes to") as err:
        make_plan(get_config("111M"), tiny)
    tile = int(re.search(r"weight_tile_bytes to ([\d,]+)", str(err.value))[1].replace(",", ""))
    seq = int(re.search(r"--seq-len (\d+)", str(err.value))[1])
    from wse.assumptions import PlanOptions

    plan = make_plan(get_config("111M"), tiny, seq_len=seq, options=PlanOptions(weight_tile_bytes=tile))
    assert 0 < plan.utilization <= 1 and plan.details["max_batch_per_system"]["offload"] >= 1


@settings(max_examples=30, deadline=None)
@given(cols=st.integers(1, 64), rows=st.integers(1, 64), sram=st.sampled_from([48 * 1024, 10**6, 10**8]),
       mode=st.sampled_from(["pipelined", "streaming"]), batch=st.integers(1, 300),
       preset=st.sampled_from(["tiny", "111M", "590M"]))
def test_utilisation_never_above_one_on_any_grid(cols, rows, sram, mode, batch, preset):
    system = with_chip(CS2, grid_cols=cols, grid_rows=rows, sram_bytes_per_core=sram)
    try:
        plan = make_plan(get_config(preset), system, mode=mode, batch_size=batch)
    except PlanError as err:
        event("refused")
        assert "\n" not in str(err)
        return
    assert 0 < plan.utilization <= 1
    assert plan.memory["peak_bytes_per_core"] <= plan.memory["capacity_bytes_per_core"] * (1 + 1e-9)


shapes = st.builds(
    lambda L, heads, d_head, width, kv_div, gated: PlanShape(
        "random", L, width, heads, d_head, 4 * width, 32000, 8192,
        n_kv_heads=heads // kv_div if heads % kv_div == 0 else heads, ffn_gated=gated),
    st.integers(1, 40), st.sampled_from([8, 16, 32, 64]), st.sampled_from([64, 128]),
    st.sampled_from([1024, 2048, 4096, 5120]), st.sampled_from([1, 4, 8]), st.booleans())


@settings(max_examples=20, deadline=None)
@given(shape=shapes, wafers=st.integers(1, 12), prompt=st.sampled_from([128, 1024, 4096]), batch=st.integers(1, 8),
       system=st.sampled_from([CS2, CS3]))
def test_prefill_latency_never_rises_when_a_wafer_is_added(shape, wafers, prompt, batch, system):
    try:
        a = plan_inference(shape, system, wafers=wafers, task="prefill", batch_size=batch, seq_len=prompt)
    except PlanError:
        event("does not fit")
        return
    b = plan_inference(shape, system, wafers=wafers + 1, task="prefill", batch_size=batch, seq_len=prompt)
    assert b.time_to_first_token_s <= a.time_to_first_token_s * (1 + 1e-12)


@settings(max_examples=20, deadline=None)
@given(shape=shapes, task=st.sampled_from(["decode", "prefill", "generate"]), batch=st.integers(1, 512),
       context=st.sampled_from([256, 2048, 8192]), wafers=st.integers(1, 4), system=st.sampled_from([CS2, CS3]))
def test_any_inference_refusal_leads_to_a_plan_when_its_advice_is_followed(shape, task, batch, context, wafers,
                                                                            system):
    kwargs = {"generate": {"prompt_len": context // 2, "new_tokens": context // 2}}.get(task, {"seq_len": context})
    plan = plan_following_advice(shape, system, task=task, batch_size=batch, systems=wafers, **kwargs)
    assert plan.tokens_per_s > 0
    if task == "generate":  # more wafers offered never make a request slower
        more = make_plan(shape, system, task=task, batch_size=plan.batch_size, systems=plan.systems + 1, **kwargs)
        assert more.end_to_end_s <= plan.end_to_end_s * (1 + 1e-12)


@pytest.mark.parametrize("name, system, n", [("llama3.1-8b", CS2, 4), ("llama3.1-70b", CS2, 11),
                                             ("llama3.1-405b", CS2, 42)])
def test_the_issues_prefill_jumps_are_gone(name, system, n):
    times = [plan_inference(SHAPES[name], system, wafers=k, task="prefill", seq_len=2048).time_to_first_token_s
             for k in (n, n + 1)]
    assert times[1] <= times[0]


def test_a_shape_without_a_batch_takes_the_published_rule_and_uses_its_systems():
    plan = make_plan(SHAPES["gpt-1t"], "cs3", systems=16, memoryx="1200TB")
    assert plan.batch_size == 1562 and plan.details["systems_used"] == 16  # 3.2M tokens: GPT-3's batch from 175B
    assert "Brown et al. 2020" in plan.details["batch_note"] and plan.utilization > 0.2
    assert "batch_note" not in make_plan(get_config("1.3B"), "cs2").details  # a preset keeps its published batch


def test_idle_systems_are_said_in_one_line():
    plan = make_plan(get_config("111M"), "cs2", systems=16, mode="streaming", batch_size=2)
    assert plan.details["systems_used"] < 16 and "\n" not in plan.details["idle_note"]
    assert "idle_note" not in make_plan(get_config("13B"), "cs2", systems=4).details


def test_off_linear_scaling_is_explained():
    for name, batch in (("1.3B", 528), ("111M", 8), ("13B", 720)):
        plan = make_plan(get_config(name), "cs2", systems=16, mode="streaming", batch_size=batch)
        for point in plan.scaling:
            assert bool(point.note) == (abs(point.efficiency - 1) > 0.02), point
        assert all(a.tokens_per_s <= b.tokens_per_s for a, b in zip(plan.scaling, plan.scaling[1:]))


def test_generate_adds_up_and_slows_as_the_cache_grows():
    shape = SHAPES["llama3-8b"]
    short = make_plan(shape, "cs2", task="generate", prompt_len=512, new_tokens=512)
    long = make_plan(shape, "cs2", task="generate", prompt_len=512, new_tokens=7000)
    for p in (short, long):
        assert p.end_to_end_s == pytest.approx(p.time_to_first_token_s + (p.new_tokens - 1) * p.time_per_output_token_s)
        assert p.tokens_per_s_per_request == pytest.approx(p.new_tokens / p.end_to_end_s)
    assert long.time_per_output_token_s > short.time_per_output_token_s  # attention reads a longer KV cache
    default = make_plan(shape, "cs3", task="generate")
    assert (default.prompt_len, default.new_tokens) == (1000, 1000) and "Artificial Analysis" in \
        default.details["workload_note"]


ODD = [
    ["--model", "111M", "--system", "andromeda", "--systems", "32"],
    ["--model", "llama3-8b", "--task", "decode", "--prompt-len", "100"],
    ["--model", "llama3-8b", "--new-tokens", "10"],
    ["--model", "llama3-8b", "--task", "prefill", "--memoryx", "12TB"],
    ["--model", "llama3-8b", "--task", "generate", "--seq-len", "100"],
    ["--model", "llama3-8b", "--task", "generate", "--prompt-len", "8000", "--new-tokens", "500"],
    ["--model", "llama3-8b", "--task", "generate", "--new-tokens", "0"],
    ["--model", "gpt-24t", "--system", "cs3", "--task", "decode", "--seq-len", "16", "--batch-size", "1"],
    ["--model", "1.3B", "--system", "h100", "--task", "generate"],
]


@pytest.mark.parametrize("args", ODD, ids=lambda a: " ".join(a[1:6]))
def test_odd_inputs_are_one_error_line(args, capsys):
    assert main(["plan", *args, "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("args", [
    ["--model", "111M", "--system", "andromeda", "--systems", "16"],
    ["--model", "gpt-1t", "--system", "cs3", "--systems", "16", "--memoryx", "1200TB"],
    ["--model", "1.3B", "--system", "cs2", "--systems", "16", "--mode", "streaming"],
    ["--model", "llama3-8b", "--system", "cs2", "--task", "generate", "--prompt-len", "4096", "--new-tokens", "4096"],
    ["--model", "qwen3-32b", "--system", "cs3", "--systems", "4", "--task", "decode"],
    ["--model", "gptj-6b", "--system", "cs2", "--systems", "2", "--batch-size", "120"],
    ["--model", "llama3-8b", "--system", "cs2", "--task", "prefill", "--prompt-len", "4096"],  # brings its context
], ids=lambda a: " ".join(a[1:4]))
def test_odd_but_plannable_inputs_plan(args, capsys):
    assert main(["plan", *args]) == 0
    assert "error" not in capsys.readouterr().err


def test_a_prompt_longer_than_the_context_given_names_both_flags(capsys):
    assert main(["plan", "--model", "llama3-8b", "--task", "prefill", "--prompt-len", "4096", "--seq-len", "2048"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: need 1 <= --prompt-len (4096) <= --seq-len (2048) <= the model's context (8192)")


@pytest.mark.parametrize("command", ["plan", "info"])
def test_an_unknown_model_is_told_the_planning_only_names_too(command, capsys):
    assert main([command, "--model", "llama3-9b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'llama3-9b' (did you mean 'llama3-8b'?)") and err.count("\n") == 1
    assert "gpt-1t" in err and err.count("llama3.1-8b") == 1


def test_a_model_file_without_a_batch_says_where_its_batch_comes_from(tmp_path, capsys):
    path = tmp_path / "wide.yaml"
    path.write_text("n_layers: 48\nd_model: 8192\nn_heads: 64\nd_head: 128\nd_ffn: 32768\n")
    assert main(["plan", "--model", str(path), "--system", "cs3", "--systems", "16"]) == 0
    out = capsys.readouterr().out
    assert "published rule" in out and "GPT-3" in out.replace("\n", " ")

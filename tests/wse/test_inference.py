"""Inference planning (decode, prefill): latency grows with layers, falls with more wafers until communication
dominates, never rises when more wafers are offered; memory refusals name a wafer count that works."""

from dataclasses import replace

import pytest
from hypothesis import event, given, settings, strategies as st

from wse.assumptions import PlanOptions
from wse.costs import model_layers, parameters
from wse.errors import PlanError
from wse.shape import PlanShape
from wse.validation.shapes import PLANNING_SHAPES
from wse.wafer.hardware import CS2, CS3
from wse.wafer.inference import LayerTimes, decode_step, fewest_wafers, layer_bytes, plan_inference

shapes = st.builds(
    lambda L, heads, kv_div, d_head, gated, tied: PlanShape(
        "random", L, heads * d_head, heads, d_head, 4 * heads * d_head, 32000, 4096,
        n_kv_heads=max(1, heads // kv_div) if heads % kv_div == 0 else heads, ffn_gated=gated, tied_embeddings=tied),
    st.integers(1, 24), st.sampled_from([8, 16, 32]), st.sampled_from([1, 2, 4, 8]), st.sampled_from([64, 128]),
    st.booleans(), st.booleans(),
)


def latency(shape, wafers, batch=1, system=CS3, context=1024, exact=False):
    if not exact:
        return plan_inference(shape, system, wafers=wafers, batch_size=batch, seq_len=context).token_latency_s
    layers = model_layers(shape, context)
    mem = layer_bytes(layers, shape, context, batch, PlanOptions())
    times = LayerTimes(layers, system, PlanOptions(), attended=context)
    return decode_step(times, mem, system, wafers, batch, shape.d_model, PlanOptions(),
                       float(system.grid().memory_bytes))["seconds"]


@settings(max_examples=25, deadline=None)
@given(shape=shapes, extra=st.integers(1, 8), batch=st.integers(1, 16))
def test_decode_latency_grows_with_layers(shape, extra, batch):
    deeper = replace(shape, n_layers=shape.n_layers + extra)
    try:
        deep = latency(deeper, 4, batch)
    except PlanError:
        event("does not fit")
        return
    assert deep >= latency(shape, 4, batch) * (1 - 1e-12)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, wafers=st.integers(1, 6), more=st.integers(1, 6), batch=st.integers(1, 64))
def test_more_wafers_never_slower_and_plans_are_sane(shape, wafers, more, batch):
    try:
        a = plan_inference(shape, CS3, wafers=wafers, batch_size=batch, seq_len=1024)
    except PlanError as err:
        event("does not fit")
        assert "use --systems" in str(err) or "shorter --seq-len" in str(err)
        return
    b = plan_inference(shape, CS3, wafers=wafers + more, batch_size=batch, seq_len=1024)
    assert b.token_latency_s <= a.token_latency_s * (1 + 1e-12)
    assert a.details["wafers_used"] <= wafers and a.memory["total_bytes"] <= a.memory["capacity_bytes"]
    assert a.tokens_per_s == pytest.approx(batch * a.tokens_per_s_per_request)


def test_latency_falls_with_wafers_until_communication_dominates():
    big = PLANNING_SHAPES["llama3.1-70b"][0]
    by_wafers = [latency(big, n, exact=True) for n in range(4, 9)]
    assert all(a > b for a, b in zip(by_wafers, by_wafers[1:]))  # compute-bound: larger regions per layer help
    small = PlanShape("small", 4, 512, 8, 64, 2048, 32000, 4096, n_kv_heads=8)
    by_wafers = [latency(small, n, exact=True) for n in range(1, 5)]
    assert all(a < b for a, b in zip(by_wafers, by_wafers[1:]))  # latency-bound: each wafer crossing costs more
    assert plan_inference(small, CS3, wafers=4).details["wafers_used"] == 1


def test_refusal_names_a_wafer_count_that_fits():
    shape = PLANNING_SHAPES["llama3.1-70b"][0]
    with pytest.raises(PlanError, match="use --systems") as err:
        plan_inference(shape, CS3, wafers=1)
    n = int(str(err.value).rsplit(" ", 1)[1])
    plan = plan_inference(shape, CS3, wafers=n)
    assert plan.details["wafers_used"] == n
    with pytest.raises(PlanError):
        plan_inference(shape, CS3, wafers=n - 1)


def test_published_shapes_and_grouped_query_attention():
    counts = {name: parameters(model_layers(shape, 1)) for name, (shape, _) in PLANNING_SHAPES.items()}
    assert counts["llama3.1-8b"] == pytest.approx(8.03e9, rel=0.01)
    assert counts["llama3.1-70b"] == pytest.approx(70.6e9, rel=0.01)
    assert counts["llama3.1-405b"] == pytest.approx(405.9e9, rel=0.01)
    mha = replace(PLANNING_SHAPES["llama3.1-8b"][0], n_kv_heads=32)
    gqa = plan_inference(PLANNING_SHAPES["llama3.1-8b"][0], CS3, batch_size=8)
    assert plan_inference(mha, CS3, batch_size=8).memory["kv_cache_bytes"] == 4 * gqa.memory["kv_cache_bytes"]


def test_prefill_time_to_first_token_grows_with_the_prompt():
    shape = PLANNING_SHAPES["llama3.1-8b"][0]
    short = plan_inference(shape, CS3, task="prefill", seq_len=2048, prompt_len=256)
    long = plan_inference(shape, CS3, task="prefill", seq_len=2048, prompt_len=2048)
    assert long.time_to_first_token_s > short.time_to_first_token_s
    flops = 2 * parameters(model_layers(shape, 1)) * 2048
    assert long.time_to_first_token_s >= flops / CS3.grid().peak_flops  # never above the wafer's peak
    assert fewest_wafers(layer_bytes(model_layers(shape, 2048), shape, 2048, 1, PlanOptions()),
                         CS2.grid().memory_bytes, 8) == 1

"""Layer-pipelined planning: the region DP is optimal (brute force), and plans are always physically valid."""

import dataclasses
import itertools
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, event, given, settings, strategies as st

from model.config import PUBLISHED_PRESETS, get_config
from wse.errors import PlanError
from wse.grid import Grid, device_grid
from wse.plan import make_plan, plan_all
from wse.schedule import makespan, one_f_one_b
from wse.wafer.pipelined import RegionCosts, RegionSolver, plan_pipelined, stage_time


# ----- the region DP against brute force ---------------------------------------------------------------------------
def brute_force(costs, c0, cap, R, w, k, S, M):
    """Every partition into S groups, every height per stage, every choice of where a new lane starts."""
    n, best = len(costs.compute), None
    for cuts in itertools.combinations(range(1, n), S - 1):
        bounds = list(zip((0,) + cuts, cuts + (n,)))
        group = [(costs.compute[a:b].sum(), costs.fabric[a:b].sum(), costs.switch[a:b].sum(),
                  int(costs.static_bytes[a:b].sum()), int(costs.stash_bytes[a:b].sum())) for a, b in bounds]
        for heights in itertools.product(range(1, R + 1), repeat=S):
            ok_memory = all(W + min(M, S - s) * A <= cap * h * w for s, ((*_, W, A), h) in enumerate(zip(group, heights)))
            if not ok_memory:
                continue
            for breaks in itertools.product((False, True), repeat=S - 1):
                lanes, used = 1, heights[0]
                for h, new in zip(heights[1:], breaks):
                    if new:
                        lanes, used = lanes + 1, h
                    else:
                        used += h
                    if used > R:
                        break
                else:
                    if lanes > k:
                        continue
                    value = max(stage_time(P, F, Q, c0, h * w) for (P, F, Q, _, _), h in zip(group, heights))
                    best = value if best is None else min(best, value)
    return best


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_region_dp_matches_brute_force(data):
    n = data.draw(st.integers(1, 4))
    S = data.draw(st.sampled_from([1, 2, 3, 3]).filter(lambda s: s <= n))
    R, w, k, M = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 4))
    floats = st.floats(0.0, 10.0, allow_nan=False, allow_subnormal=False)
    costs = RegionCosts(
        compute=np.array(data.draw(st.lists(floats, min_size=n, max_size=n))),
        fabric=np.array(data.draw(st.lists(floats, min_size=n, max_size=n))),
        switch=np.array(data.draw(st.lists(st.floats(0.0, 1.0, allow_subnormal=False), min_size=n, max_size=n))),
        static_bytes=np.array(data.draw(st.lists(st.integers(0, 20), min_size=n, max_size=n)), dtype=np.int64),
        stash_bytes=np.array(data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), dtype=np.int64),
    )
    assume(costs.compute.sum() + costs.fabric.sum() + costs.switch.sum() > 1e-6)
    c0, cap = data.draw(st.floats(0.0, 1.0, allow_subnormal=False)), data.draw(st.integers(2, 40))
    expected = brute_force(costs, c0, cap, R, w, k, S, M)
    found = RegionSolver(costs, c0, cap, R, w, k, S, M).solve()
    event(f"feasible: {expected is not None}, stages: {S}")
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert found.bottleneck >= expected * (1 - 1e-9)  # nothing beats the brute force ...
    assert found.bottleneck <= expected * (1 + 1e-4)  # ... and the DP finds it (to its bisection tolerance)


# ----- plans are valid ---------------------------------------------------------------------------------------------
shapes = st.builds(
    lambda L, heads, d_head, ffn_mult, vocab, ctx: SimpleNamespace(
        name="random", n_layers=L, d_model=heads * d_head, n_heads=heads, d_head=d_head, d_ffn=ffn_mult * heads * d_head,
        vocab_size=vocab, max_seq_len=ctx),
    st.integers(1, 6), st.integers(1, 8), st.sampled_from([8, 16, 32, 64]), st.integers(1, 4),
    st.integers(50, 5000), st.sampled_from([16, 64, 256, 512]),
)
grids = st.builds(
    lambda rows, cols, mem, flops, link, switch: Grid("g", "wafer", rows, cols, mem, flops, link, 1e-9, switch),
    st.integers(1, 40), st.integers(1, 40), st.sampled_from([20_000, 200_000, 2_000_000, 20_000_000]),
    st.floats(1e8, 1e12), st.floats(1e8, 1e11), st.sampled_from([0.0, 1e-6, 1e-4]),
)


def check_valid(plan, grid, n_layers):
    regions = [st_.region for st_ in plan.stages]
    assert all(r.inside(grid.rows, grid.cols) for r in regions)
    for a, b in itertools.combinations(regions, 2):
        assert not a.overlaps(b)
    for a, b in zip(regions, regions[1:]):
        assert a.shared_edge(b) > 0, "consecutive stages must be neighbours"
    placed = [i for st_ in plan.stages for i in range(st_.layers[0], st_.layers[1] + 1)]
    assert placed == list(range(n_layers)), "every layer exactly once, in order"
    for st_ in plan.stages:
        assert st_.memory_bytes_per_core <= grid.memory_bytes_per_cell
        assert st_.active_cells <= st_.region.cells
    assert plan.memory["peak_bytes_per_core"] <= plan.memory["capacity_bytes_per_core"]
    assert 0 < plan.utilization <= 1


@settings(max_examples=40, deadline=None)
@given(shape=shapes, grid=grids, data=st.data())
def test_plans_are_valid_and_time_grows_when_cells_slow_down(shape, grid, data):
    seq_len = data.draw(st.integers(1, shape.max_seq_len))
    batch = data.draw(st.integers(1, 32))
    try:
        fast = plan_pipelined(shape, grid, batch_size=batch, seq_len=seq_len)
    except PlanError as err:
        event("does not fit")
        assert err.needed_bytes > err.available_bytes or "needs" in str(err)
        with pytest.raises(PlanError):  # memory does not depend on speed
            plan_pipelined(shape, dataclasses.replace(grid, flops_per_cell=grid.flops_per_cell / 3),
                           batch_size=batch, seq_len=seq_len)
        return
    event(f"fits in {len(fast.stages)} stage(s)")
    check_valid(fast, grid, 2 * shape.n_layers + 2)
    slower = dataclasses.replace(grid, flops_per_cell=grid.flops_per_cell / data.draw(st.floats(1.01, 10)))
    slow = plan_pipelined(shape, slower, batch_size=batch, seq_len=seq_len)
    check_valid(slow, slower, 2 * shape.n_layers + 2)
    assert slow.step_time_s >= fast.step_time_s * (1 - 1e-4)


# ----- published claims and the command-line-facing errors ----------------------------------------------------------
def test_practical_limit_about_1b_on_cs2():
    # Cerebras: layer-pipelined mode's practical limit is about 1B parameters
    fits = {}
    for name in ("111M", "256M", "590M", "1.3B", "2.7B", "6.7B", "13B"):
        try:
            make_plan(get_config(name), "cs2", mode="pipelined")
            fits[name] = True
        except PlanError:
            fits[name] = False
    assert fits == {"111M": True, "256M": True, "590M": True, "1.3B": True, "2.7B": False, "6.7B": False, "13B": False}


def test_13b_does_not_fit_and_says_so():
    with pytest.raises(PlanError) as err:
        make_plan(get_config("13B"), "cs2", mode="pipelined")
    msg = str(err.value)
    assert "GB" in msg and "--mode streaming" in msg and "\n" not in msg
    assert err.value.needed_bytes > 6 * err.value.available_bytes
    assert make_plan(get_config("13B"), "cs2").mode == "streaming"  # auto falls back


def test_pipelined_plan_on_a_device_mesh():
    # 8 emulated devices as a 2 x 4 grid, as runtime will plan over a JAX mesh
    grid = device_grid(8, flops_per_device=5e10, memory_per_device=2e9, link_bandwidth=5e9)
    plan = plan_pipelined(get_config("tiny"), grid, batch_size=16, seq_len=256)
    check_valid(plan, grid, 2 * 8 + 2)
    assert plan.grid == {"rows": 2, "cols": 4} and "grid.hop_latency_s" in plan.assumptions


def test_more_stages_only_when_they_pay():
    plan = make_plan(get_config("111M"), "cs2", mode="pipelined")
    d = plan.details
    assert d["n_stages"] == len(plan.stages) > 1
    assert plan.step_time_s == pytest.approx((d["microbatches"] + d["n_stages"] - 1) * d["bottleneck_s"])
    assert max(s.time_s for s in plan.stages) == pytest.approx(d["bottleneck_s"])


# ----- the 1F1B schedule behind the timeline -----------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.1, 5), min_size=1, max_size=6), st.integers(1, 12))
def test_1f1b_schedule(stage_times, M):
    S = len(stage_times)
    ops = one_f_one_b([t / 3 for t in stage_times], [2 * t / 3 for t in stage_times], M)
    assert len(ops) == 2 * S * M
    end = {(op.kind, op.stage, op.microbatch): op.end for op in ops}
    for op in ops:
        if op.kind == "F" and op.stage > 0:
            assert op.start >= end[("F", op.stage - 1, op.microbatch)] - 1e-12
        if op.kind == "B":
            dep = ("B", op.stage + 1, op.microbatch) if op.stage < S - 1 else ("F", op.stage, op.microbatch)
            assert op.start >= end[dep] - 1e-12
    assert makespan(ops) <= (M + S - 1) * max(stage_times) * (1 + 1e-9)
    uniform = one_f_one_b([1.0] * S, [2.0] * S, M)
    assert makespan(uniform) == pytest.approx((M + S - 1) * 3.0)


def test_plan_all_covers_every_published_preset():
    rows = plan_all([get_config(n) for n in PUBLISHED_PRESETS])
    assert len(rows) == len(PUBLISHED_PRESETS) * 2 * 3
    cs2 = {(r["model"], r["mode"]): r["fits"] for r in rows if r["system"] == "CS-2"}
    assert cs2[("13B", "streaming")] and not cs2[("13B", "pipelined")]
    assert not any(r["fits"] for r in rows if r["system"] == "CS-1" and r["mode"] == "streaming")

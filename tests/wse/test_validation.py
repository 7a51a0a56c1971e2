"""The simulator against published figures: the paper's FLOP convention, trillion-parameter training on CS-3 with
a large MemoryX, refusals whose advice is true when given, the sourced figures that replaced assumptions, and the
90-plan sweep's speed."""

import time

import pytest

from model.config import PRESETS, get_config
from wse.assumptions import PlanOptions
from wse.costs import model_layers, paper_training_flops_per_token, parameters
from wse.errors import PlanError
from wse.plan import make_plan, plan_all
from wse.validation.compare import flops_rows, hardware_rows
from wse.validation.published import MEMORYX_PAIRINGS, ONE_T, TRAINING_FLOPS, TWENTY_FOUR_T
from wse.wafer.hardware import CS2, CS3, format_capacity, memoryx_options, parse_capacity


@pytest.mark.parametrize("name", list(TRAINING_FLOPS))
def test_paper_flops_reproduce_the_published_totals(name):
    cfg = get_config(name)
    layers = model_layers(cfg, 2048)
    total = paper_training_flops_per_token(layers, cfg) * cfg.chinchilla_tokens
    assert total == pytest.approx(TRAINING_FLOPS[name], rel=0.025)  # two significant digits
    assert total == pytest.approx(cfg.flops_per_token_paper() * cfg.chinchilla_tokens, rel=1e-12)
    assert cfg.flops_per_token_6n() < cfg.flops_per_token_algorithmic() < cfg.flops_per_token_paper()


def test_comparison_rows_cover_flops_and_hardware():
    rows = flops_rows({n: get_config(n) for n in TRAINING_FLOPS}) + hardware_rows()
    assert len(rows) == 7 + 2 + len(MEMORYX_PAIRINGS)
    assert all(r["source"] and r["distance"] for r in rows)


def test_trillion_parameter_models_plan_on_cs3_with_a_large_memoryx():
    for shape in (ONE_T, TWENTY_FOUR_T):
        plan = make_plan(shape, CS3, systems=16, mode="streaming", memoryx="1200TB")
        assert plan.details["offload"] and 0 < plan.utilization < 1
        assert plan.memory["memoryx_bytes"] <= plan.memory["memoryx_capacity_bytes"]
        assert plan.memory["peak_bytes_per_core"] <= plan.memory["capacity_bytes_per_core"] * (1 + 1e-9)
    auto = make_plan(ONE_T, CS3, systems=16, mode="streaming")  # default: the smallest MemoryX that holds it
    assert auto.memory["memoryx_capacity_bytes"] == 1.2e15


def test_memoryx_refusal_names_a_size_that_works():
    with pytest.raises(PlanError, match="use --memoryx") as err:
        make_plan(ONE_T, CS3, systems=16, mode="streaming", memoryx="12TB")
    size = str(err.value).rsplit(" ", 1)[1]
    assert make_plan(ONE_T, CS3, systems=16, mode="streaming", memoryx=size).fits
    with pytest.raises(PlanError, match="no MemoryX sold"):
        make_plan(ONE_T.__class__(**{**vars(ONE_T), "n_layers": 20000}), CS3, mode="streaming", batch_size=16)
    assert parse_capacity(format_capacity(1.2e15)) == 1.2e15 and memoryx_options(CS2)[0] == 4e12
    with pytest.raises(PlanError, match="is not a size"):
        parse_capacity("lots")


def test_seq_len_advice_is_true_when_given():
    wide = ONE_T.__class__(**{**vars(ONE_T), "max_seq_len": 65536})
    with pytest.raises(PlanError, match="use --seq-len") as err:
        make_plan(wide, CS3, systems=1, mode="streaming", batch_size=1, seq_len=65536, memoryx="1200TB")
    longest = int(str(err.value).split("use --seq-len ")[1].split()[0])
    assert make_plan(wide, CS3, systems=1, mode="streaming", batch_size=1, seq_len=longest, memoryx="1200TB").fits
    with pytest.raises(PlanError, match="use --seq-len"):
        make_plan(wide, CS3, systems=1, mode="streaming", batch_size=1, seq_len=longest + 1, memoryx="1200TB")
    tiles = PlanOptions(weight_tile_bytes=10**12)  # the tiles alone overflow: the advice is about tiles, not length
    with pytest.raises(PlanError, match="weight_tile_bytes"):
        make_plan(TWENTY_FOUR_T, CS3, mode="streaming", batch_size=1, memoryx="1200TB", options=tiles)


def test_memoryx_bytes_per_parameter_within_cerebras_pairings():
    per_param = PlanOptions().memoryx_bytes_per_param
    assert per_param == 18
    assert all(capacity / params >= per_param for capacity, params, _ in MEMORYX_PAIRINGS)
    assert parameters(model_layers(TWENTY_FOUR_T, 1)) == pytest.approx(24e12, rel=0.01)


def test_90_plans_stay_fast():
    shapes = [get_config(n) for n in PRESETS]
    start = time.perf_counter()
    rows = plan_all(shapes)
    elapsed = time.perf_counter() - start
    assert len(rows) == 90  # 15 presets (12 published, 3 CPU shapes) x 2 modes x 3 systems
    assert elapsed < 3.0  # under 1 s on an idle machine; the bound leaves room for a shared one

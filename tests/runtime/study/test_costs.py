"""A study's full-scale cost lines are the numbers `wse plan --model M --system T` prints (issue 30, item 4)."""

import json

import pytest

from runtime.cli import main
from runtime.study.costs import TARGETS, cost_lines, duration, family_costs


@pytest.mark.parametrize("model", ["111M", "1.3B-mup", "13B"])
def test_each_cost_is_what_wse_plan_prints(model, capsys):
    costs = family_costs((model,))
    for target, label in TARGETS:
        assert main(["plan", "--model", model, "--system", target, "--json"]) == 0
        plan = json.loads(capsys.readouterr().out)
        row = next(r for r in costs["rows"] if r["target"] == label)
        assert (row["systems"], row["mode"], row["batch_size"]) == (plan["systems"], plan["mode"], plan["batch_size"])
        assert row["tokens_per_s"] == pytest.approx(plan["tokens_per_s"], rel=1e-12)
        assert row["days"] == pytest.approx(plan["time_to_train_s"] / 86400, rel=1e-12)
        assert row["system_days"] == pytest.approx(row["days"] * plan["systems"], rel=1e-12)
    line = next(x for x in cost_lines(costs) if x.strip().startswith(model))
    assert duration(costs["rows"][0]["days"]) in line


def test_durations_read_in_the_unit_that_fits():
    assert [duration(d) for d in (30 / 86400, 15 / 1440, 5.3 / 24, 135.54)] == ["30 s", "15 min", "5.3 h", "135.5 d"]

"""Hardware is data with sources; custom systems load from YAML and refuse what they do not know."""

import pytest

from wse.errors import PlanError
from wse.grid import device_grid
from wse.plan import make_plan
from wse.wafer.hardware import CLUSTERS, SYSTEMS, TAGS, figures, source_tag, unpublished
from wse.wafer.systems import get_system
from model.config import get_config


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_every_figure_has_a_known_source(name):
    for fig, (value, source) in figures(SYSTEMS[name]).items():
        tags = source_tag(source).split("/")
        assert source and all(t in TAGS for t in tags), f"{fig} = {value} has no tagged source: {source!r}"
        assert len(source.split(":", 1)[1].strip()) > 5, f"{fig}: the source must say where or why"


def test_published_totals_are_reproduced():
    # [D] rows of the reference table: ~7.5 PFLOP/s for WSE-2, ~15 for WSE-3; SRAM 18 / 40 / 44 GB
    assert SYSTEMS["cs2"].chip.marketed_peak_flops == pytest.approx(7.48e15, rel=0.01)
    assert SYSTEMS["cs3"].chip.marketed_peak_flops == pytest.approx(15.8e15, rel=0.01)
    for name, gb in (("cs1", 18), ("cs2", 40), ("cs3", 44)):
        chip = SYSTEMS[name].chip
        assert chip.cores_marketed * chip.sram_bytes_per_core / 1e9 == pytest.approx(gb, rel=0.1)
        assert chip.usable_cores < chip.cores_marketed
    assert 16 * SYSTEMS["cs2"].chip.marketed_peak_flops == pytest.approx(120e15, rel=0.01)  # Andromeda, dense
    assert SYSTEMS["cs2"].stream_bandwidth_bytes_per_s() == 150e9


def test_unpublished_lists_exactly_the_assumed_figures():
    u2 = unpublished(SYSTEMS["cs2"])
    assert "WSE-2.layer_switch_cycles" in u2 and "SwarmX (CS-2).level_latency_s" in u2
    assert "SwarmX (CS-2).fan_out" not in u2 and "MemoryX (CS-2).bandwidth_bytes_per_s" not in u2  # published now
    assert "WSE-2.grid_cols" not in u2 and "WSE-2.clock_hz" not in u2  # published for WSE-2
    assert "WSE-1.grid_cols" in unpublished(SYSTEMS["cs1"]) and "WSE-3.clock_hz" in unpublished(SYSTEMS["cs3"])
    plan = make_plan(get_config("111M"), "cs2", mode="streaming")
    assert set(u2) <= set(plan.assumptions) and "plan.train_work_fraction" in plan.assumptions
    assert "plan.compute_efficiency" not in plan.assumptions  # a wafer streams with the kernel model


def test_lookup_names_and_clusters():
    assert get_system("CS2")[0] is SYSTEMS["cs2"]
    system, n = get_system("andromeda")
    assert system is SYSTEMS["cs2"] and n == 16
    assert CLUSTERS["cg3"].system is SYSTEMS["cs3"] and CLUSTERS["cg1"].n_systems == 64
    with pytest.raises(PlanError, match="did you mean 'cs2'"):
        get_system("cs22")
    swarm = SYSTEMS["cs2"].swarmx
    assert [swarm.levels(n) for n in (1, 2, 4, 5, 16, 17, 192)] == [1, 2, 2, 3, 3, 4, 5]  # fan-out 4 per level


def _write(tmp_path, text):
    path = tmp_path / "system.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_system_from_base(tmp_path):
    path = _write(tmp_path, "name: fast-cs2\nbase: cs2\nchip:\n  clock_hz: 2.2e9\nsystems: 4\n")
    system, n = get_system(path)
    assert system.chip.clock_hz == 2.2e9 and system.chip.grid_rows == 996 and n == 4
    plan = make_plan(get_config("111M"), system, mode="pipelined")
    assert plan.assumptions["WSE-2.clock_hz"]["value"] == 2.2e9  # a user's figure is listed as an assumption
    base = make_plan(get_config("111M"), "cs2", mode="pipelined")
    assert plan.step_time_s < base.step_time_s


def test_yaml_full_system_without_base(tmp_path):
    text = """
name: mini
chip: {name: mini-wse, cores_marketed: 1000, grid_cols: 30, grid_rows: 30, sram_bytes_per_core: 1000000,
       sram_reserved_bytes_per_core: 0, clock_hz: 1.0e9, fp16_simd_width: 4, sram_bandwidth_bytes_per_s: 1.0e12,
       fabric_bandwidth_bits_per_s: 1.0e12, link_bytes_per_cycle: 4, hop_latency_cycles: 1, layer_switch_cycles: 0}
io_bytes_per_s: 1.0e10
memoryx: null
swarmx: null
"""
    system, _ = get_system(_write(tmp_path, text))
    assert system.memoryx is None and system.grid().cells == 900
    with pytest.raises(PlanError, match="no MemoryX"):
        make_plan(get_config("tiny"), system, mode="streaming")


@pytest.mark.parametrize("text, message", [
    ("base: cs2\nchip:\n  clok_hz: 1\n", "unknown key 'chip.clok_hz' (did you mean 'clock_hz'?)"),
    ("base: cs2\nmemoryx_bw: 1\n", "unknown key 'memoryx_bw'"),
    ("base: cs9\n", "base 'cs9'"),
    ("name: x\nchip:\n  grid_rows: 4\n", "missing field 'chip."),
    ("base: cs2\nchip:\n  clock_hz: -1\n", "must be a positive number"),
    ("base: cs2\nchip: [1, 2]\n", "'chip' must be a mapping"),
    ("base: cs2\n  bad: [\n", "not valid YAML"),
])
def test_yaml_errors_are_one_line(tmp_path, text, message):
    with pytest.raises(PlanError) as err:
        get_system(_write(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_device_grid():
    g = device_grid(8, 1e12, 16e9, 50e9)
    assert (g.rows, g.cols, g.kind, g.cells) == (2, 4, "devices", 8)
    assert device_grid(8, 1e12, 16e9, 50e9, rows=8).cols == 1
    with pytest.raises(PlanError, match="rows \\* cols"):
        device_grid(8, 1e12, 16e9, 50e9, rows=3, cols=3)

"""The muTransfer measures on synthetic sweeps with known optima (a drifting SP, a transferring muP, a diverged
point, an optimum at the grid's edge), and both figures written as PNGs from synthetic results."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.study import fit, mup, plots
from runtime.study.sweep import Outcome, Point, lr_label

LRS = [2.0 ** k for k in range(-10, -5)]  # 2^-10 .. 2^-6


def outcomes(param: str, optimum_of, widths=(32, 64, 128, 256), diverge=()) -> list[Outcome]:
    """A parabola in log2(lr) per width with its minimum at ``optimum_of(width)``; (width, lr) in ``diverge``
    diverged."""
    out = []
    for w in widths:
        for lr in LRS:
            p = Point(f"{param}-w{w}-{lr_label(lr)}", {}, 10, lr, {"param": param, "width": w})
            if (w, lr) in diverge:
                out.append(Outcome(p, "diverged", None, None, diverged_step=3))
                continue
            loss = 4.0 - 0.1 * math.log2(w) + 0.05 * (math.log2(lr) - math.log2(optimum_of(w))) ** 2
            out.append(Outcome(p, "trained", loss, loss + 0.1))
    return out


def test_drift_of_a_width_dependent_optimum_and_a_transferring_one():
    sp = outcomes("sp", lambda w: 2.0 ** -6.5 * 32 / w)  # SP: the best rate halves per doubling of width
    mu = outcomes("mup", lambda w: 2.0 ** -8.2)  # muP: one best rate at every width
    s = mup.summarise(sp + mu)
    assert s["sp"]["drift"]["log2_grid"] == pytest.approx(-3)  # grid -7 at width 32 (vertex -6.5: edge) ... -10
    assert s["mup"]["drift"]["log2_grid"] == 0 and s["mup"]["drift"]["spread_grid"] == 1
    assert s["mup"]["drift"]["log2_vertex"] == pytest.approx(0, abs=1e-9)
    assert s["mup"]["best"][64]["lr_vertex"] == pytest.approx(2.0 ** -8.2)  # the parabola's vertex, off the grid
    assert all(p == pytest.approx(0) for p in s["mup"]["transfer_penalty"].values())
    penalty = s["sp"]["transfer_penalty"]
    assert penalty[32] == 0 and penalty[64] < penalty[128] < penalty[256]  # the proxy's rate costs more with width
    assert s["sp"]["best"][256]["at_edge"] and s["sp"]["drift"]["bound_only"]  # 256's optimum 2^-9.5: grid edge -10
    assert any("bound" in line for line in mup.summary_lines(s))


def test_diverged_points_are_left_out_of_the_optimum():
    runs = outcomes("sp", lambda w: 2.0 ** -8, diverge={(32, 2.0 ** -6), (64, 2.0 ** -8)})
    s = mup.summarise(runs)
    assert s["sp"]["best"][32]["lr"] == 2.0 ** -8
    assert s["sp"]["best"][64]["lr"] in (2.0 ** -9, 2.0 ** -7)  # the true optimum diverged: a neighbour wins
    assert s["sp"]["transfer_penalty"][64] is None  # no loss at the proxy's rate


def test_vertex_only_inside_an_upward_parabola():
    lrs = [1.0, 2.0, 4.0]
    assert mup.vertex(lrs, [3.0, 2.0, 3.0], 1) == pytest.approx(2.0)
    assert mup.vertex(lrs, [3.0, 2.0, 2.5], 1) > 2.0
    assert mup.vertex(lrs, [3.0, 2.0, None], 1) is None and mup.vertex(lrs, [2.0, 3.0, 4.0], 0) is None


def test_figures_are_written(tmp_path):
    table = mup.losses_by_width(outcomes("sp", lambda w: 2.0 ** -7 * 32 / w, diverge={(256, 2.0 ** -6)})
                                + outcomes("mup", lambda w: 2.0 ** -8))
    png = plots.mup_figure(table, tmp_path / "mup.png", caption="synthetic")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    compute = np.logspace(12, 14, 5)
    loss = 30 * compute ** -0.1
    law = fit.fit_power_law(compute[:-1], loss[:-1] * [1.0, 1.01, 0.99, 1.0])
    family = [{"label": f"s{i}", "compute": c, "val_loss": l} for i, (c, l) in enumerate(zip(compute[:-1], loss[:-1]))]
    held = {"label": "s4", "compute": compute[-1], "val_loss": loss[-1]}
    paper = {"points": fit.PAPER_POINTS, "law": fit.paper_loss, "label": fit.PAPER_LAW["form"]}
    png = plots.scaling_figure(family, law, held, law.interval(compute[-1]), paper, tmp_path / "scaling.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mup.png", "scaling.png"]  # no temporary left behind

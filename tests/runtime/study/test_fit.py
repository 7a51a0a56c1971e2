"""The study's fits on synthetic data with known laws: the exponent and its uncertainty, the held-out prediction
interval, the irreducible term found only when the data can pin it; the paper's law against its own points."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.study import fit


def synthetic(n: int, b: float = -0.12, a: float = 40.0, noise: float = 0.01, seed: int = 0):
    rng = np.random.default_rng(seed)
    compute = np.logspace(11, 15, n)
    return compute, a * compute ** b * np.exp(rng.normal(0.0, noise, n))


def test_power_law_recovers_a_known_exponent_with_its_uncertainty():
    compute, loss = synthetic(6)
    law = fit.fit_power_law(compute[:-1], loss[:-1])
    se = law.describe()["b_stderr"]
    assert 0 < se < 0.01
    assert abs(law.b - -0.12) < 3 * se
    mid, low, high = law.interval(compute[-1])
    assert low < 40.0 * compute[-1] ** -0.12 < high  # the held-out truth inside the 95% prediction interval
    assert low < mid < high and law.dof == 3


def test_exact_power_law_has_no_scatter():
    compute = np.logspace(10, 14, 4)
    law = fit.fit_power_law(compute, 7.0 * compute ** -0.05)
    assert law.b == pytest.approx(-0.05) and law.a == pytest.approx(7.0) and law.s == pytest.approx(0, abs=1e-9)


def test_fits_refuse_too_few_or_bad_points():
    with pytest.raises(ValueError, match="at least 3"):
        fit.fit_power_law([1e12, 1e13], [3.0, 2.5])
    with pytest.raises(ValueError, match="positive"):
        fit.fit_power_law([1e12, 1e13, 1e14], [3.0, -2.5, 2.0])


def test_irreducible_term_only_when_the_data_pins_it():
    compute = np.logspace(11, 16, 7)
    loss = 1.5 + 30.0 * compute ** -0.15 * np.exp(np.random.default_rng(1).normal(0, 0.0005, 7))
    chosen = fit.choose_fit(compute, loss)
    assert chosen["chosen"] == "with_floor"
    assert chosen["with_floor"]["c"] == pytest.approx(1.5, abs=0.05)
    few = fit.choose_fit(compute[:4], loss[:4])  # 4 points: a 3-parameter law is not identifiable
    assert few["chosen"] == "power_law" and few["with_floor"] is None and "degrees of freedom" in few["why"]
    plain = fit.choose_fit(*synthetic(7))  # a pure power law: the floor does not help
    assert plain["chosen"] == "power_law"


def test_the_papers_law_matches_its_own_points():
    for _, flops, loss in fit.PAPER_POINTS["sp"]:
        assert float(fit.paper_loss(flops)) == pytest.approx(loss, rel=0.012)  # Eq. 1 vs Table 8, within 1.2%
    assert fit.paper_local_exponent(2.6e18) == pytest.approx(-0.0594, abs=1e-4)
    mup = np.array([loss for _, _, loss in fit.PAPER_POINTS["mup"]])
    sp_law = fit.paper_loss([f for _, f, _ in fit.PAPER_POINTS["mup"]])
    assert np.mean(mup / sp_law - 1) == pytest.approx(-0.0043, abs=0.002)  # Sec. 3.3: muP 0.43% below the SP law

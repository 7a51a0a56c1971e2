"""`wse claims`: JSON shape, and verdicts that follow from the figures (change a figure, the verdict changes)."""

import json
import subprocess
import sys

import pytest

from benchmarks import claims as C


@pytest.fixture(scope="module")
def sim():
    return C.simulated_training()


def test_verdict_rule():
    assert C.verdict(2.0, 2.0, 1.0) == C.SUPPORTED
    assert C.verdict(0.5, 2.0, 1.0) == C.MISLEADING
    assert C.verdict(0.5, 0.9, 1.0) == C.UNSUPPORTED


def test_check_claims_shape_and_published_sources():
    result = C.check_claims()
    assert [c["claim"] for c in result["claims"]] == [
        "over 1 exaflop on a single chip", "over 1 PB of memory", "energy efficiency hundreds of times a GPU",
        "scales horizontally by stacking chips"]
    for c in result["claims"]:
        assert set(c) == {"claim", "published", "simulated", "verdict", "reason"}
        assert c["verdict"] in (C.SUPPORTED, C.MISLEADING, C.UNSUPPORTED)
        assert c["reason"] and "\n" not in c["reason"]
        assert all(p["source"] for p in c["published"].values())
    sim = result["simulation"]
    # Achieved below peak, a cluster above one system: the simulator's figures are consistent.
    assert 0 < sim["cs2_achieved_flops"] < sim["cs2_peak_dense_flops"]
    assert sim["cluster_achieved_flops"] > sim["cs2_achieved_flops"]


def test_exaflop_verdict_follows_figures(sim):
    assert C.claim_exaflop(sim=sim)["verdict"] == C.MISLEADING  # 16 x 62.5 PFLOP/s sparse = 1 EFLOP/s
    assert C.claim_exaflop(sim=sim, single_chip_dense_flops=2e18)["verdict"] == C.SUPPORTED
    assert C.claim_exaflop(sim=sim, single_chip_sparse_flops=10e15)["verdict"] == C.UNSUPPORTED
    assert C.claim_exaflop(sim=sim, cluster_systems=8)["verdict"] == C.UNSUPPORTED


def test_petabyte_verdict_follows_figures():
    assert C.claim_petabyte()["verdict"] == C.MISLEADING
    assert C.claim_petabyte(on_chip_bytes=2e15)["verdict"] == C.SUPPORTED
    assert C.claim_petabyte(external_bytes=12e12)["verdict"] == C.UNSUPPORTED


def test_energy_verdict_follows_figures(sim):
    base = C.claim_energy(sim=sim)
    assert base["verdict"] == C.UNSUPPORTED
    assert base["simulated"]["ratio_dense_peak"] < 1 < base["simulated"]["ratio_sparse_peak"] < C.HUNDREDS
    assert C.claim_energy(sim=sim, wafer_power_w=20.0)["verdict"] == C.SUPPORTED  # dense ratio in the hundreds
    assert C.claim_energy(sim=sim, wafer_sparse_flops=1e19)["verdict"] == C.MISLEADING
    assert C.claim_energy(sim=sim, gpu_power_w=70_000.0)["verdict"] == C.MISLEADING


def test_scaling_verdict_follows_figures(sim):
    assert C.claim_scaling(sim=sim)["verdict"] == C.MISLEADING
    assert C.claim_scaling(sim=sim, efficiency=0.5)["verdict"] == C.UNSUPPORTED
    assert C.claim_scaling(sim=sim, link_bytes_per_s=1e15)["verdict"] == C.SUPPORTED


def test_cli_json_without_jax():
    code = ("import sys, io, contextlib\nfrom runtime.cli import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n    rc = main(['claims', '--json'])\n"
            "assert rc == 0 and 'jax' not in sys.modules, 'wse claims imported jax'\nprint(buf.getvalue())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(out["claims"]) == 4 and {c["verdict"] for c in out["claims"]} <= {"supported", "misleading", "unsupported"}

"""MFU's peak: nominal for known accelerators; elsewhere the best rate the host has shown, kept between runs, so MFU
is stable from run to run and never above 100% (nothing here measures speed: only how the figures combine)."""

import json

import jax
import pytest

from runtime.train import throughput
from runtime.train.throughput import Peak, nominal_peak, peak_flops, recalled, remember


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WSE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(throughput, "_PEAKS", {})
    return tmp_path


def test_a_known_accelerator_gets_its_data_sheet_peak():
    assert nominal_peak("NVIDIA H100 80GB HBM3", "bfloat16") == ("H100", 989.4e12)
    assert nominal_peak("NVIDIA H100 PCIe", "float32") == ("H100 PCIe", 378e12)
    assert nominal_peak("cpu", "float32") is None


def test_the_measured_peak_is_the_hosts_best_and_only_rises(cache):
    devices = jax.devices()[:1]
    first = peak_flops("float32", devices)
    assert first.key and "measured" in first.source and first.flops > 0
    assert recalled(first.key) == first.flops  # kept for the next run
    remember(first.key, first.flops * 10)  # an earlier run of this host did better
    throughput._PEAKS.clear()  # a new process
    assert peak_flops("float32", devices).flops == first.flops * 10
    remember(first.key, first.flops)  # a lower reading never replaces it
    assert recalled(first.key) == first.flops * 10
    assert json.loads((cache / throughput.PEAK_FILE).read_text()) == {first.key: first.flops * 10}


def test_mfu_is_never_above_one_a_faster_step_raises_the_peak(cache):
    peak = Peak(1e9, "measured", "host | float32")
    assert peak.mfu(5e8) == 0.5
    assert peak.mfu(2e9) == 1.0 and peak.flops == 2e9 and "own steps" in peak.source
    assert recalled("host | float32") == 2e9 and peak.mfu(1e9) == 0.5
    nominal = Peak(1e15, "nominal H100 bfloat16 peak x 1 devices")  # a data sheet figure never moves
    assert nominal.mfu(5e14) == 0.5 and nominal.flops == 1e15


def test_an_unwritable_cache_costs_only_the_memory(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("WSE_CACHE_DIR", str(tmp_path / "file"))
    remember("k", 1.0)
    assert recalled("k") == 0.0

"""The wafer's kernel model: calibrated on WaferLLM's measured MeshGEMM and GEMV, never above peak, and more work per
core never makes a matmul less efficient by much (only ragged tile edges)."""

import pytest
from hypothesis import given, settings, strategies as st

from wse.assumptions import PlanOptions
from wse.wafer.hardware import CS2, CS3
from wse.wafer.kernels import CALIBRATION, calibration_efficiency, gemv_check, kernel_model

STEP = PlanOptions().kernel_step_cycles


def test_calibrated_on_waferllm():
    assert CALIBRATION["efficiency"] <= calibration_efficiency(CS2.chip, STEP) < 0.75  # "above 70%" at 720 x 720
    assert 0.5e-6 < gemv_check(CS2.chip, STEP) < 1.5e-6  # "about a microsecond" for 16K x 16K


@settings(max_examples=60, deadline=None)
@given(M=st.integers(1, 10**6), K=st.integers(1, 20000), N=st.integers(1, 60000), cells=st.integers(1, 10**6),
       chip=st.sampled_from([CS2.chip, CS3.chip]))
def test_efficiency_is_a_fraction_and_more_tokens_help(M, K, N, cells, chip):
    km = kernel_model(chip, STEP, 2)
    eff = km.efficiency(M, K, N, cells)
    assert 0 < eff <= 1
    assert km.matmul_s(2 * M, K, N, cells) >= km.matmul_s(M, K, N, cells)  # twice the work never takes less time


def test_training_shapes_reach_high_efficiency_and_small_ones_do_not():
    km = kernel_model(CS2.chip, STEP, 2)
    cells = CS2.grid().cells
    assert km.efficiency(132 * 2048, 2048, 8192, cells) > 0.9  # 1.3B's FFN at 132 sequences per system
    assert km.efficiency(128, 5120, 5120, cells) < 0.05  # one short sequence: latency-bound
    assert km.grouped_matmul_s(10**7, 8, 8, 8, cells) > km.grouped_matmul_s(10**3, 8, 8, 8, cells)
    assert km.gemv_s(4, 4096, 4096, 100, 100) > km.gemv_s(1, 4096, 4096, 100, 100)
    with pytest.raises(ZeroDivisionError):
        km.efficiency(1, 1, 1, 0)

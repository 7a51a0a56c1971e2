"""The wafer's kernel model: consistent with WaferLLM's MeshGEMM and GEMV figures, never above peak, more work per core
never takes less time, and the training kernels (a smaller work fraction, the weight-stationary alternative) are
never faster than peak either."""

import pytest
from hypothesis import given, settings, strategies as st

from wse.assumptions import PlanOptions
from wse.wafer.hardware import CS2, CS3
from wse.wafer.kernels import MESHGEMM, gemv_check, kernel_model, meshgemm_efficiency, meshgemm_side

OPTIONS = PlanOptions()
STEP = OPTIONS.kernel_step_cycles


def test_consistent_with_waferllm():
    side = meshgemm_side(CS2.chip, STEP)  # "above 70%" on 720 x 720 cores, at a size WaferLLM's text does not pin
    assert 16384 < side <= 32768
    assert meshgemm_efficiency(CS2.chip, STEP, side) >= MESHGEMM["efficiency"] > meshgemm_efficiency(CS2.chip, STEP, side - 1024)
    assert 0.5e-6 < gemv_check(CS2.chip, STEP) < 1.5e-6  # "about a microsecond" for 16K x 16K


@settings(max_examples=60, deadline=None)
@given(M=st.integers(1, 10**6), K=st.integers(1, 20000), N=st.integers(1, 60000), cells=st.integers(1, 10**6),
       chip=st.sampled_from([CS2.chip, CS3.chip]), training=st.booleans())
def test_efficiency_is_a_fraction_and_more_tokens_help(M, K, N, cells, chip, training):
    km = kernel_model(chip, OPTIONS.train_step_cycles, 2, OPTIONS.train_work_fraction, stationary=True) \
        if training else kernel_model(chip, STEP, 2)
    eff = km.efficiency(M, K, N, cells)
    assert 0 < eff <= (OPTIONS.train_work_fraction if training else 1) * (1 + 1e-12)
    assert km.matmul_s(2 * M, K, N, cells) >= km.matmul_s(M, K, N, cells)  # twice the work never takes less time


def test_weight_stationary_helps_only_few_tokens():
    """Training may hold a layer's weights still and stream a few tokens through them (one step cost, not K): a
    couple of sequences no longer pay thousands of wavefront steps; with many, both mappings are bound by the same
    vector work and differ by a few percent."""
    cells = CS2.grid().cells
    wavefront = kernel_model(CS2.chip, OPTIONS.train_step_cycles, 2, OPTIONS.train_work_fraction)
    both = kernel_model(CS2.chip, OPTIONS.train_step_cycles, 2, OPTIONS.train_work_fraction, stationary=True)
    assert both.matmul_s(2 * 2048, 768, 3072, cells) < wavefront.matmul_s(2 * 2048, 768, 3072, cells) / 5
    many = (120 * 2048, 4096, 16384, cells)
    assert wavefront.matmul_s(*many) * 0.97 < both.matmul_s(*many) <= wavefront.matmul_s(*many)


def test_training_shapes_reach_high_efficiency_and_small_ones_do_not():
    km = kernel_model(CS2.chip, STEP, 2)
    cells = CS2.grid().cells
    assert km.efficiency(132 * 2048, 2048, 8192, cells) > 0.85  # 1.3B's FFN at 132 sequences per system
    assert km.efficiency(128, 5120, 5120, cells) < 0.05  # one short sequence: latency-bound
    assert km.grouped_matmul_s(10**7, 8, 8, 8, cells) > km.grouped_matmul_s(10**3, 8, 8, 8, cells)
    assert km.gemv_s(4, 4096, 4096, 100, 100) > km.gemv_s(1, 4096, 4096, 100, 100)
    with pytest.raises(ZeroDivisionError):
        km.efficiency(1, 1, 1, 0)

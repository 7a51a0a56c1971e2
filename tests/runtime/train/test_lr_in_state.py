"""The peak learning rate held in the optimizer state (``Trainer(lr_in_state=True)``), the seam `wse study` sweeps
learning rates through: the same losses as a rate compiled in, one compilation shared by runs that differ only in
the rate, and an exact resume (the rate comes back from the checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest

import runtime.train.state as state
from runtime.config import load_config
from runtime.train import Trainer
from tests.multidevice.test_train import overrides, world  # noqa: F401 - the micro model and its dataset (a module fixture)

ONE_DEVICE = ("execution.mode=data", "mesh.devices=1", "train.warmup_steps=2")


def losses(world, run_dir, *extra, **kwargs) -> list[float]:  # noqa: F811 - world is the fixture
    return Trainer(load_config(None, overrides(world, run_dir, *ONE_DEVICE, *extra)), progress=False,
                   **kwargs).run()["losses"]


@pytest.fixture
def compilations(monkeypatch):
    """How many times the training programs were built (a fresh cache for the test)."""
    monkeypatch.setattr(state, "_COMPILED", {})
    built = []
    original = state.Compiled.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(state.Compiled, "__init__", counting)
    return built


@pytest.mark.slow
def test_rate_in_state_trains_as_a_compiled_rate_and_compiles_once(world, tmp_path, compilations):  # noqa: F811
    traced = [losses(world, tmp_path / f"in-state-{lr}", f"train.lr={lr}", lr_in_state=True) for lr in (1e-3, 4e-3)]
    assert len(compilations) == 1  # the second rate reused the first rate's programs
    # the reused programs train at the second rate: as a run with that rate compiled in (its own compilation)
    np.testing.assert_allclose(traced[1], losses(world, tmp_path / "constant", "train.lr=4e-3"), rtol=1e-5)
    assert len(compilations) == 2
    assert traced[0][-1] != pytest.approx(traced[1][-1])  # the rates did differ


@pytest.mark.slow
def test_rate_in_state_resumes_exactly(world, tmp_path):  # noqa: F811
    whole = losses(world, tmp_path / "whole", "train.lr=2e-3", "train.decay_steps=6", lr_in_state=True)
    first = losses(world, tmp_path / "split", "train.lr=2e-3", "train.decay_steps=6", "train.steps=4", lr_in_state=True)
    rest = losses(world, tmp_path / "split", "train.lr=2e-3", "train.decay_steps=6", lr_in_state=True)
    assert first + rest == whole

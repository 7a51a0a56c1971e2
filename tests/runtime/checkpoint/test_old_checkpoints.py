"""A checkpoint written before issue 24's layout (wse-sim at 433514a, kept in written_before_the_layout/ with the
script that wrote it) is read by today's code: the same arrays, its train state, and its saved run config accepted
for resuming with the settings it was trained with (the full resume, steps 3-4 bitwise equal to the uninterrupted
run of 433514a, was checked by hand: see the folder's README)."""

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from model.config import build_config
from model.gpt import param_shapes
from runtime.checkpoint import RunCheckpoints, load_model
from runtime.config import load_config, resume_conflicts
from runtime.config.recipes import resolve

WRITTEN = Path(__file__).parent / "written_before_the_layout"
CFG = build_config(dict(name="old", n_layers=2, d_model=16, n_heads=2, d_head=8, d_ffn=32, max_seq_len=16,
                        vocab_size=64))
# the settings of the 433514a run whose train state the checkpoint holds
SETTINGS = ["model=tiny", "data=builtin", "mesh.devices=1", "train.seq_len=32", "train.batch_size=2", "train.steps=4",
            "train.eval_every=100", "train.checkpoint_every=2", "train.run_dir=run"]


def _written():
    rng = np.random.default_rng(0)  # as write_old.py made them
    params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s), jnp.float32), param_shapes(CFG),
                          is_leaf=lambda x: isinstance(x, tuple))
    opt_state = jax.tree.map(lambda x: x + 0.5 if x.dtype == jnp.float32 else x, optax.adamw(1e-3).init(params))
    return params, opt_state


def test_a_checkpoint_written_before_the_layout_restores_the_same_state(tmp_path):
    shutil.copytree(WRITTEN / "checkpoints", tmp_path / "checkpoints")
    params, opt_state = _written()
    ck = RunCheckpoints(tmp_path)
    assert ck.latest_step() == 2
    cfg, meta = ck.read_meta()
    assert cfg == CFG
    got_params, got_opt, train_state = ck.restore(params, opt_state)
    assert train_state["step"] == 2 and train_state["data"]["batches"] == 2 and train_state["tokens"] == 128
    for want, got in ((params, got_params), (opt_state, got_opt)):
        assert jax.tree.structure(want) == jax.tree.structure(got)
        for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    model_cfg, model_params = load_model(tmp_path / "checkpoints")
    assert model_cfg == CFG
    np.testing.assert_array_equal(np.asarray(model_params["wte"]), np.asarray(params["wte"]))


def test_its_saved_run_config_resumes_with_the_settings_it_was_trained_with(tmp_path):
    shutil.copytree(WRITTEN / "checkpoints", tmp_path / "checkpoints")
    saved = RunCheckpoints(tmp_path).read_meta()[1]["config"]
    config, sources = resolve(load_config(None, SETTINGS), None, saved)
    assert resume_conflicts(saved, config) == []
    assert config.train.lr == saved["train"]["lr"] and config.train.decay_steps == saved["train"]["decay_steps"]

"""runtime/checkpoint/ on its own: round trips, integrity checks, half-written steps, read-only reading."""

import hashlib
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from model.config import build_config
from model.gpt import param_shapes
from runtime.checkpoint import RunCheckpoints, load_model, same_model, save_model
from runtime.checkpoint import tree_checksums
from runtime.errors import UserError

CFG = build_config(dict(name="ck", n_layers=2, d_model=16, n_heads=2, d_head=8, d_ffn=32, max_seq_len=16, vocab_size=64))


def _tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _biggest_params_file(step_dir: Path) -> Path:
    files = [p for p in (step_dir / "params").rglob("*") if p.is_file() and "ocdbt.process" in str(p)]
    return max(files, key=lambda p: p.stat().st_size)


@pytest.fixture(scope="module")
def state():
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s), jnp.float32), param_shapes(CFG),
                          is_leaf=lambda x: isinstance(x, tuple))
    tx = optax.adamw(1e-3)

    @jax.jit
    def one_update(params):  # one real update, so that the moments are not all zeros
        opt_state = tx.init(params)
        updates, opt_state = tx.update(jax.tree.map(jnp.ones_like, params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return one_update(params)


def test_checksums_do_not_depend_on_sharding():
    mesh = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Auto,))
    x = jax.random.normal(jax.random.key(1), (64, 16))
    sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x")))
    assert tree_checksums({"a": x}) == tree_checksums({"a": sharded}) == tree_checksums({"a": np.asarray(x)})
    assert tree_checksums({"a": x}) != tree_checksums({"a": x.at[3, 3].add(1e-6)})


def test_training_checkpoint_round_trip(tmp_path, state):
    params, opt_state = state
    ck = RunCheckpoints(tmp_path / "run", keep=2)
    assert ck.latest_step() is None and not (tmp_path / "run").exists()  # reading creates nothing
    for step in (1, 2, 3):
        ck.save(step, CFG, params, opt_state, {"step": step, "data": {"epoch": 0, "step": step}, "rng": [0, 7]})
    ck.close()
    assert sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()) == [2, 3]  # keep=2
    cfg, meta = ck.read_meta()
    assert same_model(cfg, CFG) and meta["step"] == 3 and meta["data"] == {"epoch": 0, "step": 3}
    p2, o2, meta2 = RunCheckpoints(tmp_path / "run").restore(params, opt_state)
    assert jax.tree.structure(o2) == jax.tree.structure(opt_state)
    for a, b in zip(jax.tree.leaves((params, opt_state)), jax.tree.leaves((p2, o2))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # generate/eval/convert read training checkpoints through load_model
    cfg3, p3 = load_model(tmp_path / "run")
    np.testing.assert_array_equal(np.asarray(p3["wte"]), np.asarray(params["wte"]))


@pytest.mark.parametrize("damage", ["garble", "truncate"])
def test_damaged_checkpoint_is_a_one_line_error_and_stays_as_it_was(tmp_path, state, damage):
    params, opt_state = state
    ck = RunCheckpoints(tmp_path / "run")
    ck.save(5, CFG, params, opt_state, {"step": 5})
    ck.close()
    target = _biggest_params_file(tmp_path / "run" / "checkpoints" / "5")
    data = bytearray(target.read_bytes())
    if damage == "garble":  # bytes flipped in the middle: the storage layer decodes it without complaint
        for i in range(len(data) // 2, len(data) // 2 + 16):
            data[i] ^= 0x5A
    else:
        data = data[: len(data) // 2]
    target.write_bytes(bytes(data))
    before = _tree_hash(tmp_path / "run")
    with pytest.raises(UserError) as err:
        RunCheckpoints(tmp_path / "run").restore(params, opt_state)
    assert "corrupt" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="corrupt"):
        load_model(tmp_path / "run")
    assert _tree_hash(tmp_path / "run") == before


def test_half_written_step_is_never_latest(tmp_path, state):
    params, opt_state = state
    ck = RunCheckpoints(tmp_path / "run")
    ck.save(4, CFG, params, opt_state, {"step": 4})
    ck.close()
    # what a process killed during the save of step 6 leaves behind
    tmp = tmp_path / "run" / "checkpoints" / "6.orbax-checkpoint-tmp-1234"
    (tmp / "params").mkdir(parents=True)
    (tmp / "params" / "partial").write_bytes(os.urandom(100))
    assert RunCheckpoints(tmp_path / "run").latest_step() == 4
    assert load_model(tmp_path / "run")[0].n_layers == 2
    # the next save of that run writes step 6 for real
    ck = RunCheckpoints(tmp_path / "run")
    ck.save(6, CFG, params, opt_state, {"step": 6})
    ck.close()
    assert ck.latest_step() == 6 and RunCheckpoints(tmp_path / "run").read_meta()[1]["step"] == 6


def test_model_only_checkpoints_still_work(tmp_path, state):
    params, _ = state
    save_model(tmp_path / "m", CFG, params)
    cfg, restored = load_model(tmp_path / "m")
    assert cfg == CFG
    np.testing.assert_array_equal(np.asarray(restored["blocks"]["mlp"]["c_fc"]["kernel"]),
                                  np.asarray(params["blocks"]["mlp"]["c_fc"]["kernel"]))
    with pytest.raises(UserError, match="not empty"):
        save_model(tmp_path / "m", CFG, params)
    # a model-only checkpoint where a training run's checkpoints would be is not a run to resume
    save_model(tmp_path / "run" / "checkpoints", CFG, params)
    with pytest.raises(UserError, match="model-only checkpoint"):
        RunCheckpoints(tmp_path / "run").read_meta()

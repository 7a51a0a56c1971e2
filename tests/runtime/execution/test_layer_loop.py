"""The layer loop (execution.layer_loop): unrolled blocks compute what the scanned stack computes, under every remat
policy, for Cerebras-GPT and a Llama-family model; the plan records the choice and why; a bad value is refused."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from model import gpt
from model.config import get_config
from runtime.config import load_config
from runtime.errors import UserError
from runtime.execution import FAST_COMPILE as FAST, build_executor
from runtime.execution.layer_loop import UNROLL_MAX_LAYERS, resolve_layer_loop
from runtime.execution.optim import build_optimizer
from runtime.platform import make_mesh

B, T = 4, 16
SHRINK = dict(n_layers=3, d_model=32, n_heads=4, d_head=8, vocab_size=128, max_seq_len=T)
MODELS = {
    "cerebras": get_config("tiny").replace(**SHRINK, d_ffn=64),
    "llama": get_config("llama-tiny").replace(**SHRINK, d_ffn=48, n_kv_heads=2),
}


def train(cfg, loop: str, remat: str, steps: int = 3):
    """(losses of ``steps`` AdamW steps, the trained parameters) in data mode on one device."""
    ex = build_executor("data", cfg, make_mesh({"data": 1}, jax.devices()[:1]), compiler_options=FAST,
                        remat=remat, layer_loop=loop)
    assert (ex.plan["layer_loop"], ex.plan["layer_loop_reason"]) == (loop, "asked for")
    rng = np.random.default_rng(0)
    tokens, targets = (ex.put_batch(rng.integers(0, cfg.vocab_size, (B, T), dtype=np.int32)) for _ in range(2))
    params = gpt.initial_params(cfg, 0)
    opt = build_optimizer(cfg, total_steps=steps, lr=3e-3, warmup_steps=1, eps=1e-6)
    state, step, losses = ex.init_state(params, opt), ex.make_train_step(opt), []
    for _ in range(steps):
        state, metrics = step(state, tokens, targets)
        losses.append(float(metrics["loss"]))
    assert ex.plan["remat"] == remat
    return losses, jax.tree.map(np.asarray, ex.export_state(state)["params"])


@pytest.mark.slow
@pytest.mark.parametrize("remat", ["none", "dots", "full"])
@pytest.mark.parametrize("family", sorted(MODELS))
def test_unrolled_blocks_train_like_the_scanned_stack(family, remat):
    scanned, p_scan = train(MODELS[family], "scan", remat)
    unrolled, p_unroll = train(MODELS[family], "unroll", remat)
    np.testing.assert_allclose(unrolled, scanned, rtol=1e-5)
    for (path, ref), got in zip(jax.tree_util.tree_flatten_with_path(p_scan)[0], jax.tree.leaves(p_unroll)):
        assert np.linalg.norm(got - ref) <= 1e-5 * max(np.linalg.norm(ref), 1e-30), jax.tree_util.keystr(path)


def test_the_plan_records_the_loop_and_why():
    cfg = MODELS["cerebras"]
    ex = build_executor("data", cfg, make_mesh({"data": 1}, jax.devices()[:1]), compiler_options=FAST)
    assert ex.plan["requested_layer_loop"] == "auto" and ex.plan["layer_loop"] == "scan"
    assert ex.plan["layer_loop_reason"].startswith("cpu:")
    # auto on a GPU unrolls up to UNROLL_MAX_LAYERS layers, scans deeper stacks; TPU keeps the scan
    assert resolve_layer_loop("auto", n_layers=24, platform="gpu", mode="data")[0] == "unroll"
    assert resolve_layer_loop("auto", n_layers=UNROLL_MAX_LAYERS + 1, platform="gpu", mode="data")[0] == "scan"
    assert resolve_layer_loop("auto", n_layers=24, platform="tpu", mode="pipelined")[0] == "scan"
    assert resolve_layer_loop("unroll", n_layers=24, platform="gpu", mode="pipelined") == ("unroll", "asked for")
    # weight streaming keeps its scan whatever is asked, and says why
    loop, reason = resolve_layer_loop("unroll", n_layers=24, platform="gpu", mode="streaming")
    assert loop == "scan" and "one layer at a time" in reason
    stream = build_executor("streaming", cfg, make_mesh({"data": 1}, jax.devices()[:1]), compiler_options=FAST,
                            layer_loop="unroll")
    assert stream.plan["layer_loop"] == "scan" and stream.plan["requested_layer_loop"] == "unroll"


def test_a_bad_layer_loop_is_refused_in_one_line():
    with pytest.raises(UserError, match=r"execution.layer_loop.*'auto', 'scan' or 'unroll'") as err:
        load_config(None, ["execution.layer_loop=unrolled"])
    assert "\n" not in str(err.value)
    assert load_config(None, ["execution.layer_loop=unroll"]).execution.layer_loop == "unroll"
    with pytest.raises(UserError, match="unknown execution.layer_loop 'loop'; use one of auto, scan, unroll"):
        build_executor("data", MODELS["cerebras"], make_mesh({"data": 1}, jax.devices()[:1]), layer_loop="loop")
    with pytest.raises(ValueError, match="unknown layer loop"):
        gpt.run_blocks(MODELS["cerebras"], {}, None, layer_loop="while")

"""Weight streaming's traffic over the host link, read from the traced training step, equals the design's formula
(wse/hostlink.py), so a change that moves more (a second copy of the weights, moments crossing the link, float32
weights in a bf16 run) fails here on CPU; and the bf16 streamed step computes what data mode computes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model import gpt
from model.config import get_config
from runtime import platform as meshlib
from runtime.execution import FAST_COMPILE as FAST, build_executor
from runtime.execution.optim import build_optimizer
from runtime.execution.transfers import link_bytes
from wse.devices.hostlink import streaming_link_bytes

CFG = get_config("tiny").replace(n_layers=3, d_model=32, n_heads=4, d_head=8, d_ffn=128, vocab_size=256,
                                 max_seq_len=16)
# A family model: Q/K norms (float32 scales under attn), grouped K/V heads, a gated FFN, no biases, an untied head
QWEN = get_config("qwen3-tiny").replace(n_layers=3, d_model=32, n_heads=4, n_kv_heads=2, d_head=12, d_ffn=64,
                                        vocab_size=256, max_seq_len=16, tied_embeddings=False)
SCALARS = 64  # bytes of scalars that cross too (the step counts joining the host-side update, the norm): not weights


def traced_traffic(ex, accum: int, rows: int = 4) -> dict:
    opt = build_optimizer(ex.cfg, total_steps=4)
    params = jax.jit(functools.partial(gpt.init_params, ex.cfg), compiler_options=FAST)(jax.random.key(0))
    state = ex.init_state(params, opt)
    tokens = ex.put_batch(np.zeros((rows, 16), np.int32))
    return link_bytes(ex.make_train_step(opt, accum_steps=accum).trace(state, tokens, tokens).jaxpr)


@pytest.mark.parametrize("dtype,accum,host_update,axes,cfg", [
    (jnp.float32, 1, None, {"data": 1}, CFG),
    (jnp.bfloat16, 2, None, {"data": 2}, CFG),
    (jnp.float32, 2, False, {"data": 1}, CFG),
    (jnp.bfloat16, 1, None, {"data": 1}, QWEN),
], ids=["f32-host-update", "bf16-accum2-data2", "f32-accum2-device-update", "qwen3-bf16"])
def test_streaming_step_moves_what_the_design_says(dtype, accum, host_update, axes, cfg):
    n = int(np.prod(list(axes.values())))
    ex = build_executor("streaming", cfg, meshlib.make_mesh(axes, jax.devices()[:n]), dtype=dtype,
                        host_update=host_update, compiler_options=FAST)
    assert ex.plan["host_update"] is (host_update is None)  # the CPU backend computes in host memory
    got = traced_traffic(ex, accum)
    want = streaming_link_bytes(cfg, compute_bytes=jnp.dtype(dtype).itemsize, accum=accum,
                                host_update=ex.plan["host_update"])
    for way in ("to_device", "to_host"):
        assert want[way] <= got[way] <= want[way] + SCALARS, (way, got, want)
    assert ex.plan["link_bytes_per_step"] == {"accum": accum, "to_device": want["to_device"], "to_host": want["to_host"]}


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [CFG, QWEN], ids=["gpt2", "qwen3"])
def test_bf16_streaming_equals_data_mode(cfg):
    """bf16 compute: weights cast in host memory and widened on the device give data mode's loss and float32
    gradients bit for bit on XLA:CPU (the same operations on the same values; a GPU may fuse them differently). The
    norms' scales, Q/K norms' included, travel in float32 as data mode uses them."""
    mesh = meshlib.make_mesh({"data": 1}, jax.devices()[:1])
    params = jax.jit(functools.partial(gpt.init_params, cfg), compiler_options=FAST)(jax.random.key(3))
    params = jax.tree.map(lambda p: p + 0.01 * jax.random.normal(jax.random.key(4), p.shape), params)  # norms != 1
    tokens, targets = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 4, 16), dtype=np.int32)
    out = {}
    for mode in ("data", "streaming"):
        ex = build_executor(mode, cfg, mesh, dtype=jnp.bfloat16, remat="full", compiler_options=FAST)
        loss, grads = ex.loss_and_grads(ex.place(params), ex.put_batch(tokens), ex.put_batch(targets))
        out[mode] = (float(loss), jax.tree.map(np.asarray, ex.canonical(grads)))
    assert ex.plan["stream_dtype"] == "bfloat16"
    assert out["streaming"][0] == out["data"][0]
    for g, w in zip(jax.tree.leaves(out["streaming"][1]), jax.tree.leaves(out["data"][1])):
        assert g.dtype == np.float32
        np.testing.assert_array_equal(g, w)

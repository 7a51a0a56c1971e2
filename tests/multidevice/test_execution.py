"""Every execution mode on every mesh shape computes what one device computes, for Cerebras-GPT and the families.

For each (mode, mesh) the loss and gradients of a batch equal a plain single-device
``jax.value_and_grad(gpt.loss_fn)`` on the same weights, and after 5 AdamW steps (masked batch, gradient accumulation
in some cases) the losses and parameters still equal the single-device run of the same optax optimizer — float32,
relative error 1e-5 per tensor (norm of the difference over the norm of the reference).

Adam's eps is 1e-6 here, not the recipe's 1e-8: the key bias has an exactly zero gradient (softmax ignores a shift
common to all keys), so what any implementation computes for it is rounding noise of ~1e-12, and with eps 1e-8 Adam
turns that noise into updates of order lr * 1e-4 whose values differ between *any* two programs (even one mode with
a different XLA fusion). eps 1e-6 keeps those parameters still, so the comparison tests the execution, not noise.

The mesh shapes are sub-meshes of the 8 emulated CPU devices (tests/conftest.py); XLA's fast-compile options keep
the whole matrix within the CI budget.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from model import gpt
from model.config import get_config
from runtime.execution import FAST_COMPILE as FAST, build_executor
from runtime.execution.optim import build_optimizer
from runtime.platform import make_mesh

TOL = 1e-5
# Parameters after STEPS AdamW steps: Adam divides each gradient component by its running RMS, so where a component
# is near zero a float32 reordering (a sum split across stages or devices) moves its update by up to lr. Measured
# worst case 1.04e-5 (llama pipe-stage4 on a 2-core Xeon with AVX-512, jax 0.10.2; 6.9e-6 the next case); the loss,
# the gradients and every loss of the run stay at TOL.
TRAINED_TOL = 2e-5
STEPS = 5
B, T = 16, 16
BASE = get_config("tiny").replace(n_layers=8, d_model=32, n_heads=4, d_head=8, d_ffn=128, vocab_size=256,
                                  max_seq_len=T)
_SMALL = dict(n_layers=8, d_model=32, n_heads=4, d_head=8, vocab_size=256, max_seq_len=T)
FAMILIES = {
    "gpt2": BASE,
    # Llama/Mistral: RMSNorm, SwiGLU, rotary, 4 query heads on 2 K/V heads, no biases, an untied head
    "llama": get_config("mistral-tiny").replace(**_SMALL, n_kv_heads=2, d_ffn=64),
    # GPT-J: parallel residual, rotary on a quarter of each head (interleaved pairs), tanh GELU, biases on the FFN
    # only, an untied head with a bias
    "gptj": get_config("gptj-tiny").replace(**_SMALL, rotary_dim=2, d_ffn=128),
    # Qwen3: Q/K norms, heads wider than d_model / n_heads (4 x 12 on 32), 2 K/V heads, tied embeddings
    "qwen3": get_config("qwen3-tiny").replace(**{**_SMALL, "d_head": 12}, n_kv_heads=2, d_ffn=64),
}


def config(n_layers: int, family: str = "gpt2"):
    return FAMILIES[family].replace(n_layers=n_layers)


def optimizer(cfg):
    return build_optimizer(cfg, total_steps=STEPS, lr=3e-3, warmup_steps=1, decay="cosine", eps=1e-6)


def batch():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, BASE.vocab_size, (B, T), dtype=np.int32)
    targets = rng.integers(0, BASE.vocab_size, (B, T), dtype=np.int32)
    mask = rng.random((B, T)) > 0.25
    return tokens, targets, mask


@functools.lru_cache(maxsize=None)
def reference(n_layers: int, family: str = "gpt2") -> dict:
    """Single device, no sharding, no remat: the plain model and plain optax."""
    cfg = config(n_layers, family)
    params = jax.jit(functools.partial(gpt.init_params, cfg), compiler_options=FAST)(jax.random.key(0))
    tokens, targets, mask = (jnp.asarray(x) for x in batch())
    loss, grads = jax.jit(jax.value_and_grad(lambda p: gpt.loss_fn(cfg, p, tokens, targets)),
                          compiler_options=FAST)(params)
    tx = optimizer(cfg).chain

    @functools.partial(jax.jit, compiler_options=FAST)
    def step(p, s):
        loss, g = jax.value_and_grad(lambda p: gpt.loss_fn(cfg, p, tokens, targets, mask))(p)
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    p, s, losses = params, tx.init(params), []
    for _ in range(STEPS):
        p, s, l = step(p, s)
        losses.append(float(l))
    return {"params": params, "loss": float(loss), "grads": grads, "trained": p, "losses": losses}


def assert_tree_close(got, want, tol=TOL):
    got = jax.tree.map(np.asarray, got)
    for (path, g), w in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want)):
        w = np.asarray(w)
        assert g.shape == w.shape, jax.tree_util.keystr(path)
        err = np.linalg.norm((g - w).ravel()) / max(np.linalg.norm(w.ravel()), 1e-30)
        assert err <= tol, f"{jax.tree_util.keystr(path)}: relative error {err:.2e}"


# id, mode, mesh axes, layers, build_executor options, accumulation steps (, family: gpt2 when not given)
CASES = [
    ("data-1", "data", {"data": 1}, 8, {}, 1),
    # remat forced where the plan would leave it off (these shapes fit easily), so every policy stays covered
    ("data2x-model4-fsdp", "data", {"data": 2, "model": 4}, 8, {"fsdp": True, "remat": "full"}, 2),
    ("data2x-dots", "data", {"data": 2}, 8, {"remat": "dots"}, 1),
    ("pipe-stage2", "pipelined", {"stage": 2}, 8, {}, 1),
    ("pipe-stage4", "pipelined", {"stage": 4}, 8, {}, 1),
    ("pipe-stage8", "pipelined", {"stage": 8}, 8, {}, 1),
    ("pipe-data2x-stage4", "pipelined", {"data": 2, "stage": 4}, 8, {"remat": True}, 2),  # the old spelling of full
    # 8 layers over 3 stages: 3 + 3 + 2, one padded slot; tensor parallelism inside the stages; 6 of the 8 devices
    ("pipe-uneven-stage3-model2", "pipelined", {"stage": 3, "model": 2}, 8, {"microbatches": 4}, 1),
    # the stage's slots unrolled (execution.layer_loop), with a padded slot and 1F1B's per-microbatch stage loss
    ("pipe-uneven-stage3-unroll", "pipelined", {"stage": 3}, 8, {"microbatches": 4, "layer_loop": "unroll"}, 1),
    ("stream-1", "streaming", {"data": 1}, 8, {}, 1),
    ("stream-data2x-model4", "streaming", {"data": 2, "model": 4}, 8, {}, 2),
    # the families: grouped K/V heads sharded over model, the untied head (and its bias) beside the blocks in every
    # mode, the gated FFN, Q/K norms, the parallel residual
    ("llama-data2x-model2", "data", {"data": 2, "model": 2}, 8, {}, 1, "llama"),
    ("llama-pipe-stage4", "pipelined", {"stage": 4}, 8, {}, 1, "llama"),
    ("llama-pipe-gpipe-data2x-stage2", "pipelined", {"data": 2, "stage": 2}, 8, {"schedule": "gpipe"}, 1, "llama"),
    ("llama-stream-data2x-model2", "streaming", {"data": 2, "model": 2}, 8, {}, 2, "llama"),
    ("gptj-pipe-uneven-stage3", "pipelined", {"stage": 3}, 8, {"microbatches": 4}, 1, "gptj"),
    ("qwen3-stream-1", "streaming", {"data": 1}, 8, {}, 1, "qwen3"),
]


def check_placement(ex, params, grads):
    """Where the weights live is part of the mode, not just the numbers."""
    kernel = params["blocks"]["mlp"]["c_fc"]["kernel"]
    assert jax.tree.map(lambda g: g.sharding, grads) == jax.tree.map(lambda p: p.sharding, params)
    if ex.shape["model"] > 1:
        assert "model" in tuple(kernel.sharding.spec), kernel.sharding.spec
    if ex.fsdp:
        assert "data" in tuple(params["wte"].sharding.spec)
    if ex.mode == "pipelined":
        # each device holds exactly its stage's slots of the stacked layers, nothing of the other stages
        assert kernel.sharding.spec[0] == "stage"
        stage_of = {d: s for s in range(ex.n_stages) for d in ex.mesh.devices[:, s, :].flat}
        for shard in kernel.addressable_shards:
            first = shard.index[0].start or 0
            assert shard.data.shape[0] == ex.slots and first == stage_of[shard.device] * ex.slots
    if ex.mode == "streaming":
        assert kernel.sharding.memory_kind == "pinned_host"
        assert grads["blocks"]["mlp"]["c_fc"]["kernel"].sharding.memory_kind == "pinned_host"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_mode_equals_single_device(case):
    _, mode, axes, n_layers, options, accum, family = (*case, "gpt2")[:7]
    cfg, ref = config(n_layers, family), reference(n_layers, family)
    n = int(np.prod(list(axes.values())))
    ex = build_executor(mode, cfg, make_mesh(axes, jax.devices()[:n]), compiler_options=FAST, **options)
    assert ex.mode == mode
    tokens, targets, mask = batch()
    if family == "llama" and ex.shape["model"] > 1:  # 2 K/V heads over model = 2: one per device
        assert "model" in tuple(ex.param_specs["blocks"]["attn"]["c_kv"]["kernel"])
    tok, tgt, msk = ex.put_batch(tokens), ex.put_batch(targets), ex.put_batch(mask)

    params = ex.place(ref["params"])
    loss, grads = ex.loss_and_grads(params, tok, tgt)
    # remat is decided when the first batch is traced: none for these small shapes unless forced; streaming needs full
    forced = {True: "full", False: "none"}.get(options.get("remat"), options.get("remat"))
    assert ex.plan["remat"] == ("full" if mode == "streaming" else forced or "none")
    assert ex.plan["layer_loop"] == ("scan" if mode == "streaming" else options.get("layer_loop", "scan"))
    assert abs(float(loss) - ref["loss"]) <= TOL * abs(ref["loss"])
    assert_tree_close(ex.canonical(grads), ref["grads"])
    check_placement(ex, params, grads)

    opt = optimizer(cfg)
    state = ex.init_state(ref["params"], opt)
    step = ex.make_train_step(opt, accum_steps=accum)
    losses = []
    for _ in range(STEPS):
        state, metrics = step(state, tok, tgt, msk)
        losses.append(float(metrics["loss"]))
    np.testing.assert_allclose(losses, ref["losses"], rtol=TOL)
    assert int(state["step"]) == STEPS
    assert_tree_close(ex.canonical(state["params"]), ref["trained"], TRAINED_TOL)
    exported = ex.export_state(state)
    assert_tree_close(exported["params"], ref["trained"], TRAINED_TOL)

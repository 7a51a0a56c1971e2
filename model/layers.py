"""The model's building blocks as pure functions of arrays and parameter dicts: norms, activations, the FFN, rotary
positions. ``dtype`` conventions: parameters arrive in float32 and are cast to the compute dtype (x's) at use; norm
statistics and RoPE angles are computed in float32.

Norms and activations carry hand-written backward passes for memory, not speed: autodiff would keep their float32
intermediates (the upcast input, the centred and normalised values; erf(x / sqrt 2), tanh(...), sigmoid(x)) for the
backward pass, which at 1.3B, 8 x 2048 tokens is ~40 GiB more than keeping just the input and recomputing the cheap
elementwise rest. Gradients equal autodiff's to float32 rounding (tests/test_model.py, tests/model/).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from model.config import GPTConfig

Params = dict[str, Any]


# ----------------------------------------------------------------------------------------------------------------
# Norms


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _normalise(x: jax.Array, eps: float) -> jax.Array:
    """(x - mean) / sqrt(var + eps) over the last axis, in float32."""
    return _normalise_fwd(x, eps)[0]


def _normalise_fwd(x, eps):
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    rstd = jax.lax.rsqrt(jnp.square(x32 - mean).mean(-1, keepdims=True) + eps)
    return (x32 - mean) * rstd, (x, mean, rstd)


def _normalise_bwd(eps, saved, d_y):
    x, mean, rstd = saved
    y = (x.astype(jnp.float32) - mean) * rstd
    d_y = d_y.astype(jnp.float32)
    d_x = rstd * (d_y - d_y.mean(-1, keepdims=True) - y * (d_y * y).mean(-1, keepdims=True))
    return (d_x.astype(x.dtype),)


_normalise.defvjp(_normalise_fwd, _normalise_bwd)


def layer_norm(x: jax.Array, p: Params, eps: float) -> jax.Array:
    """LayerNorm over the last axis with statistics in float32; the result in x's dtype. ``p``: scale, bias."""
    return (_normalise(x, eps) * p["scale"] + p["bias"]).astype(x.dtype)


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def _rms_normalise(x: jax.Array, eps: float) -> jax.Array:
    """x / sqrt(mean(x^2) + eps) over the last axis, in float32."""
    return _rms_normalise_fwd(x, eps)[0]


def _rms_normalise_fwd(x, eps):
    x32 = x.astype(jnp.float32)
    rstd = jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + eps)
    return x32 * rstd, (x, rstd)


def _rms_normalise_bwd(eps, saved, d_y):
    x, rstd = saved
    y = x.astype(jnp.float32) * rstd
    d_y = d_y.astype(jnp.float32)
    return ((rstd * (d_y - y * (d_y * y).mean(-1, keepdims=True))).astype(x.dtype),)


_rms_normalise.defvjp(_rms_normalise_fwd, _rms_normalise_bwd)


def rms_norm(x: jax.Array, p: Params, eps: float) -> jax.Array:
    """RMSNorm over the last axis (Zhang & Sennrich 2019; Llama's, Qwen's Q/K norms) with statistics in float32; the
    result in x's dtype. ``p``: scale."""
    return (_rms_normalise(x, eps) * p["scale"]).astype(x.dtype)


def norm(cfg: GPTConfig, x: jax.Array, p: Params) -> jax.Array:
    """The model's norm (``cfg.norm``: LayerNorm or RMSNorm, eps ``cfg.layer_norm_eps``) over the last axis of x."""
    if cfg.norm == "rmsnorm":
        return rms_norm(x, p, cfg.layer_norm_eps)
    return layer_norm(x, p, cfg.layer_norm_eps)


# ----------------------------------------------------------------------------------------------------------------
# Activations


@jax.custom_vjp
def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, x Phi(x), as ``jax.nn.gelu(x, approximate=False)``; the backward pass keeps only x."""
    return jax.nn.gelu(x, approximate=False)


def _gelu_fwd(x):
    return gelu(x), x


def _gelu_bwd(x, d_y):
    x32 = x.astype(jnp.float32)
    cdf = 0.5 * (1.0 + jax.lax.erf(x32 * (1.0 / math.sqrt(2.0))))
    pdf = jnp.exp(-0.5 * jnp.square(x32)) * (1.0 / math.sqrt(2.0 * math.pi))
    return ((d_y.astype(jnp.float32) * (cdf + x32 * pdf)).astype(x.dtype),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)

_TANH_C = math.sqrt(2.0 / math.pi)


@jax.custom_vjp
def gelu_tanh(x: jax.Array) -> jax.Array:
    """tanh-approximated GELU, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): GPT-2's and GPT-J's ``gelu_new``, as
    ``jax.nn.gelu(x, approximate=True)``; the backward pass keeps only x."""
    return jax.nn.gelu(x, approximate=True)


def _gelu_tanh_fwd(x):
    return gelu_tanh(x), x


def _gelu_tanh_bwd(x, d_y):
    x32 = x.astype(jnp.float32)
    t = jnp.tanh(_TANH_C * (x32 + 0.044715 * x32 ** 3))
    d = 0.5 * (1.0 + t) + 0.5 * x32 * (1.0 - t * t) * _TANH_C * (1.0 + 3 * 0.044715 * x32 * x32)
    return ((d_y.astype(jnp.float32) * d).astype(x.dtype),)


gelu_tanh.defvjp(_gelu_tanh_fwd, _gelu_tanh_bwd)


@jax.custom_vjp
def silu(x: jax.Array) -> jax.Array:
    """SiLU (swish), x sigmoid(x), as ``jax.nn.silu``; the backward pass keeps only x."""
    return jax.nn.silu(x)


def _silu_fwd(x):
    return silu(x), x


def _silu_bwd(x, d_y):
    x32 = x.astype(jnp.float32)
    s = jax.nn.sigmoid(x32)
    return ((d_y.astype(jnp.float32) * (s * (1.0 + x32 * (1.0 - s)))).astype(x.dtype),)


silu.defvjp(_silu_fwd, _silu_bwd)

ACTIVATIONS = {"gelu": gelu, "gelu_tanh": gelu_tanh, "silu": silu}


# ----------------------------------------------------------------------------------------------------------------
# The matrix-vector layout of a block's weight matrices (batch-1 decoding on CPU, model/generate.py)

# How a block's weight matrix is laid out for batch-1 decoding on CPU. There each matrix product is a matrix-vector
# product that XLA:CPU runs as one single-threaded kernel, and its thunk executor hands half of the ready operations
# to a second worker only when more than 8 are ready at once (ThunkExecutor's split threshold, openxla/xla
# backends/cpu/runtime/thunk_executor.cc). So a large widening matrix (more outputs than inputs: the QKV and FFN-up
# projections) is cut into MATVEC_BLOCKS independent products that keep two cores reading; a smaller one stays as
# trained (its blocks would be too small to pay for their launches); a square or narrowing one is stored transposed,
# [out, in], which the kernel streams faster. Measured (2-core EPYC, jax 0.10.2, float32, a chain of dependent
# products over 160 MB of distinct weights, GB/s as trained -> chosen): [768, 2304] 25.8 -> 42.7 (16 blocks),
# [768, 3072] 25.2 -> 60.7 (16 blocks), [768, 768] 20.1 -> 26.5 and [3072, 768] 17.9 -> 27.7 (transposed);
# [256, 1024] 18.8 as trained against 14.1 transposed, and in a whole decode step its 16 blocks of 64 KB cost more
# in launches and the concatenation than they gained; 32 blocks were slower than 16 everywhere tried.
# On a 2-core Xeon VM (AVX-512) whose two threads slow each other's reads, the layouts tie: 111M's decode step,
# same process alternating, 19.6 ms in 16 blocks, 19.7 all transposed, 20.1 as trained (docs/performance.md).
MATVEC_BLOCKS = 16
MATVEC_SPLIT_BYTES = 4 << 20  # a widening matrix at least this large (in its dtype) is cut into MATVEC_BLOCKS


def matvec_blocks(n_in: int, n_out: int, itemsize: int) -> int:
    """How many blocks an [n_in, n_out] weight matrix of ``itemsize``-byte elements takes in the matrix-vector layout
    (see MATVEC_BLOCKS): MATVEC_BLOCKS for a widening one of at least MATVEC_SPLIT_BYTES, 0 (kept as trained) for a
    smaller widening one, 1 (transposed) for a square or narrowing one."""
    if n_out > n_in:
        return MATVEC_BLOCKS if n_in * n_out * itemsize >= MATVEC_SPLIT_BYTES and n_out >= MATVEC_BLOCKS else 0
    return 1


def matvec_layout(kernel: jax.Array, n_in: int) -> list[jax.Array] | None:
    """A stacked block weight ``kernel`` [L, *in, *out] (``n_in`` input axes after the layer axis) in the
    matrix-vector layout: transposed to [L, out, in] (inputs and outputs flattened) and cut along ``out`` into
    ``matvec_blocks`` blocks, a list of [L, out_i, in] arrays; None when the matrix is best kept as trained.
    ``matvec`` undoes it."""
    layers, ins, outs = kernel.shape[0], kernel.shape[1:1 + n_in], kernel.shape[1 + n_in:]
    n_i, n_o = math.prod(ins), math.prod(outs)
    blocks = matvec_blocks(n_i, n_o, kernel.dtype.itemsize)
    if not blocks:
        return None
    return jnp.array_split(jnp.swapaxes(kernel.reshape(layers, n_i, n_o), 1, 2), blocks, axis=1)


# The block matrices in the matrix-vector layout at batch 1 on CPU, with how many of their leading axes are inputs;
# None for ``c_proj``, whose inputs are every axis but the output's (two for attention's [H, D, d], one for the MLP's).
MATVEC_INPUTS = {"c_attn": 1, "c_q": 1, "c_kv": 1, "c_fc": 1, "c_proj": None}


def matvec_kernels(module: dict) -> dict:
    """One stacked module's params (``attn`` or ``mlp``) with each weight matrix's ``kernel`` replaced by
    ``kernel_t``, its matvec_layout (the attention output projection [L, H, D, d] has two input axes, the
    MLP's [L, f, d] one)."""
    out = dict(module)
    for name, n_in in MATVEC_INPUTS.items():
        if name in module and "kernel" in module[name]:
            kernel = module[name]["kernel"]
            n_in = n_in or kernel.ndim - 2  # c_proj: every axis but the layer axis and the output axis
            blocks = matvec_layout(kernel, n_in)
            if blocks is not None:
                out[name] = {**{k: v for k, v in module[name].items() if k != "kernel"}, "kernel_t": blocks}
    return out


def matvec(x: jax.Array, blocks: list[jax.Array], n_in: int, out_shape: tuple[int, ...]) -> jax.Array:
    """x [..., *in] (``n_in`` input axes) times one layer's kernel in the matrix-vector layout (``blocks``: a list of
    [out_i, in]) -> [..., *out_shape] in x's dtype: the same product as x times the kernel [*in, *out_shape]."""
    lead = x.shape[:x.ndim - n_in]
    flat = x.reshape(-1, math.prod(x.shape[x.ndim - n_in:]))
    y = jnp.concatenate([jnp.einsum("mi,oi->mo", flat, b.astype(x.dtype)) for b in blocks], axis=-1)
    return y.reshape(*lead, *out_shape)


# ----------------------------------------------------------------------------------------------------------------
# FFN


def mlp(cfg: GPTConfig, p: Params, h: jax.Array) -> jax.Array:
    """The FFN on normalised hidden states [B, T, d] -> [B, T, d], ``p`` one layer's ``mlp`` params.

    Plain: act(h W_fc + b) W_proj + b (``c_fc`` kernel [d, f]). Gated (``ffn_gated``): act(h W_gate) * (h W_up) W_proj,
    the gate and up matrices stored as one ``c_fc`` kernel [d, 2, f] (index 0 the gate) so they are one matmul. The
    down projection is ``c_proj`` kernel [f, d]. A ``kernel_t`` in place of a ``kernel`` is the matrix-vector layout
    (matvec_layout: model/generate.py's batch-1 CPU decoding)."""
    dtype = h.dtype
    act = ACTIVATIONS[cfg.activation]
    if cfg.ffn_gated:
        if "kernel_t" in p["c_fc"]:  # the matrix-vector layout (matvec_layout)
            u = matvec(h, p["c_fc"]["kernel_t"], 1, (2, cfg.d_ffn))
        else:
            u = jnp.einsum("btd,dgf->btgf", h, p["c_fc"]["kernel"].astype(dtype))
        if cfg.mlp_bias:
            u = u + p["c_fc"]["bias"].astype(dtype)
        u = act(u[:, :, 0]) * u[:, :, 1]
    else:
        u = matvec(h, p["c_fc"]["kernel_t"], 1, (cfg.d_ffn,)) if "kernel_t" in p["c_fc"] else \
            h @ p["c_fc"]["kernel"].astype(dtype)
        if cfg.mlp_bias:
            u = u + p["c_fc"]["bias"].astype(dtype)
        u = act(u)
    if "kernel_t" in p["c_proj"]:
        out = matvec(u, p["c_proj"]["kernel_t"], 1, (cfg.d_model,))
    else:
        out = u @ p["c_proj"]["kernel"].astype(dtype)
    if cfg.mlp_bias:
        out = out + p["c_proj"]["bias"].astype(dtype)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Rotary position embeddings (RoPE, Su et al. 2021, arXiv 2104.09864)


def rope_frequencies(cfg: GPTConfig) -> np.ndarray:
    """The inverse frequencies theta^(-2i/r), i < r/2, of the r = ``rotary_dims`` rotated dimensions, float32 [r/2],
    after the config's scaling: ``linear`` divides them by the factor (position interpolation); ``llama3`` is Llama
    3.1's rule (transformers' ``_compute_llama3_parameters``): wavelengths above original_context / low_freq_factor are
    divided by the factor, those below original_context / high_freq_factor kept, the band between interpolated.
    Computed in float64 on the host, then rounded once."""
    r = cfg.rotary_dims
    inv = 1.0 / (cfg.rope_theta ** (np.arange(0, r, 2, dtype=np.float64) / r))
    if cfg.rope_scaling == "linear":
        inv = inv / cfg.rope_scaling_factor
    elif cfg.rope_scaling == "llama3":
        factor, old = cfg.rope_scaling_factor, cfg.rope_original_max_seq_len
        low, high = cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old / high) & (wavelen <= old / low)
        inv = np.where(medium, smoothed, scaled)
    return inv.astype(np.float32)


def rope_angles(cfg: GPTConfig, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(cos, sin) of positions [B, T] times the frequencies: float32 [B, T, r/2]."""
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(rope_frequencies(cfg))
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(cfg: GPTConfig, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate the first ``rotary_dims`` dimensions of every head of x [B, T, heads, D] by the angles (cos, sin
    [B, T, r/2]); the rest pass through. Pairs are (i, i + r/2) for ``rope_style`` half (Llama) and (2i, 2i + 1) for
    interleaved (GPT-J); each pair (a, b) becomes (a cos - b sin, b cos + a sin). cos and sin are cast to x's dtype
    first, as transformers does."""
    r = cfg.rotary_dims
    c, s = (t[:, :, None, :].astype(x.dtype) for t in (cos, sin))
    rot, rest = x[..., :r], x[..., r:]
    if cfg.rope_style == "half":
        a, b = rot[..., : r // 2], rot[..., r // 2:]
        rotated = jnp.concatenate([a * c - b * s, b * c + a * s], axis=-1)
    else:
        a, b = rot[..., 0::2], rot[..., 1::2]
        rotated = jnp.stack([a * c - b * s, b * c + a * s], axis=-1).reshape(rot.shape)
    return rotated if r == x.shape[-1] else jnp.concatenate([rotated, rest], axis=-1)

"""Bytes a weight-streaming training step moves over the host link (host <-> accelerator), by design.

This is the traffic of the runtime's streaming mode (runtime/execution/streaming.py), written once here so that the
cost model that predicts the step (benchmarks/predict.py) and the test that reads the traced step's transfers
(tests/test_streaming_traffic.py) use the same figures. Per step of A accumulation slices, for L layers of P_L
parameters each (P_mm in matmul kernels and biases, P_ln in the norms: 4 d in GPT-2's two LayerNorms) and P_R
parameters outside the layers (token and position embeddings, final norm, an untied head), P = P_R + L P_L, c bytes
per value of the compute dtype (``layer_and_rest_params`` counts them for every family):

A weight travels in the dtype the model computes with, so that the device computes exactly what data mode computes:
matmul kernels and biases in the compute dtype (the host casts them, as data mode's cast would on the device),
norm parameters and the embeddings in float32 (data mode uses them in float32: the norms' affine transform, the
embedding lookup; the head casts its copy on the device). Per slice each layer travels twice, forward and for the
recomputing backward, plus one layer the backward prefetches and never uses (while layer i runs its loop fetches layer
i - 1; the last iteration's fetch is clamped to layer 0); the forward's last prefetch is the backward's first layer.
Gradients leave in float32, per layer as the backward produces them: they equal data mode's float32 gradients.

``host_update=True`` (the backend computes in host memory, where the optimizer state lives): to the device
A (4 P_R + (2 L + 1)(c P_mm + 4 P_ln)), to the host A 4 P. Accumulation, the global norm and AdamW run in host memory:
the optimizer state never crosses the link.

``host_update=False`` (no computation in host memory on this backend): weights travel in float32 and are cast on the
device; accumulating a slice brings the running sum and the slice's gradients to the device and the sum back; the
global norm brings every gradient to the device once; the update brings weights, gradients and both Adam moments to
the device and sends weights and moments back. To the device A F + (A - 1) 8 P + 4 P + 16 P, to the host
A 4 P + (A - 1) 4 P + 12 P, with F = 4 (P_R + (2 L + 1) P_L).
"""

from __future__ import annotations

from wse.shape import as_shape

GRAD_BYTES = 4  # gradients leave the device in float32: they equal data mode's float32 gradients bit for bit
MASTER_BYTES = 4  # float32 master weights and Adam moments


def layer_and_rest_params(shape) -> tuple[int, int, int, int]:
    """(L, matmul parameters per layer, norm parameters per layer, parameters outside the layers) of a model shape
    (GPTConfig or PlanShape). A layer's matmul parameters are its Q, K, V and output projections and its two (gated:
    three) FFN matrices with the biases it has: they travel in the compute dtype. Its norms (two, or one with a
    parallel residual; LayerNorm's gain and bias or RMSNorm's gain) and Q/K norms travel in float32, as do the
    parameters outside the layers: the token table, a learned position table, the final norm and an untied head (and
    its bias)."""
    s = as_shape(shape)
    d, f, q, kv = s.d_model, s.d_ffn, s.q_width, s.kv_width
    inputs = 2 if s.ffn_gated else 1
    matmul = d * q + 2 * d * kv + q * d + (inputs + 1) * d * f
    matmul += ((q + 2 * kv) if s.qkv_bias else 0) + (d if s.attn_out_bias else 0) + ((inputs * f + d) if s.mlp_bias else 0)
    norms = (1 if s.parallel_residual else 2) * s.norm_params + (2 * s.d_head if s.qk_norm else 0)
    V = s.vocab_size
    rest = (V + (s.max_seq_len if s.learned_positions else 0)) * d + s.norm_params
    rest += (0 if s.tied_embeddings else V * d) + (V if s.head_bias else 0)
    return s.n_layers, matmul, norms, rest


def streaming_link_bytes(shape, *, compute_bytes: int, accum: int = 1, host_update: bool = True) -> dict:
    """{"to_device", "to_host", "per_slice_weights", "parameters"}: bytes per training step over the link each way,
    the weight bytes one accumulation slice fetches, and P; bytes per training step of the streaming mode (the module docstring
    gives the formula). ``compute_bytes``: 2 for bfloat16/float16 compute, 4 for float32. Raises ValueError for
    accum < 1."""
    if accum < 1:
        raise ValueError(f"accum must be at least 1, got {accum}")
    L, p_mm, p_ln, p_rest = layer_and_rest_params(shape)
    P = p_rest + L * (p_mm + p_ln)
    if host_update:
        fetched = MASTER_BYTES * p_rest + (2 * L + 1) * (compute_bytes * p_mm + MASTER_BYTES * p_ln)
        to_device = accum * fetched
        to_host = accum * GRAD_BYTES * P
    else:
        fetched = MASTER_BYTES * (p_rest + (2 * L + 1) * (p_mm + p_ln))
        to_device = accum * fetched + (accum - 1) * 2 * GRAD_BYTES * P + GRAD_BYTES * P + 4 * MASTER_BYTES * P
        to_host = accum * GRAD_BYTES * P + (accum - 1) * GRAD_BYTES * P + 3 * MASTER_BYTES * P
    return {"to_device": int(to_device), "to_host": int(to_host), "per_slice_weights": int(fetched),
            "parameters": int(P)}

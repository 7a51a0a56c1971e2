"""A GPT model as the planners see it: a sequence of layers with parameters, FLOPs, fabric traffic and activations.

The simulator reads a model *shape* (wse.shape: the shape fields and the architecture choices model.config's
GPTConfig describes: grouped-query attention, gated FFN, untied embeddings, norms, biases, parallel residual) and
computes everything itself, so wse/ never imports model/. FLOP conventions, per token:

- ``training_flops_per_token`` (this project's, "ours"): dense matmuls, the full-square QK^T and attention-times-V
  matmuls, and the logit matmul; backward is twice forward; no recomputation counted (Megatron's model FLOPs).
- ``paper_training_flops_per_token``: the Cerebras-GPT paper's "algorithmic FLOPs" (arXiv 2304.03208, Appendix F):
  ours, plus the attention matmuls counted a second time and the token embedding as a matmul in the forward and
  weight-gradient passes (4 d V). It reproduces the paper's seven published totals within their rounding.
- 6N (6 x parameters) is model.config's; it ignores attention and counts the embedding table as a dense layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from wse.assumptions import PlanOptions
from wse.errors import PlanError
from wse.grid import Grid
from wse.shape import PlanShape, as_shape, default_seq_len


@dataclass(frozen=True)
class Matmul:
    """One matmul of a layer's forward pass, for the kernel model (wse.wafer.kernels).

    ``heads == 0``: a dense projection, tokens x k by k x n over every token of the micro-batch.
    ``heads > 0``: one small matmul per sequence and head, seq_len x k by k x n: ``kind`` "scores" (QK^T) or
    "values" (probabilities times V).
    """

    k: int
    n: int
    heads: int = 0
    kind: str = "dense"


@dataclass(frozen=True)
class Layer:
    """One unit the planners place.

    params: trainable parameters this layer owns (its optimizer state lives with it).
    replica_params: weights it also needs for compute but does not own (the LM head's copy of the tied embedding).
    flops_per_token: forward FLOPs per token (backward is 2x).
    fabric_values_per_token: sum over its weight matmuls (K x N) of sqrt(K * N): on a region of A cells mapped with
        the matrix's aspect ratio, each cell receives about sqrt(K*N/A) input values and forwards as many partial sums
        per token, so the fabric time scales as this over sqrt(A).
    stash_values_per_token: activations kept from forward for backward.
    input_values_per_token: what a recomputing backward must keep instead (the layer's input).
    matmul_output_values_per_token: the outputs of its weight matmuls (what remat "dots" keeps: the matmuls' N).
    attention_flops_per_token: the part of flops_per_token in the QK^T and attention-times-V matmuls.
    matmuls: its forward matmuls, for the kernel model.
    kv_values_per_token: K and V values a decoder caches per token (attention layers).
    phases: the steps it runs one after another when it has the whole grid to itself (WaferLLM's prefill and decode
        kernels, read from their code): each norm, matmul, softmax, activation and residual add is one, and each ends
        in a grid-wide hand-off that the next must wait for.
    """

    name: str
    params: int
    replica_params: int
    flops_per_token: float
    fabric_values_per_token: float
    stash_values_per_token: float
    input_values_per_token: float
    recomputable: bool
    attention_flops_per_token: float = 0.0
    matmuls: tuple[Matmul, ...] = ()
    kv_values_per_token: int = 0
    phases: int = 0
    matmul_output_values_per_token: float = 0.0

    @property
    def weight_params(self) -> int:
        return self.params + self.replica_params


def _dense(matmuls: tuple[Matmul, ...]) -> tuple[float, float]:
    """(forward FLOPs per token, fabric values per token) of a layer's dense matmuls."""
    dense = [m for m in matmuls if m.heads == 0]
    return 2.0 * sum(m.k * m.n for m in dense), sum(math.sqrt(m.k * m.n) for m in dense)


def _matmul_outputs(matmuls: tuple[Matmul, ...]) -> float:
    """Values per token the dense matmuls of a layer write (their N)."""
    return float(sum(m.n for m in matmuls if m.heads == 0))


def attention_layer(s: PlanShape, seq_len: int, probs_stashed: bool) -> Layer:
    d, kv, q = s.d_model, s.kv_width, s.q_width
    matmuls = (Matmul(d, q), Matmul(d, kv), Matmul(d, kv), Matmul(q, d),
               Matmul(s.d_head, seq_len, s.n_heads, "scores"), Matmul(seq_len, s.d_head, s.n_heads, "values"))
    dense_flops, fabric = _dense(matmuls)
    attention_flops = 2.0 * 2 * seq_len * s.n_heads * s.d_head
    biases = ((q + 2 * kv) if s.qkv_bias else 0) + (d if s.attn_out_bias else 0)
    return Layer(
        name="attention",
        params=d * q + 2 * d * kv + q * d + biases + s.norm_params + (2 * s.d_head if s.qk_norm else 0),
        replica_params=0,
        flops_per_token=dense_flops + attention_flops,
        fabric_values_per_token=fabric,
        # norm input and output, Q, K, V (and with Q/K norms their inputs), probabilities, context before the output
        # projection
        stash_values_per_token=2 * d + 2 * q + 2 * kv + ((q + kv) if s.qk_norm else 0)
        + (s.n_heads * seq_len if probs_stashed else 0),
        input_values_per_token=d, recomputable=True, attention_flops_per_token=attention_flops,
        matmuls=matmuls, kv_values_per_token=2 * kv,
        # norm, Q, K, V, rotary (rotary models), scores, softmax, values, output projection, residual add
        phases=9 + (0 if s.learned_positions else 1),
        matmul_output_values_per_token=_matmul_outputs(matmuls),
    )


def ffn_layer(s: PlanShape) -> Layer:
    """The FFN half of a block; with a parallel residual (GPT-J) it shares the attention's norm, so it owns none."""
    d, f = s.d_model, s.d_ffn
    matmuls = (Matmul(d, f), Matmul(d, f), Matmul(f, d)) if s.ffn_gated else (Matmul(d, f), Matmul(f, d))
    dense_flops, fabric = _dense(matmuls)
    inputs = 2 if s.ffn_gated else 1
    own_norm = not s.parallel_residual
    return Layer(
        name="ffn",
        params=(inputs + 1) * d * f + ((inputs * f + d) if s.mlp_bias else 0) + (s.norm_params if own_norm else 0),
        replica_params=0, flops_per_token=dense_flops, fabric_values_per_token=fabric,
        # norm input and output; GELU input and output (gated: gate and up pre-activations and their product)
        stash_values_per_token=(2 * d if own_norm else d) + (3 if s.ffn_gated else 2) * f,
        input_values_per_token=d, recomputable=True, matmuls=matmuls,
        # norm, each input matrix, activation, output matrix, residual add
        phases=(1 if own_norm else 0) + inputs + 3,
        matmul_output_values_per_token=_matmul_outputs(matmuls),
    )


def model_layers(shape, seq_len: int, *, split_blocks: bool = True, attention_probs_stashed: bool = True) -> list[Layer]:
    """Embedding, each block (as attention and FFN when ``split_blocks``, for finer balance), then final norm + logits.

    ``seq_len`` is the context the attention FLOPs are counted at (and the probabilities stored for).
    """
    s = as_shape(shape)
    if seq_len < 1 or seq_len > s.max_seq_len:
        raise PlanError(f"sequence length {seq_len} is outside 1..{s.max_seq_len} (the model's max_seq_len)")
    d, V = s.d_model, s.vocab_size
    attention, ffn = attention_layer(s, seq_len, attention_probs_stashed), ffn_layer(s)
    table = (V + (s.max_seq_len if s.learned_positions else 0)) * d
    # the token table is tied to the LM head (or the head owns its own); its backward needs only the token ids
    layers = [Layer(name="embedding", params=table, replica_params=0, flops_per_token=0.0, fabric_values_per_token=0.0,
                    stash_values_per_token=0.0, input_values_per_token=0.0, recomputable=False, phases=1)]
    for i in range(s.n_layers):
        if split_blocks:
            layers.append(replace(attention, name=f"block{i}.attention"))
            layers.append(replace(ffn, name=f"block{i}.ffn"))
        else:
            layers.append(Layer(
                name=f"block{i}", params=attention.params + ffn.params, replica_params=0,
                flops_per_token=attention.flops_per_token + ffn.flops_per_token,
                fabric_values_per_token=attention.fabric_values_per_token + ffn.fabric_values_per_token,
                stash_values_per_token=attention.stash_values_per_token + ffn.stash_values_per_token,
                input_values_per_token=d, recomputable=True,
                attention_flops_per_token=attention.attention_flops_per_token,
                matmuls=attention.matmuls + ffn.matmuls, kv_values_per_token=attention.kv_values_per_token,
                phases=attention.phases + ffn.phases,
                matmul_output_values_per_token=(attention.matmul_output_values_per_token
                                                + ffn.matmul_output_values_per_token),
            ))
    head = Matmul(d, V)
    layers.append(Layer(
        name="head",
        # final norm; the logit matrix is the tied embedding, held here as a replica (or owned when untied); GPT-J's
        # head adds a bias of V values
        params=s.norm_params + (0 if s.tied_embeddings else V * d) + (V if s.head_bias else 0),
        replica_params=V * d if s.tied_embeddings else 0,
        flops_per_token=2.0 * d * V,
        fabric_values_per_token=math.sqrt(d * V),
        # final norm input and output; the loss is fused into the logit matmul (labels are known in the forward
        # pass), so the V-wide logits exist only transiently and are not stashed
        stash_values_per_token=2 * d,
        input_values_per_token=d,
        recomputable=False, matmuls=(head,), phases=2,  # final norm, logits
    ))
    return layers


def parameters(layers: list[Layer]) -> int:
    """Trainable parameters (tied head counted once), equal to GPTConfig.parameters."""
    return sum(layer.params for layer in layers)


def forward_flops_per_token(layers: list[Layer]) -> float:
    return float(sum(layer.flops_per_token for layer in layers))


def training_flops_per_token(layers: list[Layer]) -> float:
    """Forward plus backward (2x), no recomputation: the model FLOPs utilisation is measured against ("ours")."""
    return 3.0 * forward_flops_per_token(layers)


def paper_training_flops_per_token(layers: list[Layer], shape) -> float:
    """Training FLOPs per token by the Cerebras-GPT paper's convention (module docstring): ours, plus the attention
    matmuls a second time, plus the token table as a matmul forward and weight-gradient (2 x 2 d V)."""
    s = as_shape(shape)
    attention = sum(layer.attention_flops_per_token for layer in layers)
    return training_flops_per_token(layers) + 3.0 * attention + 4.0 * s.d_model * s.vocab_size


# ----- bytes kept and seconds per layer, shared by the wafer and device planners ----------------------------------
def wafer_bytes_per_sequence(layers, d_model: int, seq_len: int, activation_bytes: int) -> tuple[float, dict]:
    """(working set per sequence, {recompute: kept bytes per sequence per layer}) for ``layers`` at ``seq_len``."""
    act = activation_bytes * seq_len
    stash = np.array([l.stash_values_per_token for l in layers], dtype=float)
    inputs = np.array([l.input_values_per_token if l.recomputable else l.stash_values_per_token for l in layers],
                      dtype=float)
    working = (float(stash.max()) + 2 * d_model) * act
    return working, {False: stash * act, True: inputs * act}


def device_layer_seconds(layers, grid: Grid, tokens: float, options: PlanOptions) -> tuple[np.ndarray, np.ndarray]:
    """(compute, fabric) forward seconds per layer for ``tokens`` tokens on a grid of devices: the layer's FLOPs at
    ``options.compute_efficiency`` of the grid's peak, and its matmuls' operand traffic when the layer is spread over
    the grid's cells (sqrt(K N) values per token per matmul over sqrt(cells) links, ``activation_bytes`` each).
    The device cost model (wse.devices.cost_model) uses the compute term on one device's tokens."""
    compute = np.array([l.flops_per_token for l in layers]) * tokens / (
        grid.cells * grid.flops_per_cell * options.compute_efficiency)
    fabric = np.array([l.fabric_values_per_token for l in layers]) * tokens / (
        math.sqrt(grid.cells) * grid.link_bytes_per_s / options.activation_bytes)
    return compute, fabric


# ----- the batch of a training plan ------------------------------------------------------------------------------
# GPT-3's batch size by model size (Brown et al. 2020, "Language Models are Few-Shot Learners", Table 2.1): tokens per
# step for 125M ... 175B parameters. A model that gives no batch trains at the batch of the row nearest its size (on a
# log scale), the largest (3.2M tokens) from 175B up.
BATCH_RULE = ((125e6, 0.5e6), (350e6, 0.5e6), (760e6, 0.5e6), (1.3e9, 1e6), (2.7e9, 1e6), (6.7e9, 2e6), (13e9, 2e6),
              (175e9, 3.2e6))
BATCH_RULE_SOURCE = "P: GPT-3 (Brown et al. 2020) Table 2.1, batch size by model size"


def published_batch(shape, seq_len: int) -> tuple[int, str]:
    """(sequences, a note saying where they come from) for a model without a batch: the tokens per step of the GPT-3
    model nearest in size (BATCH_RULE), in sequences of ``seq_len``, at least one."""
    n = parameters(model_layers(shape, 1))
    size, tokens = min(BATCH_RULE, key=lambda row: abs(math.log(row[0] / n)))
    seqs = max(1, round(tokens / seq_len))
    size_text = f"{n / 1e12:.3g}T" if n >= 1e12 else f"{n / 1e9:.3g}B"
    return seqs, (f"batch {seqs} x {seq_len} tokens by the published rule for a model of {size_text} parameters "
                  f"({tokens / 1e6:g}M tokens per step, the batch GPT-3 used at {size / 1e9:g}B; Brown et al. 2020, "
                  "Table 2.1): the model gives no batch; --batch-size sets one")


def training_batch(shape, batch_size: int | None, seq_len: int | None) -> tuple[int, int, str | None]:
    """(sequences per step, tokens per sequence, a note when the batch is the published rule's) of a training plan on
    either wing: by default the shape's published batch (``shape.batch_size``), or, for a shape without one, the
    batch of ``published_batch``; 2048 tokens capped at the context. PlanError when the sequence is longer than the
    context or either is not positive."""
    if seq_len is None:
        seq_len = default_seq_len(shape)
    if seq_len > shape.max_seq_len:
        raise PlanError(f"--seq-len {seq_len} exceeds the model's max_seq_len {shape.max_seq_len}; give at most that")
    if seq_len < 1 or (batch_size is not None and batch_size < 1):
        raise PlanError(f"batch size and sequence length must be positive, got {batch_size} and {seq_len}")
    note = None
    if batch_size is None:
        batch_size = getattr(shape, "batch_size", None)
        if batch_size is None:
            batch_size, note = published_batch(shape, seq_len)
    return batch_size, seq_len, note

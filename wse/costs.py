"""A GPT model as the planners see it: a sequence of layers with parameters, FLOPs, fabric traffic and activations.

The simulator takes a model *shape* by duck typing (any object with n_layers, d_model, n_heads, d_head, d_ffn,
vocab_size, max_seq_len; model.config.GPTConfig is one) and computes everything itself, so wse/ never imports model/.
The FLOP convention is the Cerebras-GPT paper's "algorithmic FLOPs": dense matmuls, the full-square QK^T and
attention-times-V matmuls, and the logit matmul; backward is twice forward; no recomputation counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wse.errors import PlanError

SHAPE_FIELDS = ("n_layers", "d_model", "n_heads", "d_head", "d_ffn", "vocab_size", "max_seq_len")


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
    """

    name: str
    params: int
    replica_params: int
    flops_per_token: float
    fabric_values_per_token: float
    stash_values_per_token: float
    input_values_per_token: float
    recomputable: bool

    @property
    def weight_params(self) -> int:
        return self.params + self.replica_params


def check_shape(shape) -> None:
    """Refuse an object that is not a model shape, naming the first missing or bad field."""
    for name in SHAPE_FIELDS:
        value = getattr(shape, name, None)
        if value is None:
            raise PlanError(f"model shape lacks '{name}'; give an object with {', '.join(SHAPE_FIELDS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PlanError(f"model shape field '{name}' must be a positive integer, got {value!r}")
    if shape.n_heads * shape.d_head != shape.d_model:
        raise PlanError(f"model shape: n_heads * d_head ({shape.n_heads} * {shape.d_head}) must equal d_model ({shape.d_model})")


def model_layers(shape, seq_len: int, *, split_blocks: bool = True, attention_probs_stashed: bool = True) -> list[Layer]:
    """Embedding, each block (as attention and FFN when ``split_blocks``, for finer balance), then final norm + logits.

    ``seq_len`` is the context the attention FLOPs are counted at (and the probabilities stored for).
    """
    check_shape(shape)
    if seq_len < 1 or seq_len > shape.max_seq_len:
        raise PlanError(f"sequence length {seq_len} is outside 1..{shape.max_seq_len} (the model's max_seq_len)")
    d, f, h, V, t = shape.d_model, shape.d_ffn, shape.n_heads, shape.vocab_size, seq_len
    probs = h * t if attention_probs_stashed else 0
    attention = Layer(
        name="attention",
        params=4 * d * d + 4 * d + 2 * d,  # Q, K, V, output projection with biases; LayerNorm 1
        replica_params=0,
        flops_per_token=2.0 * 4 * d * d + 2.0 * 2 * t * h * shape.d_head,
        fabric_values_per_token=4 * math.sqrt(d * d),
        # LN input and output, Q, K, V, probabilities, context before the output projection
        stash_values_per_token=6 * d + probs,
        input_values_per_token=d,
        recomputable=True,
    )
    ffn = Layer(
        name="ffn",
        params=2 * d * f + f + d + 2 * d,  # two matrices with biases; LayerNorm 2
        replica_params=0,
        flops_per_token=2.0 * 2 * d * f,
        fabric_values_per_token=2 * math.sqrt(d * f),
        stash_values_per_token=2 * d + 2 * f,  # LN input and output, GELU input and output
        input_values_per_token=d,
        recomputable=True,
    )
    layers = [Layer(
        name="embedding",
        params=(V + shape.max_seq_len) * d,  # token and position tables; the token table is tied to the LM head
        replica_params=0,
        flops_per_token=0.0,  # a lookup
        fabric_values_per_token=0.0,
        stash_values_per_token=0.0,  # its backward needs only the token ids
        input_values_per_token=0.0,
        recomputable=False,
    )]
    for i in range(shape.n_layers):
        if split_blocks:
            layers.append(_named(attention, f"block{i}.attention"))
            layers.append(_named(ffn, f"block{i}.ffn"))
        else:
            layers.append(Layer(
                name=f"block{i}", params=attention.params + ffn.params, replica_params=0,
                flops_per_token=attention.flops_per_token + ffn.flops_per_token,
                fabric_values_per_token=attention.fabric_values_per_token + ffn.fabric_values_per_token,
                stash_values_per_token=attention.stash_values_per_token + ffn.stash_values_per_token,
                input_values_per_token=d, recomputable=True,
            ))
    layers.append(Layer(
        name="head",
        params=2 * d,  # final LayerNorm; the logit matrix is the tied embedding, held here as a replica
        replica_params=V * d,
        flops_per_token=2.0 * d * V,
        fabric_values_per_token=math.sqrt(d * V),
        # final LN input and output; the loss is fused into the logit matmul (labels are known in the forward pass),
        # so the V-wide logits exist only transiently and are not stashed
        stash_values_per_token=2 * d,
        input_values_per_token=d,
        recomputable=False,
    ))
    return layers


def _named(layer: Layer, name: str) -> Layer:
    return Layer(name, layer.params, layer.replica_params, layer.flops_per_token, layer.fabric_values_per_token,
                 layer.stash_values_per_token, layer.input_values_per_token, layer.recomputable)


def parameters(layers: list[Layer]) -> int:
    """Trainable parameters (tied head counted once), equal to GPTConfig.parameters."""
    return sum(layer.params for layer in layers)


def forward_flops_per_token(layers: list[Layer]) -> float:
    return float(sum(layer.flops_per_token for layer in layers))


def training_flops_per_token(layers: list[Layer]) -> float:
    """Forward plus backward (2x), no recomputation: the model FLOPs utilisation is measured against."""
    return 3.0 * forward_flops_per_token(layers)

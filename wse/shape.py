"""A model shape as the planners read it: the GPT-2 fields every model has, and a few planning-only extras.

The simulator takes a shape by duck typing (any object with n_layers, d_model, n_heads, d_head, d_ffn, vocab_size,
max_seq_len; model.config.GPTConfig is one), so wse/ never imports model/. Published models outside the Cerebras-GPT
family (the Llama 3.1 models Cerebras serves) differ in ways that change the arithmetic, so a shape may also declare,
for planning only (the JAX model stays GPT-2 style):

- ``n_kv_heads``: grouped-query attention; K and V have this many heads (default ``n_heads``).
- ``ffn_gated``: a gated FFN (SwiGLU), three d x d_ffn matrices instead of two (default False).
- ``tied_embeddings``: the LM head reuses the token table (default True); untied, the head owns V x d parameters.
- ``learned_positions``: a learned position table of max_seq_len x d (default True; False for rotary positions).
- ``biases``: biases on every projection and LayerNorm with gain and bias (default True); False is Llama's
  bias-free projections and RMSNorm (gain only).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from wse.errors import PlanError

SHAPE_FIELDS = ("n_layers", "d_model", "n_heads", "d_head", "d_ffn", "vocab_size", "max_seq_len")
PLANNING_FIELDS = ("n_kv_heads", "ffn_gated", "tied_embeddings", "learned_positions", "biases")
DEFAULT_SEQ_LEN = 2048  # tokens per sequence Cerebras-GPT was trained with


@dataclass(frozen=True)
class PlanShape:
    """One model's shape with every planning-only field resolved (``n_kv_heads`` is never None here)."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_ffn: int
    vocab_size: int
    max_seq_len: int
    n_kv_heads: int
    ffn_gated: bool = False
    tied_embeddings: bool = True
    learned_positions: bool = True
    biases: bool = True
    batch_size: int | None = None

    @property
    def kv_width(self) -> int:
        """Values per token in K (and in V): n_kv_heads x d_head."""
        return self.n_kv_heads * self.d_head

    @property
    def norm_params(self) -> int:
        """Parameters of one norm: LayerNorm's gain and bias, or RMSNorm's gain."""
        return (2 if self.biases else 1) * self.d_model


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


def as_shape(shape) -> PlanShape:
    """``shape`` (any object with the GPT-2 fields, planning extras optional) as a checked PlanShape."""
    if isinstance(shape, PlanShape):
        return shape
    check_shape(shape)
    kv = getattr(shape, "n_kv_heads", None) or shape.n_heads
    if isinstance(kv, bool) or not isinstance(kv, int) or kv < 1 or shape.n_heads % kv:
        raise PlanError(f"model shape: n_kv_heads must divide n_heads ({shape.n_heads}), got {kv!r}")
    flags = {}
    for name in PLANNING_FIELDS[1:]:
        default = next(f.default for f in fields(PlanShape) if f.name == name)
        value = getattr(shape, name, default)
        if not isinstance(value, bool):
            raise PlanError(f"model shape field '{name}' must be true or false, got {value!r}")
        flags[name] = value
    return PlanShape(name=str(getattr(shape, "name", "model")), n_layers=shape.n_layers, d_model=shape.d_model,
                     n_heads=shape.n_heads, d_head=shape.d_head, d_ffn=shape.d_ffn, vocab_size=shape.vocab_size,
                     max_seq_len=shape.max_seq_len, n_kv_heads=kv, batch_size=getattr(shape, "batch_size", None),
                     **flags)


def default_seq_len(shape) -> int:
    """2048 tokens (how Cerebras-GPT was trained), capped at the model's context."""
    return min(DEFAULT_SEQ_LEN, shape.max_seq_len)


def training_batch(shape, batch_size: int | None, seq_len: int | None) -> tuple[int, int]:
    """(sequences per step, tokens per sequence) of a training plan on either wing: by default the shape's published
    batch (``shape.batch_size``) and 2048 tokens capped at its context. PlanError when the shape has no batch and none
    is given, the sequence is longer than the context, or either is not positive."""
    if batch_size is None:
        batch_size = getattr(shape, "batch_size", None)
        if batch_size is None:
            raise PlanError("no batch size: the model shape has no published batch_size; give --batch-size")
    if seq_len is None:
        seq_len = default_seq_len(shape)
    if seq_len > shape.max_seq_len:
        raise PlanError(f"--seq-len {seq_len} exceeds the model's max_seq_len {shape.max_seq_len}; give at most that")
    if batch_size < 1 or seq_len < 1:
        raise PlanError(f"batch size and sequence length must be positive, got {batch_size} and {seq_len}")
    return batch_size, seq_len

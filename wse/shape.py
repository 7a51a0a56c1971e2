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
- ``parallel_residual``: attention and FFN read the same normed input, one norm per block (GPT-J; default False).
- ``head_bias``: the LM head adds a bias of V values (GPT-J; default False). A config that calls it
  ``lm_head_bias`` (model.config) is read too.

``n_heads * d_head`` may differ from ``d_model`` (Qwen3-32B: 64 x 128 query heads on a 5120-wide model): Q and the
attention output are n_heads x d_head wide, K and V n_kv_heads x d_head, and every count follows those widths. Rotary
positions (``learned_positions`` False), partial or whole, add no parameters and no matmul FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from wse.errors import PlanError

SHAPE_FIELDS = ("n_layers", "d_model", "n_heads", "d_head", "d_ffn", "vocab_size", "max_seq_len")
PLANNING_FIELDS = ("n_kv_heads", "ffn_gated", "tied_embeddings", "learned_positions", "biases", "parallel_residual",
                   "head_bias")
FIELD_ALIASES = {"head_bias": "lm_head_bias"}  # model.config's name for the same flag
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
    parallel_residual: bool = False
    head_bias: bool = False
    batch_size: int | None = None

    @property
    def kv_width(self) -> int:
        """Values per token in K (and in V): n_kv_heads x d_head."""
        return self.n_kv_heads * self.d_head

    @property
    def q_width(self) -> int:
        """Values per token in Q and in the attention output: n_heads x d_head (need not equal d_model)."""
        return self.n_heads * self.d_head

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
        value = getattr(shape, name, getattr(shape, FIELD_ALIASES.get(name, name), default))
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

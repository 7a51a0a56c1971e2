"""A model shape as the planners read it: the shape fields every model has and the architecture choices that
change the arithmetic.

The simulator takes a shape by duck typing (any object with n_layers, d_model, n_heads, d_head, d_ffn, vocab_size,
max_seq_len), so wse/ never imports model/. model.config.GPTConfig is one such object, and the one description of a
model: every architecture field below is a GPTConfig field (or property) of the same name, so `wse plan` costs the
model the runtime trains. A shape without them is a GPT-2-style model (Cerebras-GPT):

- ``n_kv_heads``: grouped-query attention; K and V have this many heads (default ``n_heads``).
- ``ffn_gated``: a gated FFN (SwiGLU), three d x d_ffn matrices instead of two (default False).
- ``tied_embeddings``: the LM head reuses the token table (default True); untied, the head owns V x d parameters.
- ``learned_positions``: a learned position table of max_seq_len x d (default True; False for rotary positions).
- ``norm``: ``layernorm`` (gain and bias) or ``rmsnorm`` (gain only; Llama).
- ``qkv_bias``, ``attn_out_bias``, ``mlp_bias``: biases on the Q/K/V, attention output and FFN projections
  (default True: GPT-2; Llama has none, Qwen2 Q/K/V only, GPT-J the FFN only).
- ``qk_norm``: an RMSNorm gain of d_head values on each query and key head (Qwen3; default False).
- ``parallel_residual``: attention and FFN read the same normed input, one norm per block (GPT-J; default False).
- ``head_bias``: the LM head adds a bias of V values (GPT-J; default False). A config that calls it
  ``lm_head_bias`` (model.config) is read too.

``biases`` (all three projection biases and LayerNorm) is the coarse flag planning-only shapes once used instead of
``norm`` and the three bias fields; a shape that gives it and not them is read that way. ``n_heads * d_head`` may
differ from ``d_model`` (Qwen3-32B: 64 x 128 query heads on a 5120-wide model): Q and the attention output are
n_heads x d_head wide, K and V n_kv_heads x d_head, and every count follows those widths. Rotary positions
(``learned_positions`` False), partial or whole, add no parameters and no matmul FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from wse.errors import PlanError

SHAPE_FIELDS = ("n_layers", "d_model", "n_heads", "d_head", "d_ffn", "vocab_size", "max_seq_len")
FLAG_FIELDS = ("ffn_gated", "tied_embeddings", "learned_positions", "qkv_bias", "attn_out_bias", "mlp_bias",
               "qk_norm", "parallel_residual", "head_bias")
ARCHITECTURE_FIELDS = ("n_kv_heads", "norm") + FLAG_FIELDS
FIELD_ALIASES = {"head_bias": "lm_head_bias"}  # model.config's name for the same flag
NORMS = ("layernorm", "rmsnorm")
BIAS_FIELDS = ("qkv_bias", "attn_out_bias", "mlp_bias")
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
    norm: str = "layernorm"
    qkv_bias: bool = True
    attn_out_bias: bool = True
    mlp_bias: bool = True
    qk_norm: bool = False
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
        return (2 if self.norm == "layernorm" else 1) * self.d_model

    @property
    def biases(self) -> bool:
        """Biases on every projection and LayerNorms (GPT-2's choices)."""
        return self.qkv_bias and self.attn_out_bias and self.mlp_bias and self.norm == "layernorm"


def check_shape(shape) -> None:
    """Refuse an object that is not a model shape, naming the first missing or bad field."""
    for name in SHAPE_FIELDS:
        value = getattr(shape, name, None)
        if value is None:
            raise PlanError(f"model shape lacks '{name}'; give an object with {', '.join(SHAPE_FIELDS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PlanError(f"model shape field '{name}' must be a positive integer, got {value!r}")


def as_shape(shape) -> PlanShape:
    """``shape`` (any object with the shape fields, architecture fields optional) as a checked PlanShape."""
    if isinstance(shape, PlanShape):
        return shape
    check_shape(shape)
    kv = getattr(shape, "n_kv_heads", None) or shape.n_heads
    if isinstance(kv, bool) or not isinstance(kv, int) or kv < 1 or shape.n_heads % kv:
        raise PlanError(f"model shape: n_kv_heads must divide n_heads ({shape.n_heads}), got {kv!r}")
    defaults = {f.name: f.default for f in fields(PlanShape)}
    coarse = getattr(shape, "biases", None)
    if coarse is not None and not hasattr(shape, "norm"):  # the coarse flag alone: GPT-2's choices or Llama's
        defaults.update({name: coarse for name in BIAS_FIELDS}, norm="layernorm" if coarse else "rmsnorm")
    arch = {}
    for name in FLAG_FIELDS:
        value = getattr(shape, name, getattr(shape, FIELD_ALIASES.get(name, name), defaults[name]))
        if not isinstance(value, bool):
            raise PlanError(f"model shape field '{name}' must be true or false, got {value!r}")
        arch[name] = value
    arch["norm"] = getattr(shape, "norm", defaults["norm"])
    if arch["norm"] not in NORMS:
        raise PlanError(f"model shape field 'norm' must be one of {', '.join(NORMS)}, got {arch['norm']!r}")
    return PlanShape(name=str(getattr(shape, "name", "model")), n_layers=shape.n_layers, d_model=shape.d_model,
                     n_heads=shape.n_heads, d_head=shape.d_head, d_ffn=shape.d_ffn, vocab_size=shape.vocab_size,
                     max_seq_len=shape.max_seq_len, n_kv_heads=kv, batch_size=getattr(shape, "batch_size", None),
                     **arch)


def default_seq_len(shape) -> int:
    """2048 tokens (how Cerebras-GPT was trained), capped at the model's context."""
    return min(DEFAULT_SEQ_LEN, shape.max_seq_len)

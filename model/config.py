"""Model configuration: one description of a decoder-only transformer, its parameter and FLOP counts, and the lookup
of a model by preset name or file.

Pure Python (pydantic for validation, no JAX), so the simulator, the command line and the planners can use it
without paying for a JAX import. ``GPTConfig`` describes Cerebras-GPT (its defaults: GPT-2's architecture, exact
GELU, tied embeddings, learned positions) and, through its architecture fields, the Llama, Mistral, Qwen2/3 and GPT-J
families. The catalog of named shapes is model/presets.py; Cerebras ModelZoo files are read by model/modelzoo.py.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.errors import ModelConfigError, first_line
from model.presets import (ALL_PRESETS, EOT_TOKEN, GPT2_VOCAB_SIZE, PRESETS, PUBLISHED_PRESETS, matching_preset)

__all__ = ["EOT_TOKEN", "GPT2_VOCAB_SIZE", "PRESETS", "PUBLISHED_PRESETS", "GPTConfig", "ModelConfigError",
           "build_config", "get_config", "matching_preset"]


class GPTConfig(BaseModel):
    """The shape, architecture and recipe of one decoder-only transformer.

    The shape fields (``n_layers``, ``d_model``, ``n_heads``, ``d_head``, ``d_ffn``, ``vocab_size``, ``max_seq_len``)
    are named in nanoGPT/GPT-2 spirit but spelled out. The architecture fields default to Cerebras-GPT's choices, so a
    config that sets none of them is today's model bit for bit. ``n_kv_heads``, ``ffn_gated`` and
    ``tied_embeddings`` carry the names the simulator's planner reads (wse/shape.py), as do the properties
    ``learned_positions`` and ``biases``. ``batch_size``, ``learning_rate``, ``lr_decay`` and ``adam_eps`` are the
    published training recipe of the preset; the runtime uses them as defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    vocab_size: int = GPT2_VOCAB_SIZE
    max_seq_len: int = 2048
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int  # width of each query/key/value head; n_heads * d_head may differ from d_model (Qwen3)
    d_ffn: int
    layer_norm_eps: float = 1e-5  # eps of every norm (LayerNorm or RMSNorm, and the Q/K norms)
    # ----- architecture -----------------------------------------------------------------------------------------
    positions: Literal["learned", "rotary"] = Field(
        "learned", description="learned: a max_seq_len x d_model table added to the token embeddings (GPT-2); "
        "rotary: RoPE on queries and keys (Llama, GPT-J)")
    rope_theta: float = Field(10000.0, description="RoPE base (rotary only)")
    rotary_dim: int | None = Field(
        None, description="dimensions of each head that RoPE rotates, even; None = all of d_head (GPT-J: 64 of 256)")
    rope_style: Literal["half", "interleaved"] = Field(
        "half", description="which dimensions RoPE pairs: half = (i, i + r/2) as Llama/NeoX, interleaved = (2i, 2i+1) "
        "as GPT-J and Meta's original Llama")
    rope_scaling: Literal["none", "linear", "llama3"] = Field(
        "none", description="RoPE frequency scaling for long context: linear divides every frequency by "
        "rope_scaling_factor; llama3 is Llama 3.1's banded rule")
    rope_scaling_factor: float = Field(1.0, description="linear and llama3 scaling factor")
    rope_low_freq_factor: float = Field(1.0, description="llama3 scaling: low-frequency band factor")
    rope_high_freq_factor: float = Field(4.0, description="llama3 scaling: high-frequency band factor")
    rope_original_max_seq_len: int = Field(8192, description="llama3 scaling: the pre-training context")
    norm: Literal["layernorm", "rmsnorm"] = Field("layernorm", description="LayerNorm (gain and bias) or RMSNorm (gain)")
    activation: Literal["gelu", "gelu_tanh", "silu"] = Field(
        "gelu", description="FFN nonlinearity: exact erf GELU (Cerebras-GPT), tanh GELU (GPT-2's and GPT-J's "
        "gelu_new), SiLU (with ffn_gated: SwiGLU)")
    ffn_gated: bool = Field(False, description="gated FFN: act(x W_gate) * (x W_up) W_down, three d x d_ffn matrices")
    n_kv_heads: int | None = Field(
        None, description="key/value heads for grouped-query attention (dividing n_heads; 1 = multi-query); "
        "None = n_heads")
    qk_norm: bool = Field(False, description="RMSNorm over each query and key head before RoPE (Qwen3)")
    tied_embeddings: bool = Field(True, description="the LM head is the token embedding (else its own V x d matrix)")
    qkv_bias: bool = Field(True, description="biases on the query, key and value projections")
    attn_out_bias: bool = Field(True, description="a bias on the attention output projection")
    mlp_bias: bool = Field(True, description="biases on the FFN projections")
    lm_head_bias: bool = Field(False, description="a bias on the output logits (GPT-J)")
    parallel_residual: bool = Field(
        False, description="x + attn(ln_1(x)) + mlp(ln_1(x)) with one norm (GPT-J), instead of the sequential "
        "x + attn(ln_1(x)), then + mlp(ln_2(.))")
    # Standard parametrisation: N(0, 0.02) everywhere, output projections N(0, 0.02 / sqrt(2 * n_layers)) (GPT-2).
    init_std: float = 0.02
    # Maximal-update parametrisation (Cerebras-GPT-muP): width multiplier d_model / mup_base_width.
    mup: bool = False
    mup_base_width: int = 256
    mup_embedding_multiplier: float = 10.0
    # Published training recipe (defaults for the runtime).
    batch_size: int = 8
    learning_rate: float = 6e-4
    lr_decay: Literal["linear", "cosine"] = "linear"
    adam_eps: float = 1e-8

    @model_validator(mode="after")
    def _check_shape(self) -> "GPTConfig":
        for field in ("vocab_size", "max_seq_len", "n_layers", "d_model", "n_heads", "d_head", "d_ffn", "batch_size"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
        kv = self.n_kv_heads
        if kv is not None and (kv <= 0 or self.n_heads % kv):
            raise ValueError(f"n_kv_heads ({kv}) must divide n_heads ({self.n_heads})")
        if self.mup and self.mup_base_width <= 0:
            raise ValueError("mup_base_width must be positive")
        if self.mup and not self.tied_embeddings:
            raise ValueError("mup needs tied_embeddings: its 1/m_w output multiplier is defined on the tied unembedding")
        if self.positions == "rotary":
            self._check_rotary()
        return self

    def _check_rotary(self) -> None:
        r = self.rotary_dims
        if r <= 0 or r % 2 or r > self.d_head:
            raise ValueError(f"rotary_dim must be even and between 2 and d_head ({self.d_head}), got {r}")
        if self.rope_theta <= 0:
            raise ValueError(f"rope_theta must be positive, got {self.rope_theta}")
        if self.rope_scaling != "none" and self.rope_scaling_factor <= 0:
            raise ValueError(f"rope_scaling_factor must be positive, got {self.rope_scaling_factor}")
        if self.rope_scaling == "llama3" and not 0 < self.rope_low_freq_factor < self.rope_high_freq_factor:
            raise ValueError("llama3 rope scaling needs 0 < rope_low_freq_factor < rope_high_freq_factor")

    # ----- derived architecture facts ---------------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        """Key/value heads: ``n_kv_heads``, or ``n_heads`` when unset."""
        return self.n_kv_heads or self.n_heads

    @property
    def rotary_dims(self) -> int:
        """Dimensions of each head RoPE rotates (``rotary_dim``, or all of ``d_head``)."""
        return self.d_head if self.rotary_dim is None else self.rotary_dim

    @property
    def learned_positions(self) -> bool:
        """A learned position table (the planner's name for ``positions == "learned"``)."""
        return self.positions == "learned"

    @property
    def biases(self) -> bool:
        """Biases on every projection and LayerNorm with gain and bias (GPT-2's choices); the planner reads ``norm``
        and the ``*_bias`` fields themselves (wse/shape.py)."""
        return self.qkv_bias and self.attn_out_bias and self.mlp_bias and self.norm == "layernorm"

    # ----- muP ------------------------------------------------------------------------------------------------
    @property
    def width_multiplier(self) -> float:
        """m_w = d_model / base width under muP; 1 under standard parametrisation."""
        return self.d_model / self.mup_base_width if self.mup else 1.0

    # ----- counts ---------------------------------------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters by part: ``embedding`` (tokens, and positions when learned), ``attention`` and
        ``mlp`` (all layers, biases and Q/K norms included), ``norms`` (per-layer and final), ``head`` (an untied
        LM head and/or its bias; 0 when tied)."""
        d, f, L = self.d_model, self.d_ffn, self.n_layers
        q, kv = self.n_heads * self.d_head, self.kv_heads * self.d_head
        norm = (2 if self.norm == "layernorm" else 1) * d
        attn = 2 * d * q + 2 * d * kv + (q + 2 * kv if self.qkv_bias else 0) + (d if self.attn_out_bias else 0)
        attn += 2 * self.d_head if self.qk_norm else 0
        inputs = 2 if self.ffn_gated else 1
        mlp = (inputs + 1) * d * f + (inputs * f + d if self.mlp_bias else 0)
        return {
            "embedding": (self.vocab_size + (self.max_seq_len if self.learned_positions else 0)) * d,
            "attention": L * attn,
            "mlp": L * mlp,
            "norms": (L * (1 if self.parallel_residual else 2) + 1) * norm,
            "head": (0 if self.tied_embeddings else self.vocab_size * d) + (self.vocab_size if self.lm_head_bias else 0),
        }

    @property
    def parameters(self) -> int:
        """Trainable parameters, a tied LM head counted once (Cerebras-GPT: V*d + T*d + L*(12 d^2 + 13 d) + 2 d)."""
        return sum(self.parameter_counts().values())

    @property
    def non_embedding_parameters(self) -> int:
        """Parameters outside the token and position tables and an untied LM head (Kaplan et al.'s N)."""
        counts = self.parameter_counts()
        return self.parameters - counts["embedding"] - counts["head"]

    def flops_per_token_6n(self) -> float:
        """Training FLOPs per token by the 6N rule (forward 2N + backward 4N)."""
        return 6.0 * self.parameters

    def _dense_macs(self) -> int:
        """Multiply-accumulates per token of one layer's weight matmuls: Q, K, V, output, and the FFN's two (three
        when gated) matrices."""
        d, q, kv = self.d_model, self.n_heads * self.d_head, self.kv_heads * self.d_head
        return 2 * d * q + 2 * d * kv + (3 if self.ffn_gated else 2) * d * self.d_ffn

    def forward_flops_per_token(self, seq_len: int | None = None) -> float:
        """Algorithmic forward FLOPs per token: dense matmuls, QK^T and attention-times-V at context ``seq_len``
        (counted as the paper does, for the full square, not the causal half; per query head, so grouped K/V heads
        do not change it), and the logit matmul."""
        t = self.max_seq_len if seq_len is None else seq_len
        attention = 2 * 2 * t * self.n_heads * self.d_head
        logits = 2 * self.d_model * self.vocab_size
        return float(self.n_layers * (2 * self._dense_macs() + attention) + logits)

    def flops_per_token_algorithmic(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (3x forward, no recomputation): Megatron's model-FLOPs formula with the full-square
        attention (72 L d^2 + 12 L t d + 6 d V for GPT-2 shapes with d_ffn = 4d). This project's own convention."""
        return 3.0 * self.forward_flops_per_token(seq_len)

    def flops_per_token_paper(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token by the Cerebras-GPT paper's convention (arXiv 2304.03208, Appendix F, "algorithmic
        FLOPs"): the dense matmuls and the logit matmul forward + backward (3x), the token embedding counted as a
        matmul in the forward and weight-gradient passes only ("embedding layers do not need to calculate a delta
        gradient": 2 x 2 d V), and the QK^T and softmax(QK^T)V matmuls at twice this project's count (24 t d per layer
        over training). That breakdown is the one, among those tried, that reproduces all seven totals the paper and
        the model cards publish (2.6e18 ... 2.3e22) within their two-digit rounding; the appendix's own text was
        read only in excerpts. Biases, norms, softmax and the position table are not counted."""
        t = self.max_seq_len if seq_len is None else seq_len
        d, V = self.d_model, self.vocab_size
        attention = 2 * 3 * 2 * 2 * t * self.n_heads * self.d_head
        return float(self.n_layers * (3 * 2 * self._dense_macs() + attention) + 3 * 2 * d * V + 2 * 2 * d * V)

    @property
    def chinchilla_tokens(self) -> int:
        """Compute-optimal training tokens: 20 per parameter, as every Cerebras-GPT size was trained."""
        return 20 * self.parameters

    def architecture_summary(self) -> dict:
        """The architecture choices in one flat dict (what `wse info` shows beside the shape)."""
        out = {k: getattr(self, k) for k in ("positions", "norm", "activation", "ffn_gated", "qk_norm",
                                             "tied_embeddings", "qkv_bias", "attn_out_bias", "mlp_bias",
                                             "lm_head_bias", "parallel_residual")}
        out["n_kv_heads"] = self.kv_heads
        if self.positions == "rotary":
            out.update(rope_theta=self.rope_theta, rotary_dim=self.rotary_dims, rope_style=self.rope_style,
                       rope_scaling=self.rope_scaling)
        return out

    def summary(self) -> dict:
        """The fields `wse info --json` prints."""
        tokens = self.chinchilla_tokens
        return {
            "name": self.name,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "d_head": self.d_head,
            "d_ffn": self.d_ffn,
            "vocab_size": self.vocab_size,
            "max_seq_len": self.max_seq_len,
            "mup": self.mup,
            **self.architecture_summary(),
            "parameters": self.parameters,
            "flops_per_token_6n": self.flops_per_token_6n(),
            "flops_per_token_algorithmic": self.flops_per_token_algorithmic(),
            "chinchilla_tokens": tokens,
            "train_flops_6nd": self.flops_per_token_6n() * tokens,
            "train_flops_algorithmic": self.flops_per_token_algorithmic() * tokens,
        }

    def replace(self, **changes) -> "GPTConfig":
        """A copy with some fields changed, validated again."""
        return build_config({**self.model_dump(), **changes})


def _one_line(err: pydantic.ValidationError, valid_fields) -> str:
    """Turn pydantic's multi-line report into one line that names the field (and the closest valid one)."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "config"
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(e["loc"][-1]), list(valid_fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            parts.append(f"unknown field '{loc}'{hint}")
        elif e["type"] == "missing":
            parts.append(f"missing field '{loc}'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if e["loc"] else msg)
    return "; ".join(parts)


def build_config(fields: dict) -> GPTConfig:
    """Validate a dict of fields into a GPTConfig, raising ModelConfigError with a one-line message."""
    try:
        return GPTConfig(**fields)
    except pydantic.ValidationError as err:
        raise ModelConfigError(f"invalid model config: {_one_line(err, GPTConfig.model_fields)}") from None
    except TypeError as err:
        raise ModelConfigError(f"invalid model config: {err}") from None


def get_config(name_or_path: str | Path, **overrides) -> GPTConfig:
    """A preset by name (``111M``, ``1.3B-mup``, ``tiny``, ``llama-tiny``, ``llama3.1-8b`` ...) or a model file (YAML
    or JSON with GPTConfig fields).

    A file may name a ``preset`` to start from and override some of its fields. A Cerebras ModelZoo config (either
    layout, model/modelzoo.py) is read as its model section; ModelConfigError names a field it cannot run.
    """
    key = str(name_or_path)
    if key in ALL_PRESETS:
        return build_config({**ALL_PRESETS[key], **overrides})
    path = Path(key)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise ModelConfigError(f"model file '{path}' does not exist; give a preset ({', '.join(ALL_PRESETS)}) "
                                   "or a YAML/JSON file")
        fields = _read_model_file(path)
        from model.modelzoo import is_modelzoo, read_modelzoo  # a reader of files, not of this catalog

        if is_modelzoo(fields):  # a Cerebras ModelZoo config: its model section (model/modelzoo.py)
            return build_config({**read_modelzoo(fields, str(path), path.stem).model, **overrides})
        base = {}
        if "preset" in fields:
            preset = fields.pop("preset")
            if preset not in ALL_PRESETS:
                raise ModelConfigError(unknown_model(str(preset)))
            base = dict(ALL_PRESETS[preset])
        fields.setdefault("name", path.stem)
        return build_config({**base, **fields, **overrides})
    raise ModelConfigError(unknown_model(key))


def _read_model_file(path: Path) -> dict:
    from model.yaml_text import YAMLTextError, load, typed

    text = path.read_text(encoding="utf-8")
    texts = None
    try:
        if path.suffix.lower() == ".json":
            fields = json.loads(text)
        else:
            fields, texts = load(text)
    except YAMLTextError as err:  # a key given twice: PyYAML would keep the last without a word
        raise ModelConfigError(f"model file '{path}': {err}") from None
    except Exception as err:  # noqa: BLE001 - any parse error is the user's file
        raise ModelConfigError(f"model file '{path}' is not valid YAML/JSON: {first_line(err)}") from None
    if not isinstance(fields, dict):
        raise ModelConfigError(f"model file '{path}' must hold a mapping of GPTConfig fields")
    if texts is not None:
        fields = typed(fields, texts, GPTConfig)  # a name stays as written (YAML would make 0755 the number 493)
    return fields


def unknown_model(key: str, names=None, also: str = "") -> str:
    """The refusal of an unknown model name: the closest of ``names`` (default: the presets) and all of them, plus
    ``also`` (other inputs the caller takes), or a model file."""
    names = list(ALL_PRESETS if names is None else names)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    listed = ", ".join(names) + (f", {also}" if also else "")
    return f"unknown model '{key}'{hint}; give one of {listed} or a YAML/JSON model file"

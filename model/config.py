"""Model configuration: the Cerebras-GPT presets, their shapes, parameter counts and FLOP counts.

Pure Python (pydantic for validation, no JAX), so the simulator, the command line and the planners can use it
without paying for a JAX import. The figures come from ``shared/reference/cerebras-gpt.md`` (the Cerebras-GPT paper,
the ModelZoo configs and the HuggingFace model cards).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, model_validator

from model.errors import first_line

GPT2_VOCAB_SIZE = 50257
EOT_TOKEN = 50256


class ModelConfigError(ValueError):
    """A model config the user gave is wrong (unknown preset, bad field, inconsistent shape)."""


class GPTConfig(BaseModel):
    """The shape and recipe of one GPT model of the Cerebras-GPT family.

    Fields are named as in nanoGPT/GPT-2 spirit but spelled out, so that a YAML/JSON model file reads plainly.
    ``batch_size``, ``learning_rate``, ``lr_decay`` and ``adam_eps`` are the published training recipe of the preset;
    the runtime uses them as defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    vocab_size: int = GPT2_VOCAB_SIZE
    max_seq_len: int = 2048
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_ffn: int
    layer_norm_eps: float = 1e-5
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
        if self.n_heads * self.d_head != self.d_model:
            raise ValueError(
                f"n_heads * d_head must equal d_model ({self.n_heads} * {self.d_head} != {self.d_model})"
            )
        if self.mup and self.mup_base_width <= 0:
            raise ValueError("mup_base_width must be positive")
        return self

    # ----- muP ------------------------------------------------------------------------------------------------
    @property
    def width_multiplier(self) -> float:
        """m_w = d_model / base width under muP; 1 under standard parametrisation."""
        return self.d_model / self.mup_base_width if self.mup else 1.0

    # ----- counts ---------------------------------------------------------------------------------------------
    @property
    def parameters(self) -> int:
        """Trainable parameters, tied LM head counted once: V*d + T*d + L*(attn + ffn + 2 LN) + final LN."""
        d, f = self.d_model, self.d_ffn
        attn = 4 * d * d + 4 * d  # Q, K, V, output projection with biases
        ffn = 2 * d * f + f + d
        layer = attn + ffn + 4 * d  # two LayerNorms (gain + bias)
        return self.vocab_size * d + self.max_seq_len * d + self.n_layers * layer + 2 * d

    @property
    def non_embedding_parameters(self) -> int:
        return self.parameters - (self.vocab_size + self.max_seq_len) * self.d_model

    def flops_per_token_6n(self) -> float:
        """Training FLOPs per token by the 6N rule (forward 2N + backward 4N)."""
        return 6.0 * self.parameters

    def forward_flops_per_token(self, seq_len: int | None = None) -> float:
        """Algorithmic forward FLOPs per token: dense matmuls, QK^T and attention-times-V at context ``seq_len``
        (counted as the paper does, for the full square, not the causal half), and the logit matmul."""
        t = self.max_seq_len if seq_len is None else seq_len
        d, f, L = self.d_model, self.d_ffn, self.n_layers
        dense = 2 * (4 * d * d + 2 * d * f)
        attention = 2 * 2 * t * self.n_heads * self.d_head
        logits = 2 * d * self.vocab_size
        return float(L * (dense + attention) + logits)

    def flops_per_token_algorithmic(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (3x forward, no recomputation): Megatron's model-FLOPs formula with the full-square
        attention (72 L d^2 + 12 L t d + 6 d V for d_ffn = 4d). This project's own convention ("ours")."""
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
        d, f, L, V = self.d_model, self.d_ffn, self.n_layers, self.vocab_size
        dense = 3 * 2 * (4 * d * d + 2 * d * f)
        attention = 2 * 3 * 2 * 2 * t * self.n_heads * self.d_head
        return float(L * (dense + attention) + 3 * 2 * d * V + 2 * 2 * d * V)

    @property
    def chinchilla_tokens(self) -> int:
        """Compute-optimal training tokens: 20 per parameter, as every Cerebras-GPT size was trained."""
        return 20 * self.parameters

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


def _published(name, n_layers, d_model, n_heads, d_head, batch_size, lr, decay, eps=1e-8) -> dict:
    return dict(
        name=name, n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_head, d_ffn=4 * d_model,
        batch_size=batch_size, learning_rate=lr, lr_decay=decay, adam_eps=eps,
    )


# The seven published sizes (cerebras-gpt.md architecture table). 13B's batch ramps 720 -> 1080; 720 is the start.
_SP = [
    _published("111M", 10, 768, 12, 64, 120, 6.0e-4, "linear"),
    _published("256M", 14, 1088, 17, 64, 264, 6.0e-4, "linear"),
    _published("590M", 18, 1536, 12, 128, 264, 2.0e-4, "linear"),
    _published("1.3B", 24, 2048, 16, 128, 528, 2.0e-4, "cosine"),
    _published("2.7B", 32, 2560, 32, 80, 528, 2.0e-4, "cosine"),
    _published("6.7B", 32, 4096, 32, 128, 1040, 1.2e-4, "linear", 1e-9),
    _published("13B", 40, 5120, 40, 128, 720, 1.2e-4, "cosine", 1e-9),
]

# muP variants: same shapes; base LR 6e-3 and base init std 0.08 (scaled per tensor in the model and optimizer).
_MUP = [
    {**p, "name": p["name"] + "-mup", "mup": True, "learning_rate": 6.0e-3, "init_std": 0.08}
    for p in _SP
    if p["name"] in ("111M", "256M", "590M", "1.3B", "2.7B")
]

# Small shapes for CPU work. Same architecture and vocabulary (so the real GPT-2 tokenizer applies); shorter context.
_CPU = [
    # ~8.0M parameters (6.4M of them the tied embedding): 8 layers so that it can fill an 8-stage pipeline.
    dict(name="tiny", n_layers=8, d_model=128, n_heads=4, d_head=32, d_ffn=512, max_seq_len=256,
         batch_size=16, learning_rate=1e-3),
    # ~5.7M parameters (4.8M of them the tied embedding): the shape `wse demo` trains. The 50257-way output layer
    # costs in proportion to the width, and on 2 cores this width learns the most per CPU-second: measured on the
    # 2-core Xeon, one device, 4 x 128-token steps at LR 2e-3, seed 0 (2026-11-30): 1,000 steps reach validation loss
    # 5.41 in 189 s, where tiny needs 1,000 steps and 283-300 s for 5.40 (900: 5.47 in 251 s); 8 x 64 wide, 900 steps:
    # 5.56 in 138 s; tiny's width with 4 layers, 900 steps: 5.63 in 183 s.
    dict(name="demo", n_layers=8, d_model=96, n_heads=3, d_head=32, d_ffn=384, max_seq_len=256,
         batch_size=16, learning_rate=1e-3),
    # ~19.3M parameters: the benchmark and scaling-study shape.
    dict(name="small", n_layers=8, d_model=256, n_heads=4, d_head=64, d_ffn=1024, max_seq_len=512,
         batch_size=16, learning_rate=6e-4),
]

PRESETS: dict[str, dict] = {p["name"]: p for p in _CPU + _SP + _MUP}
PUBLISHED_PRESETS = [p["name"] for p in _SP] + [p["name"] for p in _MUP]


def matching_preset(fields: dict) -> str | None:
    """The preset whose network shape (vocabulary, context, layers, width, heads, FFN, muP or not) ``fields`` has, or
    None. Importers (HF, ModelZoo) use it to keep a published shape's training recipe as defaults."""
    keys = ("vocab_size", "max_seq_len", "n_layers", "d_model", "n_heads", "d_ffn")
    for name, p in PRESETS.items():
        if all(p.get(k, GPTConfig.model_fields[k].default) == fields.get(k) for k in keys) and \
                p.get("mup", False) == fields.get("mup", False):
            return name
    return None


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
    """A preset by name (``111M``, ``1.3B-mup``, ``tiny`` ...) or a model file (YAML or JSON with GPTConfig fields).

    A file may name a ``preset`` to start from and override some of its fields. A Cerebras ModelZoo config (either
    layout, model/modelzoo.py) is read as its model section; ModelConfigError names a field it cannot run.
    """
    key = str(name_or_path)
    if key in PRESETS:
        return build_config({**PRESETS[key], **overrides})
    path = Path(key)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise ModelConfigError(f"model file '{path}' does not exist; give a preset ({', '.join(PRESETS)}) or a YAML/JSON file")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() == ".json":
                fields = json.loads(text)
            else:
                import yaml

                fields = yaml.safe_load(text)
        except Exception as err:  # noqa: BLE001 - any parse error is the user's file
            first = first_line(err)
            raise ModelConfigError(f"model file '{path}' is not valid YAML/JSON: {first}") from None
        if not isinstance(fields, dict):
            raise ModelConfigError(f"model file '{path}' must hold a mapping of GPTConfig fields")
        from model.modelzoo import is_modelzoo, read_modelzoo

        if is_modelzoo(fields):  # a Cerebras ModelZoo config: its model section (model/modelzoo.py)
            return build_config({**read_modelzoo(fields, str(path), path.stem).model, **overrides})
        base = {}
        if "preset" in fields:
            preset = fields.pop("preset")
            if preset not in PRESETS:
                raise ModelConfigError(_unknown_preset(str(preset)))
            base = dict(PRESETS[preset])
        fields.setdefault("name", path.stem)
        return build_config({**base, **fields, **overrides})
    raise ModelConfigError(_unknown_preset(key))


def _unknown_preset(key: str) -> str:
    close = difflib.get_close_matches(key, list(PRESETS), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown model '{key}'{hint}; give one of {', '.join(PRESETS)} or a YAML/JSON model file"


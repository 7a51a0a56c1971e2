"""The settings of `wse study mup` and `wse study scaling`: one validated description per study, a preset for a GPU
(the defaults) and one for two CPU cores (``--quick``), ``KEY=VALUE`` overrides on either. Pure Python (pydantic), so
a bad setting is one ``error:`` line before JAX starts.

Lists are comma-separated on the command line (``widths=32,64,128 lrs=1e-3,2e-3``). Every field's description is
here, once: ``wse study --help`` and the errors read it.
"""

from __future__ import annotations

import difflib
import math
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from runtime.errors import UserError

KINDS = ("mup", "scaling")


class StudySettings(BaseModel):
    """What both studies share: the tokens, the batch, where they run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field("builtin", description="builtin (the python-docs corpus), text files or directories "
                      "(comma-separated), or a `wse data` directory")
    vocab: int | Literal["data"] = Field(
        512, description="a byte-level BPE of this many tokens trained on the data's text (runtime.study.vocabulary), "
        "or 'data': the data's own tokens (GPT-2's 50257 for text)")
    seq_len: int = Field(description="tokens per sequence")
    batch_size: int = Field(description="sequences per step")
    seed: int = Field(0, description="initialisation and data order of every point")
    platform: Literal["cpu", "gpu", "tpu", "auto"] = Field("auto", description="where the points train (mesh.platform)")
    devices: int | None = Field(None, description="devices per point, data parallel (unset: all of the platform's)")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="compute dtype (train.dtype)")
    eval_batches: int = Field(64, description="validation batches for each point's final loss (at most the split)")

    @model_validator(mode="after")
    def _positive(self):
        for name in ("seq_len", "batch_size", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if isinstance(self.vocab, int) and not 257 <= self.vocab <= 65536:
            raise ValueError(f"vocab must be 257 (bytes and <|endoftext|>) .. 65536, or 'data', got {self.vocab}")
        if self.devices is not None and (self.devices < 1 or self.batch_size % self.devices):
            raise ValueError(f"devices={self.devices} must be positive and divide batch_size={self.batch_size}")
        return self


class MupSettings(StudySettings):
    """`wse study mup`: widths x learning rates x parametrisations at a fixed depth, on the same tokens."""

    widths: list[int] = Field(description="d_model of each model (at least 2)")
    layers: int = Field(description="transformer blocks of every model (the depth is held fixed)")
    d_head: int = Field(description="width of each attention head; heads = width / d_head")
    lrs: list[float] = Field(description="peak learning rates, numbers or powers of two (2^-9) (muP: the base rate, "
                             "hidden matrices learn at lr / m_w)")
    params: list[Literal["sp", "mup"]] = Field(["sp", "mup"], description="parametrisations: sp, mup")
    steps: int = Field(description="training steps of every point")

    @model_validator(mode="after")
    def _grid(self):
        _check_widths(self.widths, self.d_head, "widths")
        if len(set(self.widths)) < 2:
            raise ValueError("widths needs at least 2 different widths to measure a drift")
        if len(set(self.lrs)) < 3 or min(self.lrs) <= 0:
            raise ValueError("lrs needs at least 3 different positive learning rates")
        if not self.params or len(set(self.params)) != len(self.params):
            raise ValueError("params must list sp and/or mup, each once")
        if self.layers < 1 or self.steps < 1:
            raise ValueError("layers and steps must be positive")
        return self


class ScalingSettings(StudySettings):
    """`wse study scaling`: a family of sizes at a fixed number of tokens per parameter, the largest held out."""

    shapes: list[str] = Field(description="the family as LAYERSxWIDTH (2x32,2x48,...), smallest first; the last is "
                              "held out and predicted")
    d_head: int = Field(description="width of each attention head; heads = width / d_head")
    tokens_per_param: float = Field(20.0, description="training tokens per non-embedding parameter (Chinchilla: 20)")
    param: Literal["sp", "mup"] = Field("mup", description="the parametrisation every size trains in")
    lr: float = Field(description="peak learning rate of every size (muP: the base rate)")

    @model_validator(mode="after")
    def _family(self):
        sizes = [parse_shape(s) for s in self.shapes]
        _check_widths([w for _, w in sizes], self.d_head, "shapes")
        if len(sizes) < 3:
            raise ValueError("shapes needs at least 3 sizes: 2 to fit and the largest to predict")
        if self.tokens_per_param <= 0 or self.lr <= 0:
            raise ValueError("tokens_per_param and lr must be positive")
        return self

    def layer_widths(self) -> list[tuple[int, int]]:
        """(layers, width) of each size, in the given order."""
        return [parse_shape(s) for s in self.shapes]


def parse_shape(text: str) -> tuple[int, int]:
    """``"2x48"`` -> (2, 48); ValueError otherwise."""
    layers, sep, width = str(text).lower().partition("x")
    if not sep or not layers.strip().isdigit() or not width.strip().isdigit() or int(layers) < 1 or int(width) < 1:
        raise ValueError(f"shape '{text}' is not LAYERSxWIDTH (e.g. 2x48)")
    return int(layers), int(width)


def _check_widths(widths: list[int], d_head: int, field: str) -> None:
    if d_head < 1:
        raise ValueError(f"d_head must be positive, got {d_head}")
    bad = [w for w in widths if w < d_head or w % d_head]
    if bad:
        raise ValueError(f"{field}: width {bad[0]} is not a positive multiple of d_head={d_head}")


# Presets. GPU (the defaults): the same study at widths, steps and context a single accelerator trains in about an
# hour (not yet timed on one). Quick: sized for two CPU cores in about 10 minutes each (docs/study.md: 11.1 and 7.7
# CPU-minutes on a 2-core EPYC). The scaling family stays small so that its largest size sees the built-in corpus at
# most ~4 times at 20 tokens per parameter (runtime.study.scaling.MAX_EPOCHS).
PRESETS: dict[tuple[str, bool], dict] = {
    ("mup", False): dict(widths=[128, 256, 512, 1024, 2048], layers=2, d_head=64,
                         lrs=[2.0 ** k for k in range(-13, -4)], steps=1000, batch_size=32, seq_len=128),
    ("mup", True): dict(widths=[32, 64, 128, 256], layers=2, d_head=32, lrs=[2.0 ** k for k in range(-10, -5)],
                        steps=200, batch_size=12, seq_len=64, platform="cpu", devices=1),
    ("scaling", False): dict(shapes=["1x16", "2x16", "2x32", "2x48", "2x64", "2x80", "2x96"], d_head=16,
                             lr=2.0 ** -7, batch_size=32, seq_len=128),
    ("scaling", True): dict(shapes=["2x16", "2x32", "2x48", "2x64", "2x96"], d_head=16, lr=2.0 ** -7,
                            batch_size=16, seq_len=64, platform="cpu", devices=1),
}
LIST_FIELDS = {"widths": int, "lrs": float, "params": str, "shapes": str}


def power_of_two(value: float) -> str:
    """``2^-7`` for 2**-7, else the number as Python writes it."""
    k = math.log2(value)
    return f"2^{int(k)}" if k.is_integer() else repr(value)


def preset_text(kind: str, quick: bool) -> str:
    """A preset as the KEY=VALUE words that would give it (rates as powers of two: ``lr=2^-7``)."""
    words = []
    for key, value in PRESETS[(kind, quick)].items():
        if key in ("lr", "lrs"):
            value = ",".join(power_of_two(v) for v in (value if isinstance(value, list) else [value]))
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        words.append(f"{key}={value}")
    return " ".join(words)


def settings_class(kind: str) -> type[StudySettings]:
    return {"mup": MupSettings, "scaling": ScalingSettings}[kind]


def parse_settings(kind: str, quick: bool, overrides: list[str]) -> StudySettings:
    """The ``kind`` study's settings: its preset (``quick``: two CPU cores) under ``KEY=VALUE`` overrides. UserError
    (one line) for an unknown key (the closest named), a bad value, or settings that cannot make a study."""
    cls = settings_class(kind)
    values = dict(PRESETS[(kind, quick)])
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"setting '{item}' is not KEY=VALUE; write for example widths=32,64,128")
        if key not in cls.model_fields:
            close = difflib.get_close_matches(key, list(cls.model_fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"unknown setting '{key}' for `wse study {kind}`{hint}; settings: {', '.join(cls.model_fields)}")
        values[key] = _value(key, raw.strip())
    try:
        return cls(**values)
    except pydantic.ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(x) for x in e["loc"][:1] + tuple(x for x in e["loc"][1:] if isinstance(x, int)))
        msg = e["msg"].removeprefix("Value error, ")
        if isinstance(e.get("input"), str):  # the word that did not parse
            msg += f" (got {e['input']!r})"
        if where == "vocab":  # a union: pydantic reports each member's complaint
            msg = f"give a number of tokens (257 .. 65536) or 'data', got {values.get('vocab')!r}"
        raise UserError(f"bad setting for `wse study {kind}`: {where + ': ' if where else ''}{msg}") from None


def _value(key: str, raw: str):
    """A command-line value: a comma-separated list for list settings, else the text (pydantic converts it);
    'none' for an optional setting left unset."""
    if key in LIST_FIELDS:
        return [_rate(key, part.strip()) for part in raw.split(",") if part.strip()]
    return None if raw.lower() in ("none", "null") else _rate(key, raw)


def _rate(key: str, text: str):
    """A learning rate may be written as a power of two, ``2^-7``; anything else is left to pydantic."""
    base, sep, exponent = text.partition("^")
    if key in ("lr", "lrs") and sep and base.strip() == "2":
        try:
            return 2.0 ** int(exponent)
        except ValueError:
            pass
    return text


def describe(settings: StudySettings) -> dict:
    """The settings as a JSON-able dict (what ``settings.json`` in the study's directory holds)."""
    return settings.model_dump()

"""Turning an exception into the one line an ``error:`` message quotes (the CLI's contract: one line, no traceback)."""

from __future__ import annotations


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first non-empty line of ``str(err)``, cut to ``limit`` characters; the exception's type name when it has
    no text (``KeyError()``, some library errors)."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(err).__name__


def describe_error(err: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, at most ``limit`` characters: what a benchmark row or a log line says of
    a failure it records and goes on after."""
    text = str(err).strip()
    return f"{type(err).__name__}: {first_line(err, limit) if text else ''}"[:limit]


class ModelConfigError(ValueError):
    """A model config the user gave is wrong (unknown preset, bad field, inconsistent shape, unsupported math).

    Defined here, beside the error helpers, so that readers of model files (model/modelzoo.py, model/hf.py) and the
    config schema (model/config.py) share it without importing one another."""


class HFFormatError(ModelConfigError):
    """A HuggingFace directory or config that cannot be imported or exported as asked (missing file, a field or
    tensor our model cannot represent), named in one line."""

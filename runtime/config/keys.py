"""Dotted keys over the run config's nested tree: ``{"train": {"lr": 1e-3}}`` <-> ``{"train.lr": 1e-3}``, and one tree
merged over another. ``model``, which may itself be a mapping of model fields, is always one value. Plain dicts only:
no schema (runtime.config.schema says which keys exist).
"""

from __future__ import annotations

from typing import Any


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config dict as dotted keys, ``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}`` (``model``, which
    may itself be a mapping of model fields, stays one value)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key != "model":
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def nest(flat: dict[str, Any]) -> dict:
    """Dotted keys as a nested dict, ``{"train.lr": 1e-3}`` -> ``{"train": {"lr": 1e-3}}`` (``flatten`` undone)."""
    tree: dict = {}
    for key, value in flat.items():
        *path, last = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def merge_trees(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, section by section (``model``, which may be a mapping of model fields, is replaced whole)."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "model":
            out[k] = merge_trees(out[k], v)
        else:
            out[k] = v
    return out

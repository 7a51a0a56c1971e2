"""YAML as people write config files: YAML 1.1's number rules never reach a field declared as a string, and a key
given twice is an error instead of a silent loss.

PyYAML resolves every plain scalar by YAML 1.1's rules: ``2024_01_05`` is the integer 20240105, ``0755`` the octal
493, ``0x1F`` 31, ``1e3`` (with a dot: ``1.0e3``) a float, ``1.10`` the float 1.1, ``yes``/``on`` true, ``2024-01-05``
a date. For a path, a name or a project that silently changes what the user wrote (a run written to ``./20240105``).
So a document is read twice, once with PyYAML's safe rules (the values) and once as text (each scalar its own
characters, quotes removed), and ``typed`` picks field by field of a pydantic model: the text where the field's type
is a string (``str``, ``str | None``, ``str | dict``), the value everywhere else (numbers,
booleans, null, mappings). Pydantic then checks the result against the field types as usual.

PyYAML also keeps the last of two equal keys without a word (a run file with two ``train:`` sections drops the
first); here that is a ``YAMLTextError`` naming the key and both lines. Pure Python (PyYAML, pydantic).
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

import yaml


class YAMLTextError(ValueError):
    """A YAML document that names one key twice in a mapping; the message (one line) names the key and both lines."""


class _NoDuplicates:
    """Mixin for PyYAML loaders: a mapping that names one key twice is refused with both lines."""

    def construct_mapping(self, node, deep=False):
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise YAMLTextError(f"key '{key_node.value}' appears twice (lines {seen[key_node.value]} and {line}); "
                                    "keep one")
            seen[key_node.value] = line
        return super().construct_mapping(node, deep=deep)


class ValueLoader(_NoDuplicates, yaml.SafeLoader):
    """PyYAML's safe loader (YAML 1.1 scalars), refusing duplicate keys."""


class TextLoader(_NoDuplicates, yaml.BaseLoader):
    """Every scalar as its source text (quotes removed), refusing duplicate keys."""


def load(text: str) -> tuple[Any, Any]:
    """(values, texts) of one YAML document: the same tree read with YAML 1.1's rules and as text. Raises
    YAMLTextError (one line) for a duplicate key, PyYAML's own errors for bad syntax."""
    values = yaml.load(text, Loader=ValueLoader)  # noqa: S506 - ValueLoader is a SafeLoader
    texts = yaml.load(text, Loader=TextLoader)  # noqa: S506 - BaseLoader builds only str, list and dict
    return values, texts


def scalar_text(raw: str) -> str:
    """The text of one scalar as a command line gives it (``'a b'`` and ``"a b"`` lose their quotes; anything that
    is not a plain scalar is kept as typed)."""
    try:
        text = yaml.load(raw, Loader=TextLoader)  # noqa: S506
    except (yaml.YAMLError, YAMLTextError):
        return raw.strip()
    return text if isinstance(text, str) else raw.strip()


def is_text_type(annotation) -> bool:
    """Whether a field of this type takes a scalar as text: ``str``, alone or in a union with None or dict (a mapping
    stays a mapping). ``Literal`` fields keep YAML's values: their validators read ``true``/``off`` as switches."""
    args = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    args = [a for a in args if a is not type(None)]
    return str in args and all(a is str or a is dict or get_origin(a) is dict for a in args)


def typed(values: Any, texts: Any, model) -> Any:
    """``values`` with the scalars of ``model``'s string-typed fields replaced by their source ``texts`` (see the
    module doc); nested pydantic sections recurse, ``nested`` fields not of the model are left as values."""
    if not isinstance(values, dict) or not isinstance(texts, dict) or len(values) != len(texts):
        return values
    out = {}
    for (key, value), (_, text) in zip(values.items(), texts.items()):
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            out[key] = value
            continue
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            out[key] = typed(value, text, ann)
        elif value is not None and not isinstance(value, (dict, list)) and isinstance(text, str) and is_text_type(ann):
            out[key] = text
        else:
            out[key] = value
    return out

"""Loading a run config: an optional YAML file (or a Cerebras ModelZoo file), then ``key=value`` overrides
(``mesh.devices=8 mesh.axes.stage=4 train.steps=20 model=tiny data=builtin``), MaxText style, so changing the
parallelism or the run length is a config change, never a code change. Every key is checked against the schema
(runtime.config.schema), an unknown one refused with the closest valid key named, in one line. The result is not yet
resolved (``RunConfig.resolve``). Pure Python (PyYAML).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.errors import first_line
from runtime.config.keys import merge_trees
from runtime.config.schema import RunConfig, check_keys, field_info, from_dict, unknown_key, valid_keys
from runtime.errors import UserError


def _set(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict:
    """``["mesh.devices=8", "model=tiny"]`` -> nested dict. A value for a string-typed key (a path, a name, a
    project: ``train.run_dir=2024_01_05``) is kept as typed (``null`` unsets it); any other is parsed as a YAML scalar
    (8, true, null, 1e-3)."""
    import yaml

    from model.yaml_text import is_text_type, scalar_text

    tree: dict = {}
    known = set(valid_keys())
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"override '{item}' is not KEY=VALUE; write for example train.steps=20")
        if key not in known:
            raise unknown_key(key)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        field = field_info(key)
        if field is not None and value is not None and not isinstance(value, dict) and is_text_type(field.annotation):
            value = scalar_text(raw)
        if isinstance(value, int) and ":" in raw:  # YAML 1.1 reads 3:5 as 185 (base 60); no key means that
            value = raw.strip()
        if isinstance(value, str):
            value = _number(value) if field is None or not is_text_type(field.annotation) else value
        if isinstance(value, dict) and key != "model":
            raise UserError(f"override '{item}' sets a whole section; set its keys one by one ({key}.<key>=VALUE)")
        _set(tree, key, value)
    return tree


def _number(text: str):
    """YAML 1.1 reads '1e-3' as a string; a number-looking string is a number."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_yaml(path: str | Path) -> dict:
    """The nested dict of a YAML run config (a Cerebras ModelZoo file as its run-config keys: runtime.config.modelzoo);
    UserError (one line) for a missing file, bad YAML or a file that is not a mapping."""
    from model.yaml_text import YAMLTextError, load

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file '{path}' does not exist; give a YAML run config or leave out --config")
    import yaml

    try:
        tree, texts = load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"config file '{path}' is not valid YAML: {first_line(err)}") from None
    except YAMLTextError as err:  # a key given twice: PyYAML would keep the last without a word
        raise UserError(f"config file '{path}': {err}") from None
    tree = tree or {}
    if not isinstance(tree, dict):
        raise UserError(f"config file '{path}' must hold a mapping (model:, data:, mesh:, execution:, train:)")
    from runtime.config.modelzoo import is_modelzoo, run_tree

    if is_modelzoo(tree):  # a Cerebras ModelZoo file: its model and recipe as run-config keys (runtime/config/modelzoo.py)
        return run_tree(tree, path)
    return keep_text(tree, texts)


def keep_text(tree: dict, texts) -> dict:
    """A run file's tree with the string-typed settings as written (model.yaml_text): paths, names, projects, and
    the name inside a ``model:`` mapping."""
    from model.config import GPTConfig
    from model.yaml_text import typed

    out = typed(tree, texts, RunConfig)
    if isinstance(out.get("model"), dict) and isinstance(texts, dict) and isinstance(texts.get("model"), dict):
        out["model"] = typed(tree["model"], texts["model"], GPTConfig)
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), **updates) -> RunConfig:
    """The run config from an optional YAML file, ``key=value`` overrides, then keyword ``updates`` given as dotted
    keys with ``__`` for dots (``train__steps=20``) or nested dicts (``train={"steps": 20}``); not yet resolved."""
    tree = read_yaml(path) if path is not None else {}
    if path is not None:
        check_keys(tree)
        # A model file named in a run file is relative to the run file.
        if isinstance(tree.get("model"), str):
            candidate = Path(path).parent / tree["model"]
            if candidate.suffix.lower() in (".yaml", ".yml", ".json") and candidate.is_file():
                tree["model"] = str(candidate)
    tree = merge_trees(tree, parse_overrides(list(overrides)))
    extra: dict = {}
    for k, v in updates.items():
        key = k.replace("__", ".")
        if key not in set(valid_keys()):
            raise unknown_key(key)
        _set(extra, key, v)
    tree = merge_trees(tree, extra)
    return from_dict(tree)

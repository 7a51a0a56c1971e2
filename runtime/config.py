"""The run config: one validated description of a training run (model, data, mesh, execution, train).

It comes from an optional YAML file plus ``key=value`` overrides (``mesh.devices=8 mesh.axes.stage=4 train.steps=20
model=tiny data=builtin``), MaxText style, so changing the parallelism or the run length is a config change, never a
code change. Every key is checked: an unknown one is refused with the closest valid key named, in one line.

Unset training knobs (batch size, sequence length, peak LR, decay shape, warmup) are filled by ``RunConfig.resolve``,
the one merge of defaults in runtime.recipes (which also says where each value came from); the resolved config
(nothing left unset) is what a checkpoint records, so a resumed run can tell which settings it must keep. Pure Python (pydantic + PyYAML): the command line parses and
checks a config before it pays for a JAX import, and must do so to set the emulated CPU device count.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict

from model.errors import first_line
from runtime.errors import UserError
from runtime.observe import ObserveConfig

# Emulated CPU devices when mesh.devices is unset: 8, enough for every mesh shape the issues test (stage 8, 2 x 4).
DEFAULT_CPU_DEVICES = 8


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)


class MeshAxes(_Section):
    """Sizes of the mesh axes; -1 means 'whatever is left of the devices' (at most one axis may say so)."""

    data: int = -1
    stage: int = 1
    model: int = 1


class MeshConfig(_Section):
    """Where the run executes. ``platform=cpu`` emulates ``devices`` CPU devices; on gpu/tpu ``devices`` must match
    the real count (unset: all of them). The ``coordinator_address``/``num_processes``/``process_id`` triple starts
    ``jax.distributed`` for a multi-process run; unset ones come from JAX_* variables or the cluster launcher
    (Slurm, Open MPI, Kubernetes; runtime.mesh.maybe_initialize_distributed)."""

    platform: Literal["cpu", "gpu", "tpu", "auto"] = "cpu"
    devices: int | None = None
    axes: MeshAxes = MeshAxes()
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


class ExecutionConfig(_Section):
    """How the layers run on the mesh: ``data`` parallel, ``pipelined`` over the stage axis, weight-``streaming``,
    or ``auto`` (the planner's pick). ``microbatches`` unset lets the plan choose. ``remat`` is the policy for
    recomputing activations in the backward pass: ``auto`` (default) takes the cheapest of ``none`` < ``dots`` (keep
    the weight matmuls' outputs, recompute the rest) < ``full`` (recompute whole blocks) whose predicted memory fits a
    device, and the plan records which and why; ``true``/``false`` are kept as aliases of ``full``/``none``.
    ``attention``: ``auto`` (default) runs cuDNN's fused flash kernel on NVIDIA GPUs with bfloat16/float16 compute and
    the XLA kernel elsewhere; ``xla``/``cudnn`` force one. ``schedule``: the pipelined mode's pipeline schedule,
    ``1f1b`` (default; the wafer simulator's, activation memory bounded by the stage count) or ``gpipe``.
    ``compile_cache``: JAX's persistent compilation cache, on unless false (runtime.compile_cache)."""

    mode: Literal["auto", "data", "pipelined", "streaming"] = "auto"
    microbatches: int | None = None
    remat: Literal["auto", "none", "dots", "full"] = "auto"
    attention: Literal["auto", "xla", "cudnn"] = "auto"
    schedule: Literal["1f1b", "gpipe"] = "1f1b"
    fsdp: bool = False
    compile_cache: bool = True

    @pydantic.field_validator("remat", mode="before")
    @classmethod
    def _remat_aliases(cls, value):
        if value is None or value is True or value is False:
            return {None: "auto", True: "full", False: "none"}[value]
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "on", "off", "yes", "no"):
            return "full" if value.strip().lower() in ("true", "on", "yes") else "none"
        return value


class TrainConfig(_Section):
    """The optimisation and the run's bookkeeping. ``None`` means 'from the model preset's recipe' (see resolve)."""

    steps: int = 100
    batch_size: int | None = None  # global sequences per optimizer step
    seq_len: int | None = None
    lr: float | None = None  # peak learning rate (the base rate under muP)
    warmup_steps: int | None = None
    # Steps the warmup and decay span (unset: train.steps); the rate holds at min_lr_ratio x peak after them. A run
    # extended past them (a larger train.steps when resuming) goes on at that floor, so its rate never jumps.
    decay_steps: int | None = None
    decay: Literal["linear", "cosine"] | None = None
    min_lr_ratio: float = 0.1  # decay to 10% of peak (Cerebras-GPT recipe)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    accum_steps: int = 1
    dtype: Literal["float32", "bfloat16"] = "float32"
    seed: int = 0
    checkpoint_every: int = 100
    keep: int = 3
    eval_every: int = 100
    eval_batches: int = 4
    run_dir: str | None = None  # unset: runs/<model name>


class RunConfig(_Section):
    """A whole run: ``model`` is a preset name, a YAML/JSON model file or (in a YAML run file) a mapping of model
    fields; ``data`` is ``builtin`` (the python-docs corpus) or a directory written by ``wse data``."""

    model: str | dict = "tiny"
    data: str = "builtin"
    mesh: MeshConfig = MeshConfig()
    execution: ExecutionConfig = ExecutionConfig()
    train: TrainConfig = TrainConfig()
    observe: ObserveConfig = ObserveConfig()  # TensorBoard, W&B, profiles (runtime.observe)

    # ----- derived ----------------------------------------------------------------------------------------------
    def gpt_config(self):
        """The GPTConfig this run trains (raises ModelConfigError for an unknown preset or a bad model file)."""
        from model.config import build_config, get_config

        if isinstance(self.model, dict):
            fields = dict(self.model)
            preset = fields.pop("preset", None)
            if preset is not None:
                return get_config(str(preset), **fields)
            return build_config(fields)
        return get_config(self.model)

    def resolve(self, saved: dict | None = None, recipe=None) -> "RunConfig":
        """A copy with every setting filled in and the cross-field rules checked (UserError otherwise): the merge of
        runtime.recipes (field defaults < preset recipe < job ``recipe`` < ``saved`` checkpoint config < given)."""
        from runtime.recipes import resolve

        return resolve(self, recipe, saved)[0]

    def devices(self) -> int | None:
        """Devices the mesh asks for (the emulated count on CPU when unset)."""
        if self.mesh.devices is None and self.mesh.platform == "cpu":
            return DEFAULT_CPU_DEVICES
        return self.mesh.devices

    def flat(self) -> dict[str, Any]:
        """``{"train.steps": 100, ...}``: the config as dotted keys (how overrides and resume checks name things)."""
        return flatten(self.model_dump())


# ----------------------------------------------------------------------------------------------------------------
# Loading: a YAML file, then key=value overrides; every key checked against the schema.


def valid_keys() -> list[str]:
    """Every dotted key a run config accepts (leaves and sections)."""
    keys: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = prefix + name
            keys.append(key)
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, key + ".")

    walk(RunConfig, "")
    return keys


def _unknown_key(key: str) -> UserError:
    keys = valid_keys()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not close:  # a typo in the last part of a long key: compare last parts within the same section
        section, _, last = key.rpartition(".")
        siblings = [k for k in keys if k.rpartition(".")[0] == section]
        close = [k for k in siblings if k.rpartition(".")[2] in difflib.get_close_matches(last, [s.rpartition(".")[2] for s in siblings], n=1)]
    hint = f"; did you mean '{close[0]}'?" if close else "; see the config keys in README.md"
    return UserError(f"unknown config key '{key}'{hint}")


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


def _check_keys(tree: dict, prefix: str = "") -> None:
    keys = set(valid_keys())
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if key not in keys:
            raise _unknown_key(key)
        if isinstance(v, dict) and key != "model":
            _check_keys(v, key + ".")


def _set(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict:
    """``["mesh.devices=8", "model=tiny"]`` -> nested dict; values parsed as YAML scalars (8, true, null, 1e-3)."""
    import yaml

    tree: dict = {}
    known = set(valid_keys())
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"override '{item}' is not KEY=VALUE; write for example train.steps=20")
        if key not in known:
            raise _unknown_key(key)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, int) and ":" in raw:  # YAML 1.1 reads 3:5 as 185 (base 60); no key means that
            value = raw.strip()
        if isinstance(value, str):
            value = _number(value)
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


def merge_trees(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, section by section (``model``, which may be a mapping of model fields, is replaced whole)."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "model":
            out[k] = merge_trees(out[k], v)
        else:
            out[k] = v
    return out


def _one_line(err: pydantic.ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith(("str", "dict", "int", "literal")))
        if e["type"] == "extra_forbidden":
            return str(_unknown_key(loc))
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        parts.append(f"{loc}: {msg} (got {got!r})" if not isinstance(got, dict) else f"{loc}: {msg}")
    return "invalid config: " + "; ".join(dict.fromkeys(parts))


def from_dict(tree: dict) -> RunConfig:
    """Validate a nested dict into a RunConfig (UserError with one line otherwise)."""
    _check_keys(tree)
    try:
        return RunConfig(**tree)
    except pydantic.ValidationError as err:
        raise UserError(_one_line(err)) from None


def read_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file '{path}' does not exist; give a YAML run config or leave out --config")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = first_line(err)
        raise UserError(f"config file '{path}' is not valid YAML: {first}") from None
    if not isinstance(tree, dict):
        raise UserError(f"config file '{path}' must hold a mapping (model:, data:, mesh:, execution:, train:)")
    from runtime.modelzoo import is_modelzoo, run_tree

    if is_modelzoo(tree):  # a Cerebras ModelZoo file: its model and recipe as run-config keys (runtime/modelzoo.py)
        tree = run_tree(tree, path)
    return tree


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), **updates) -> RunConfig:
    """The run config from an optional YAML file, ``key=value`` overrides, then keyword ``updates`` given as dotted
    keys with ``__`` for dots (``train__steps=20``) or nested dicts (``train={"steps": 20}``); not yet resolved."""
    tree = read_yaml(path) if path is not None else {}
    if path is not None:
        _check_keys(tree)
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
            raise _unknown_key(key)
        _set(extra, key, v)
    tree = merge_trees(tree, extra)
    return from_dict(tree)


# Settings a resumed run must share with the checkpoint it resumes: they change which batches it sees or the
# optimisation itself. Mesh, execution mode, dtype-free bookkeeping (steps, cadence, keep) may change freely.
RESUME_FIXED = ("data", "train.batch_size", "train.seq_len", "train.seed", "train.lr", "train.warmup_steps",
                "train.decay_steps", "train.decay", "train.min_lr_ratio", "train.weight_decay", "train.grad_clip")


def resume_conflicts(saved: dict, current: RunConfig) -> list[str]:
    """Dotted keys whose values differ between a checkpoint's resolved config and the current resolved one."""
    now = current.flat()
    then = flatten(saved)
    return [k for k in RESUME_FIXED if k in then and then[k] != now.get(k)]

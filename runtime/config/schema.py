"""The run config's schema: one validated description of a run (model, data, mesh, execution, train, observe).

Every section refuses keys it does not have: an unknown key is refused with the closest valid key named, in one line
(``unknown_key``), and a bad value with what is wrong with it (``from_dict``). Loading (a YAML file plus ``key=value``
overrides) is runtime.config.load; ``RunConfig.resolve`` fills the unset training knobs through the one merge of
defaults, runtime.config.recipes. Pure Python (pydantic): the command line parses and checks a config before it pays
for a JAX import, and must do so to set the emulated CPU device count.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict

from model.remat import REMAT_CHOICES, remat_choice
from runtime.config.keys import flatten
from runtime.config.observe import ObserveConfig
from runtime.errors import UserError

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
    (Slurm, Open MPI, Kubernetes; runtime.platform.launch.maybe_initialize_distributed). ``start_timeout``: seconds
    the processes wait for each other at the start (runtime.platform.rendezvous)."""

    platform: Literal["cpu", "gpu", "tpu", "auto"] = "cpu"
    devices: int | None = None
    axes: MeshAxes = MeshAxes()
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    # Seconds a multi-process start waits for every process to arrive before it ends naming the missing ones.
    start_timeout: float = pydantic.Field(300.0, gt=0)


class ExecutionConfig(_Section):
    """How the layers run on the mesh: ``data`` parallel, ``pipelined`` over the stage axis, weight-``streaming``,
    or ``auto`` (the planner's pick). ``microbatches`` unset lets the plan choose. ``remat`` is the policy for
    recomputing activations in the backward pass: ``auto`` (default) takes the cheapest of ``none`` < ``dots`` (keep
    the weight matmuls' outputs, recompute the rest) < ``full`` (recompute whole blocks) whose predicted memory fits a
    device, and the plan records which and why; ``true``/``false`` are kept as aliases of ``full``/``none``.
    ``attention``: ``auto`` (default) runs cuDNN's fused flash kernel on NVIDIA GPUs with bfloat16/float16 compute and
    the XLA kernel elsewhere; ``xla``/``cudnn`` force one. ``schedule``: the pipelined mode's pipeline schedule,
    ``1f1b`` (default; the wafer simulator's, activation memory bounded by the stage count) or ``gpipe``.
    ``compile_cache``: JAX's persistent compilation cache, on unless false (runtime.platform.compile_cache)."""

    mode: Literal["auto", "data", "pipelined", "streaming"] = "auto"
    microbatches: int | None = None
    remat: Literal[REMAT_CHOICES] = "auto"  # model/remat.py: the one vocabulary (aliases parsed there too)
    attention: Literal["auto", "xla", "cudnn"] = "auto"
    schedule: Literal["1f1b", "gpipe"] = "1f1b"
    fsdp: bool = False
    compile_cache: bool = True

    @pydantic.field_validator("remat", mode="before")
    @classmethod
    def _remat_aliases(cls, value):
        try:
            return remat_choice(value)
        except ValueError:
            return value  # the Literal's own error names the choices


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
    observe: ObserveConfig = ObserveConfig()  # TensorBoard, W&B, profiles (runtime.config.observe)

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
        runtime.config.recipes (field defaults < preset recipe < job ``recipe`` < ``saved`` checkpoint config <
        given)."""
        from runtime.config.recipes import resolve

        return resolve(self, recipe, saved)[0]

    def devices(self) -> int | None:
        """Devices the mesh asks for (the emulated count on CPU when unset)."""
        if self.mesh.devices is None and self.mesh.platform == "cpu":
            return DEFAULT_CPU_DEVICES
        return self.mesh.devices

    def flat(self) -> dict[str, Any]:
        """``{"train.steps": 100, ...}``: the config as dotted keys (how overrides and resume checks name things)."""
        return flatten(self.model_dump())

    @classmethod
    def from_dict(cls, tree: dict) -> "RunConfig":
        """Validate a nested dict into a RunConfig (UserError with one line otherwise: an unknown key with the
        closest valid one, or what is wrong with each bad value)."""
        from runtime.config.rules import check_mesh, check_ranges

        check_keys(tree)
        try:
            run = cls(**tree)
        except pydantic.ValidationError as err:
            raise UserError(_one_line(err)) from None
        check_ranges(run.train)  # a value out of range is refused as given, before a default is derived from it
        check_mesh(run.mesh)
        return run


# ----------------------------------------------------------------------------------------------------------------
# Every key checked against the schema.


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


def field_info(key: str):
    """The pydantic FieldInfo of a dotted leaf key (``train.run_dir``), or None for a section or an unknown key."""
    model: type[BaseModel] = RunConfig
    *path, last = key.split(".")
    for part in path:
        field = model.model_fields.get(part)
        ann = field.annotation if field is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    field = model.model_fields.get(last)
    if field is None or (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
        return None
    return field


def unknown_key(key: str) -> UserError:
    """The one-line error for a key the schema does not have, naming the closest valid key (did you mean ...?)."""
    keys = valid_keys()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if not close:  # a typo in the last part of a long key: compare last parts within the same section
        section, _, last = key.rpartition(".")
        siblings = [k for k in keys if k.rpartition(".")[0] == section]
        close = [k for k in siblings if k.rpartition(".")[2] in difflib.get_close_matches(last, [s.rpartition(".")[2] for s in siblings], n=1)]
    hint = f"; did you mean '{close[0]}'?" if close else "; see the config keys in README.md"
    return UserError(f"unknown config key '{key}'{hint}")


def check_keys(tree: dict, prefix: str = "") -> None:
    """UserError (``unknown_key``) for the first key of a nested dict that the schema does not have."""
    keys = set(valid_keys())
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if key not in keys:
            raise unknown_key(key)
        if isinstance(v, dict) and key != "model":
            check_keys(v, key + ".")


def _one_line(err: pydantic.ValidationError) -> str:
    """A pydantic error as one ``invalid config:`` line (or the unknown-key line for a key the schema lacks)."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith(("str", "dict", "int", "literal")))
        if e["type"] == "extra_forbidden":
            return str(unknown_key(loc))
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        parts.append(f"{loc}: {msg} (got {got!r})" if not isinstance(got, dict) else f"{loc}: {msg}")
    return "invalid config: " + "; ".join(dict.fromkeys(parts))


def from_dict(tree: dict) -> RunConfig:
    """Validate a nested dict into a RunConfig (UserError with one line otherwise)."""
    return RunConfig.from_dict(tree)

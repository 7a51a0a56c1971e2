"""A model planned by the simulator in wse/ (no JAX): what `wse plan` and ``model.plan`` give. This module turns the
model's name or file into a shape; the simulator's one entry (wse.plan.make_plan) reads the system or device it runs
on and picks the planner."""

from __future__ import annotations

from pathlib import Path

from runtime.errors import UserError

DEFAULT_SYSTEM = "cs2"  # the system Cerebras-GPT was trained on (Andromeda's CS-2s)


class PlanningView:
    """A model config as the planner reads it: the config's own attributes (properties included), with some replaced
    (``batch_size`` None when the model gives no batch: the planner then takes the published rule's,
    wse.costs.published_batch, and says so)."""

    def __init__(self, config, **overrides):
        self._config, self._overrides = config, overrides

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._config, name)


def gives_batch(tree) -> bool:
    """Whether a model file's YAML names a batch anywhere (``batch_size``: top level, ModelZoo's train_input ...)."""
    if isinstance(tree, dict):
        return "batch_size" in tree or any(gives_batch(v) for v in tree.values())
    if isinstance(tree, list):
        return any(gives_batch(v) for v in tree)
    return False


# Names some model files still use for fields the model config now has (the planner read them before the model did).
LEGACY_FIELDS = ("learned_positions", "biases", "head_bias")


def translate_legacy_fields(fields: dict) -> dict:
    """A model file's fields with the legacy planning names (LEGACY_FIELDS) as GPTConfig fields: ``learned_positions``
    -> ``positions``, ``biases`` -> ``norm`` and the three projection biases, ``head_bias`` -> ``lm_head_bias``.
    UserError for a value that is not true or false."""
    out = dict(fields)
    for name in LEGACY_FIELDS:
        if name in out and not isinstance(out[name], bool):
            raise UserError(f"model field '{name}' must be true or false, got {out[name]!r}")
    if "learned_positions" in out:
        out["positions"] = "learned" if out.pop("learned_positions") else "rotary"
    if "biases" in out:
        b = out.pop("biases")
        out.update(qkv_bias=b, attn_out_bias=b, mlp_bias=b, norm="layernorm" if b else "rmsnorm")
    if "head_bias" in out:
        out["lm_head_bias"] = out.pop("head_bias")
    return out


def config_of_shape(shape):
    """The GPTConfig of a published planning shape (wse.validation.shapes.PLANNING_SHAPES): the same model in the one
    description the runtime and the planner share (rotary positions where the shape has no position table; SiLU for
    a gated FFN, GELU otherwise)."""
    from dataclasses import asdict

    from model.config import build_config

    fields = asdict(shape)
    fields["positions"] = "learned" if fields.pop("learned_positions") else "rotary"
    fields["lm_head_bias"] = fields.pop("head_bias")
    fields["activation"] = "silu" if shape.ffn_gated else "gelu"
    if fields["batch_size"] is None:
        fields.pop("batch_size")
    return build_config(fields)


def load_model(model: str):
    """(GPTConfig, whether the model gives a training batch) for a preset of model/presets (Cerebras-GPT and the
    families), a planning-only published shape (wse.validation.shapes.PLANNING_SHAPES: llama3-8b, qwen2-72b,
    gpt3-20b, gpt-1t ...), a HuggingFace model directory (its config.json; no batch) or a model file (GPTConfig
    fields, a ModelZoo config, or the legacy planning names of LEGACY_FIELDS). What `wse plan` and `wse info` both
    read. ModelConfigError/UserError for an unknown name or a bad file."""
    from model.config import get_config, unknown_model
    from model.errors import ModelConfigError
    from model.presets import ALL_PRESETS
    from wse.validation.shapes import PLANNING_SHAPES

    if model in ALL_PRESETS:
        return get_config(model), "batch_size" in ALL_PRESETS[model]
    if model in PLANNING_SHAPES:
        shape = PLANNING_SHAPES[model][0]
        return config_of_shape(shape), shape.batch_size is not None
    path = Path(model)
    if path.is_dir():
        return hf_directory_config(path), False
    if path.suffix.lower() not in (".yaml", ".yml", ".json") or not path.is_file():
        if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
            return get_config(model), True  # get_config's one-line refusal of the file
        # an unknown name is told every name `wse plan` and `wse info` take: the presets and the planning-only shapes
        raise ModelConfigError(unknown_model(model, dict.fromkeys([*ALL_PRESETS, *PLANNING_SHAPES]),
                                             also="a HuggingFace model directory"))
    import yaml

    tree = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    if not isinstance(tree, dict) or not any(k in tree for k in LEGACY_FIELDS):
        cfg = get_config(model)
    else:
        fields = translate_legacy_fields(tree)
        preset = fields.pop("preset", None)
        base = dict(get_config(str(preset)).model_dump()) if preset is not None else {}
        from model.config import build_config

        cfg = build_config({**base, "name": path.stem, **fields})
    preset = tree.get("preset") if isinstance(tree, dict) else None
    return cfg, gives_batch(tree) or "batch_size" in ALL_PRESETS.get(str(preset), {})


def hf_directory_config(path: Path):
    """The GPTConfig of a HuggingFace model directory's config.json (any family model/hf_configs reads; no weights
    are read). UserError when there is no config.json or it is not JSON; HFFormatError for what the model cannot
    run."""
    import json

    from model.hf_configs import config_from_hf

    config = path / "config.json"
    if not config.is_file():
        raise UserError(f"model directory '{path}' has no config.json; give a HuggingFace model directory, a preset or "
                        "a YAML/JSON model file")
    try:
        hf = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"'{config}' is not valid JSON ({err}); fix the file") from None
    return config_from_hf(hf, name=path.resolve().name)


def load_shape(model: str):
    """The model to plan (``load_model``) as the planner reads it: its GPTConfig, or a view of it without a batch when
    the model gives none (the plan then takes the published rule's and says so)."""
    cfg, batch = load_model(model)
    return cfg if batch else PlanningView(cfg, batch_size=None)


def plan_model(model: str, system: str | None = None, *, systems: int | None = None, mode: str = "auto",
               batch_size: int | None = None, seq_len: int | None = None, picture: str | None = None,
               timeline: str | None = None, task: str = "train", memoryx: str | None = None,
               prompt_len: int | None = None, new_tokens: int | None = None, dtype: str | None = None,
               overwrite: bool = False) -> dict:
    """The plan of ``model`` (a preset, a planning-only published shape or a model file) on ``system`` (cs1/cs2/cs3,
    a cluster, a YAML system file, h100, h200 or a ``kind: device`` file; None: ``DEFAULT_SYSTEM``, noted in
    ``system_note``) from the simulator's one entry (wse.plan.make_plan, which decides wafer or device mesh), as a
    JSON-able dict (Plan.to_dict, InferencePlan's for ``task`` decode/prefill/generate, DevicePlan's for a device mesh), with
    the PNG paths when ``picture``/``timeline`` are given (written whole or not at all; an existing file is replaced
    only with ``overwrite``). UserError or PlanError for an unknown model or system, a plan that cannot fit, or a
    picture that cannot be drawn or written."""
    from wse.plan import make_plan, read_target

    shape = load_shape(model)
    target = read_target(DEFAULT_SYSTEM if system is None else system, dtype=dtype)
    if picture or timeline:
        check_pictures(target, task, picture, timeline, overwrite)
    plan = make_plan(shape, target, systems=systems, mode=mode, batch_size=batch_size, seq_len=seq_len,
                     model_name=shape.name, memoryx=memoryx, task=task, prompt_len=prompt_len, new_tokens=new_tokens,
                     dtype=dtype)
    result = plan.to_dict()
    if system is None:
        result["system_note"] = f"--system not given: planned on {DEFAULT_SYSTEM} (choose with --system cs1|cs2|cs3|...)"
    if picture or timeline:
        from wse.wafer.pictures import draw_picture, draw_timeline

        from runtime.platform.storage import write_file

        for key, path, draw in (("picture", picture, draw_picture), ("timeline", timeline, draw_timeline)):
            if path:  # drawn into a held hidden sibling and renamed into place (runtime.platform.storage)
                result[key] = str(write_file(path, lambda tmp, draw=draw: draw(plan, tmp), overwrite=overwrite,
                                             what=f"--{key}"))
    return result


def check_pictures(target, task: str, picture: str | None, timeline: str | None, overwrite: bool = False) -> None:
    """Refuse --picture/--timeline where no picture can be drawn (a device mesh, an inference task) or written (a
    directory that does not exist, a file there already without ``overwrite``), before anything is planned."""
    from wse.plan import DEVICE_TRAINING_ONLY

    if target.wing == "devices":
        raise UserError(DEVICE_TRAINING_ONLY)
    for flag, path in (("--picture", picture), ("--timeline", timeline)):
        if path is not None and not Path(path).parent.exists():
            raise UserError(f"{flag} {path}: directory '{Path(path).parent}' does not exist; create it or choose another path")
        if path is not None and Path(path).exists() and not overwrite:
            raise UserError(f"{flag} {path} already exists; pass --overwrite to replace it or choose another path")
    if task != "train":
        raise UserError(f"--picture and --timeline draw training plans; --task {task} has none")


def published_comparison() -> dict:
    """The simulator against every published outcome it can be held to (wse.validation.compare): the calibration
    and validation tables, each row with its source and distance, their summaries, and the capacity checks."""
    from wse.validation.compare import comparison

    return {"published": comparison()}

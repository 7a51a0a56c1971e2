"""A model planned by the simulator in wse/ (no JAX): what `wse plan` and ``model.plan`` give. This module turns the
model's name or file into a shape; the simulator's one entry (wse.plan.make_plan) reads the system or device it runs
on and picks the planner."""

from __future__ import annotations

from pathlib import Path

from runtime.errors import UserError

DEFAULT_SYSTEM = "cs2"  # the system Cerebras-GPT was trained on (Andromeda's CS-2s)


class PlanningView:
    """A model config as the planner reads it: the config's own attributes (properties included), with some replaced:
    planning-only fields a model file gives, or ``batch_size`` None when the file gives no batch (the planner then
    takes the published rule's, wse.costs.published_batch, and says so)."""

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


def load_shape(model: str):
    """The shape to plan: a planning-only published shape (gptj-6b, llama3-8b, qwen3-32b ...), a preset, or a model
    file whose planning-only fields (wse.shape.PLANNING_FIELDS) are read beside the GPTConfig fields the JAX model
    takes. A file that gives no batch (nor a preset to take one from) plans at the published rule's batch."""
    from model.config import PRESETS, get_config
    from wse.shape import PLANNING_FIELDS, as_shape
    from wse.validation.shapes import PLANNING_SHAPES

    if model in PLANNING_SHAPES:
        return PLANNING_SHAPES[model][0]
    path = Path(model)
    if path.suffix.lower() not in (".yaml", ".yml", ".json") or not path.is_file():
        return get_config(model)
    import yaml

    tree = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    fields = dict(tree) if isinstance(tree, dict) else tree
    extras = {k: fields.pop(k) for k in PLANNING_FIELDS if isinstance(fields, dict) and k in fields}
    preset = fields.get("preset") if isinstance(fields, dict) else None
    no_batch = {} if gives_batch(tree) or preset is not None else {"batch_size": None}
    if not extras:
        return as_shape(PlanningView(get_config(model), **no_batch)) if no_batch else get_config(model)
    from model.config import build_config

    fields.pop("preset", None)
    base = dict(PRESETS[preset]) if preset in PRESETS else (get_config(preset).model_dump() if preset else {})
    config = build_config({**base, "name": path.stem, **fields})
    return as_shape(PlanningView(config, **extras, **no_batch))


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

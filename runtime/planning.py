"""A model planned by the simulator in wse/ (no JAX): what `wse plan` and ``model.plan`` give. This module turns the
model's name or file into a shape; the simulator's one entry (wse.plan.make_plan) reads the system or device it runs
on and picks the planner."""

from __future__ import annotations

from pathlib import Path

from runtime.errors import UserError

DEFAULT_SYSTEM = "cs2"  # the system Cerebras-GPT was trained on (Andromeda's CS-2s)


def load_shape(model: str):
    """The shape to plan: a planning-only published shape (llama3.1-8b ...), a preset, or a model file whose
    planning-only fields (n_kv_heads, ffn_gated, tied_embeddings, learned_positions, biases; wse.shape) are read
    beside the GPTConfig fields the JAX model takes."""
    from model.config import get_config
    from wse.shape import PLANNING_FIELDS, as_shape
    from wse.validation.published import PLANNING_SHAPES

    if model in PLANNING_SHAPES:
        return PLANNING_SHAPES[model][0]
    path = Path(model)
    if path.suffix.lower() not in (".yaml", ".yml", ".json") or not path.is_file():
        return get_config(model)
    import yaml

    fields = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    extras = {k: fields.pop(k) for k in PLANNING_FIELDS if isinstance(fields, dict) and k in fields}
    if not extras:
        return get_config(model)
    from types import SimpleNamespace

    from model.config import PRESETS, build_config

    preset = fields.pop("preset", None)
    base = dict(PRESETS[preset]) if preset in PRESETS else (get_config(preset).model_dump() if preset else {})
    config = build_config({**base, "name": path.stem, **fields})
    return as_shape(SimpleNamespace(**{**config.model_dump(), **extras}))


def plan_model(model: str, system: str | None = None, *, systems: int | None = None, mode: str = "auto",
               batch_size: int | None = None, seq_len: int | None = None, picture: str | None = None,
               timeline: str | None = None, task: str = "train", memoryx: str | None = None,
               prompt_len: int | None = None, dtype: str | None = None) -> dict:
    """The plan of ``model`` (a preset, a planning-only published shape or a model file) on ``system`` (cs1/cs2/cs3,
    a cluster, a YAML system file, h100, h200 or a ``kind: device`` file; None: ``DEFAULT_SYSTEM``, noted in
    ``system_note``) from the simulator's one entry (wse.plan.make_plan, which decides wafer or device mesh), as a
    JSON-able dict (Plan.to_dict, InferencePlan's for ``task`` decode/prefill, DevicePlan's for a device mesh), with
    the PNG paths when ``picture``/``timeline`` are given. UserError or PlanError for an unknown model or system, a
    plan that cannot fit, or a picture that cannot be drawn or written."""
    from wse.plan import make_plan, read_target

    shape = load_shape(model)
    target = read_target(DEFAULT_SYSTEM if system is None else system, dtype=dtype)
    if picture or timeline:
        check_pictures(target, task, picture, timeline)
    plan = make_plan(shape, target, systems=systems, mode=mode, batch_size=batch_size, seq_len=seq_len,
                     model_name=shape.name, memoryx=memoryx, task=task, prompt_len=prompt_len, dtype=dtype)
    result = plan.to_dict()
    if system is None:
        result["system_note"] = f"--system not given: planned on {DEFAULT_SYSTEM} (choose with --system cs1|cs2|cs3|...)"
    if picture or timeline:
        from wse.wafer.pictures import draw_picture, draw_timeline

        if picture:
            result["picture"] = str(draw_picture(plan, picture))
        if timeline:
            result["timeline"] = str(draw_timeline(plan, timeline))
    return result


def check_pictures(target, task: str, picture: str | None, timeline: str | None) -> None:
    """Refuse --picture/--timeline where no picture can be drawn (a device mesh, an inference task) or written (a
    directory that does not exist)."""
    from wse.plan import DEVICE_TRAINING_ONLY

    if target.wing == "devices":
        raise UserError(DEVICE_TRAINING_ONLY)
    for flag, path in (("--picture", picture), ("--timeline", timeline)):
        if path is not None and not Path(path).parent.exists():
            raise UserError(f"{flag} {path}: directory '{Path(path).parent}' does not exist; create it or choose another path")
    if task != "train":
        raise UserError(f"--picture and --timeline draw training plans; --task {task} has none")


def published_comparison() -> dict:
    """The simulator against every published outcome it can be held to (wse.validation), as {"rows": [...]}."""
    from model.config import get_config
    from wse.validation.compare import comparison
    from wse.validation.published import TRAINING_FLOPS

    return {"rows": comparison({name: get_config(name) for name in TRAINING_FLOPS})}

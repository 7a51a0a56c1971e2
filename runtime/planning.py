"""A model planned on a Cerebras system by the simulator in wse/ (no JAX): what `wse plan` and ``model.plan`` give."""

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
    """The wafer plan of ``model`` (a preset, a planning-only published shape or a model file) on ``system``
    (cs1/cs2/cs3, a cluster, or a YAML system file; None: ``DEFAULT_SYSTEM``, noted in ``system_note``), or its
    device-mesh plan when ``system`` is h100, h200 or a ``kind: device`` file (``plan_on_devices``), as a
    JSON-able dict (wse.plan.Plan.to_dict, or InferencePlan's for ``task`` decode/prefill), with the PNG paths when
    ``picture``/``timeline`` are given. UserError for an unknown model or system, a plan that cannot fit, or a
    picture path whose directory does not exist."""
    from wse.assumptions import PlanOptions
    from wse.devices.files import find_device
    from wse.wafer.plan import make_plan
    from wse.wafer.systems import get_system
    from wse.wafer.systems import load_planner_overrides

    shape = load_shape(model)
    name = DEFAULT_SYSTEM if system is None else system
    device = find_device(name)
    if device is not None:
        if task != "train" or picture or timeline or memoryx:
            raise UserError("a device mesh is planned for training only, without --task, --picture, --timeline or "
                            "--memoryx (those are for CS systems); drop them or give --system cs2")
        return plan_on_devices(shape, *device, systems=systems, mode=mode, batch_size=batch_size, seq_len=seq_len,
                               dtype=dtype)
    if dtype is not None:
        raise UserError(f"--dtype is for device meshes (h100, h200 or a 'kind: device' file); {name} plans use the "
                        "planner's byte widths (a system file's planner: section changes them)")
    hardware, cluster_systems = get_system(name)
    options = PlanOptions()
    if Path(name).suffix.lower() in (".yaml", ".yml"):
        options = options.updated(load_planner_overrides(name))
    for flag, path in (("--picture", picture), ("--timeline", timeline)):
        if path is not None and not Path(path).parent.exists():
            raise UserError(f"{flag} {path}: directory '{Path(path).parent}' does not exist; create it or choose another path")
    if task != "train" and (picture or timeline):
        raise UserError(f"--picture and --timeline draw training plans; --task {task} has none")
    plan = make_plan(shape, hardware, systems=systems if systems is not None else (cluster_systems or 1), mode=mode,
                     batch_size=batch_size, seq_len=seq_len, options=options, model_name=shape.name,
                     memoryx=memoryx, task=task, prompt_len=prompt_len)
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


def plan_on_devices(shape, device, planner: dict, *, systems: int | None = None, mode: str = "auto",
                    batch_size: int | None = None, seq_len: int | None = None, dtype: str | None = None) -> dict:
    """The device-mesh plan (wse.deviceplan.plan_devices, a DevicePlan's dict) of ``shape`` on ``device``
    (wse.device.Device; ``systems`` overrides its device count) with the file's ``planner`` overrides; ``mode`` auto,
    data or streaming; the batch defaults to the shape's published one, the sequence to 2048 capped at its
    context, ``dtype`` to bfloat16. PlanError (a user error) when it cannot run."""
    from dataclasses import replace

    from wse.assumptions import PlanOptions
    from wse.devices.plan import plan_devices
    from wse.errors import PlanError
    from wse.wafer.plan import training_defaults

    if systems is not None:
        if systems < 1:
            raise PlanError(f"--systems must be at least 1, got {systems}")
        device = replace(device, devices=systems)
    batch_size, seq_len = training_defaults(shape, "auto", device.devices, batch_size, seq_len)
    plan = plan_devices(shape, device, mode=mode, batch_size=batch_size, seq_len=seq_len, dtype=dtype or "bfloat16",
                        options=PlanOptions().updated(planner), model_name=shape.name)
    return plan.to_dict()


def published_comparison() -> dict:
    """The simulator against every published outcome it can be held to (wse.validation), as {"rows": [...]}."""
    from model.config import get_config
    from wse.validation.compare import comparison
    from wse.validation.published import TRAINING_FLOPS

    return {"rows": comparison({name: get_config(name) for name in TRAINING_FLOPS})}

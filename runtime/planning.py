"""A model planned on a Cerebras system by the simulator in wse/ (no JAX): what `wse plan` and ``model.plan`` give."""

from __future__ import annotations

from pathlib import Path

from runtime.errors import UserError

DEFAULT_SYSTEM = "cs2"  # the system Cerebras-GPT was trained on (Andromeda's CS-2s)


def plan_model(model: str, system: str | None = None, *, systems: int | None = None, mode: str = "auto",
               batch_size: int | None = None, seq_len: int | None = None, picture: str | None = None,
               timeline: str | None = None) -> dict:
    """The wafer plan of ``model`` (a preset or model file) on ``system`` (cs1/cs2/cs3, a cluster, or a YAML system
    file; None: ``DEFAULT_SYSTEM``, noted in ``system_note``) as a JSON-able dict (wse.plan.Plan.to_dict), with the
    PNG paths when ``picture``/``timeline`` are given. UserError for an unknown model or system, a plan that cannot
    fit, or a picture path whose directory does not exist."""
    from model.config import get_config
    from wse.hardware import get_system
    from wse.systemfile import load_planner_overrides
    from wse.options import PlanOptions
    from wse.plan import make_plan

    shape = get_config(model)
    name = DEFAULT_SYSTEM if system is None else system
    hardware, cluster_systems = get_system(name)
    options = PlanOptions()
    if Path(name).suffix.lower() in (".yaml", ".yml"):
        options = options.updated(load_planner_overrides(name))
    for flag, path in (("--picture", picture), ("--timeline", timeline)):
        if path is not None and not Path(path).parent.exists():
            raise UserError(f"{flag} {path}: directory '{Path(path).parent}' does not exist; create it or choose another path")
    plan = make_plan(shape, hardware, systems=systems if systems is not None else (cluster_systems or 1), mode=mode,
                     batch_size=batch_size, seq_len=seq_len, options=options, model_name=shape.name)
    result = plan.to_dict()
    if system is None:
        result["system_note"] = f"--system not given: planned on {DEFAULT_SYSTEM} (choose with --system cs1|cs2|cs3|...)"
    if picture or timeline:
        from wse.pictures import draw_picture, draw_timeline

        if picture:
            result["picture"] = str(draw_picture(plan, picture))
        if timeline:
            result["timeline"] = str(draw_timeline(plan, timeline))
    return result

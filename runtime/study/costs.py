"""What a study would cost at full scale: the paper's family trained at 20 tokens per parameter with its published
batch sizes, on CS-2 systems and on H100s, from the planner (runtime.planning.plan_model: the numbers `wse plan
--model <size> --system <target>` prints). No JAX.

The targets: one CS-2; Andromeda, the 16-CS-2 cluster the family was trained on (the paper used 1 to 16 of its
systems per model: its Sec. 5.3, Table 6); one node of 8 H100s (the planner's default H100 mesh). Each plan's
``time_to_train_s`` is the model's Chinchilla tokens (20 x parameters) at the plan's tokens/s.
"""

from __future__ import annotations

SP_FAMILY = ("111M", "256M", "590M", "1.3B", "2.7B", "6.7B", "13B")
MUP_FAMILY = ("111M-mup", "256M-mup", "590M-mup", "1.3B-mup", "2.7B-mup")
TARGETS = (("cs2", "1 CS-2"), ("andromeda", "Andromeda (16 CS-2)"), ("h100", "8 H100 (one node)"))


def family_costs(models=SP_FAMILY, targets=TARGETS) -> dict:
    """{"rows": one per (model, target): the plan's system, systems, mode, batch, tokens/s, utilization, days to
    train, system-days; "totals": per target, the family's days and system-days; "source"}."""
    from runtime.planning import plan_model

    rows, totals = [], {}
    for target, label in targets:
        days = system_days = 0.0
        for model in models:
            plan = plan_model(model, target)
            row = {"model": model, "target": label, "system": plan["system"], "systems": plan["systems"],
                   "mode": plan["mode"], "batch_size": plan["batch_size"], "tokens_per_s": plan["tokens_per_s"],
                   "utilization": plan["utilization"], "days": plan["time_to_train_s"] / 86400}
            row["system_days"] = row["days"] * plan["systems"]
            rows.append(row)
            days += row["days"]
            system_days += row["system_days"]
        totals[label] = {"days": days, "system_days": system_days}
    return {"models": list(models), "rows": rows, "totals": totals,
            "source": "the planner (wse.plan.make_plan via runtime.planning.plan_model, as `wse plan --model M "
                      "--system T`): each model's 20 tokens/parameter at its published batch, 2048-token sequences"}


def duration(days: float) -> str:
    """Days as the unit that reads best: 40 s, 15 min, 5.3 h, 135.5 d."""
    seconds = days * 86400
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 86400 else f"{days:.1f} d"


def cost_lines(costs: dict) -> list[str]:
    """The costs as text: per model its time to train and the plan's mode on each target, then the family's total
    time and system-time (CS-2-days, GPU-days)."""
    labels = list(costs["totals"])
    by = {(r["model"], r["target"]): r for r in costs["rows"]}
    width = 28
    lines = ["full-scale cost: the paper's family at 20 tokens/parameter and its published batches, time to train "
             "(`wse plan --model M --system T`)",
             "  " + f"{'model':<10}" + "".join(f"{label:<{width}}" for label in labels)]
    for model in costs["models"]:
        cells = [f"{duration(by[model, label]['days'])} {by[model, label]['mode']}" for label in labels]
        lines.append("  " + f"{model:<10}" + "".join(f"{c:<{width}}" for c in cells))
    unit = {label: "GPU" if "H100" in label else "CS-2" for label in labels}
    cells = [f"{duration(costs['totals'][label]['days'])} ({costs['totals'][label]['system_days']:,.0f} "
             f"{unit[label]}-days)" for label in labels]
    lines.append("  " + f"{'all':<10}" + "".join(f"{c:<{width}}" for c in cells))
    return lines

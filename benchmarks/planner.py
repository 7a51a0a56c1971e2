"""Planner speed: wall time to plan every preset in both modes on three systems (CS-1, CS-2, CS-3).

A plan that cannot be made (13B layer-pipelined on one wafer, anything streamed on CS-1, which has no MemoryX) still
counts: the planner has to find that out, and a user asking for it waits just as long. Timed through
``wse.plan.plan_all``, the same function the simulator's closing-note table uses.
"""

from __future__ import annotations

import time

SYSTEMS = ("cs1", "cs2", "cs3")
MODES = ("pipelined", "streaming")


def planner_speed(presets=None, systems=SYSTEMS, modes=MODES) -> dict:
    """{"plans", "fits", "total_s", "slowest": {...}, "by_system_mode": {...}}."""
    from model.config import PRESETS, get_config
    from wse.plan import plan_all

    names = list(presets or PRESETS)
    shapes = [get_config(n) for n in names]
    t0 = time.perf_counter()
    rows = plan_all(shapes, systems=systems, modes=modes)
    total = time.perf_counter() - t0
    by = {}
    for r in rows:
        key = f"{r['system']} {r['mode']}"
        b = by.setdefault(key, {"plans": 0, "fits": 0, "seconds": 0.0})
        b["plans"] += 1
        b["fits"] += bool(r["fits"])
        b["seconds"] += r["plan_seconds"]
    slowest = max(rows, key=lambda r: r["plan_seconds"])
    from model.config import PUBLISHED_PRESETS

    published = [r for r, n in zip(rows, _row_names(names, systems, modes)) if n in PUBLISHED_PRESETS]
    return {
        "presets": names, "systems": list(systems), "modes": list(modes),
        "plans": len(rows), "fits": sum(bool(r["fits"]) for r in rows), "total_s": total,
        "slowest": {k: slowest[k] for k in ("model", "system", "mode", "plan_seconds")},
        "by_system_mode": by,
        "published_presets": len({r["model"] for r in published}),
        "published_presets_s": sum(r["plan_seconds"] for r in published),
    }


def _row_names(names, systems, modes):
    """The preset name of each plan_all row, in its order (systems, then presets, then modes)."""
    return [n for _ in systems for n in names for _ in modes]

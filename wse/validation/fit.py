"""Fit the simulator's calibrated parameters to the calibration table, and only to it:
``python -m wse.validation.fit`` prints each fitted value beside the one in PlanOptions (the defaults every plan
uses); exit status 1 when they differ.

What is fitted, from which rows of wse.validation.published.CALIBRATION (validation rows are never read here):

- ``kernel_step_cycles`` (inference kernels) from C4, WaferLLM's measured prefill (LLaMA3-8B, 4,096 tokens, 720 x 720
  WSE-2 cores), and ``phase_sync_cycles`` from C3, its end-to-end rate (4,096 + 4,096 tokens): each solved so the
  simulated rate equals the published one, alternating until both settle (prefill pays a few hand-offs, generation
  both).
- ``train_step_cycles`` and ``train_work_fraction`` (Cerebras' training kernels) from C1 and C2 (GPT-J on 2 CS-2,
  LLaMA-7B on 1 CS-2) and the Cerebras-GPT paper's Table 6 and linear-scaling rows: for each step cost (10-cycle
  grid) the work fraction is solved so that the two measured rates are right on geometric average; the step cost
  kept is the one whose relative utilisations and scaling efficiencies are closest (least squares of log errors).

Values are rounded as PlanOptions holds them: step costs to 1 cycle (inference) and 10 cycles (training), the phase
hand-off to 10 cycles, the work fraction to 0.01.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace

from wse.assumptions import PlanOptions
from wse.validation.published import CALIBRATION, LINEAR_SCALING, TABLE6

FITTED = ("kernel_step_cycles", "phase_sync_cycles", "train_step_cycles", "train_work_fraction")
TRAIN_STEPS = range(50, 301, 10)


def calibration_outcome(outcome_id: str):
    return next(o for o in CALIBRATION if o.id == outcome_id)


def log_error(outcome_id: str, options: PlanOptions) -> float:
    """log(simulated / published) of a calibration outcome under ``options``."""
    from wse.validation.compare import simulate

    o = calibration_outcome(outcome_id)
    return math.log(simulate(o, options) / o.published)


def solve(f, lo: float, hi: float, iterations: int = 40) -> float:
    """The root of ``f`` (decreasing) in [lo, hi] by bisection (an end when it has none)."""
    if f(lo) <= 0:
        return lo
    if f(hi) >= 0:
        return hi
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return (lo + hi) / 2


def fit_inference(options: PlanOptions) -> PlanOptions:
    """Inference step cost from C4 and phase hand-off from C3, alternated until neither moves (module docstring)."""
    for _ in range(6):
        step = round(solve(lambda v: log_error("C4", replace(options, kernel_step_cycles=v)), 1.0, 2000.0))
        options = replace(options, kernel_step_cycles=float(step))
        sync = round(solve(lambda v: log_error("C3", replace(options, phase_sync_cycles=v)), 0.0, 20000.0), -1)
        if sync == options.phase_sync_cycles:
            break
        options = replace(options, phase_sync_cycles=float(sync))
    return options


def relative_errors(options: PlanOptions) -> list[float]:
    """log errors of Table 6's relative utilisations and the linear-scaling shortfalls (0 when within 9%)."""
    from wse.plan import make_plan
    from wse.validation.shapes import CEREBRAS_GPT
    from wse.wafer.hardware import CS2

    util, shortfall = {}, []
    for name, (systems, per_system, _) in TABLE6.items():
        plan = make_plan(CEREBRAS_GPT[name], CS2, mode="streaming", systems=systems, batch_size=systems * per_system,
                         options=options)
        util[name] = plan.details["utilization_paper"] * systems / plan.details["systems_used"]
        if systems > 1:
            eff = next(p.efficiency for p in plan.scaling if p.systems == systems)
            shortfall.append(min(0.0, math.log(eff / LINEAR_SCALING[0])))
    rel = [math.log(util[n] / util["111M"] / TABLE6[n][2]) for n in TABLE6 if n != "111M"]
    return rel + shortfall


def training_fraction(options: PlanOptions) -> float:
    """The work fraction (to 0.01) that makes C1 and C2 right on geometric average at ``options``' step cost."""
    mean = lambda v: (log_error("C1", replace(options, train_work_fraction=v))  # noqa: E731
                      + log_error("C2", replace(options, train_work_fraction=v))) / 2
    return round(solve(lambda v: -mean(v), 0.05, 1.0, iterations=20), 2)


def fit_training(options: PlanOptions) -> PlanOptions:
    """Training step cost and work fraction (module docstring): a golden-section search over the 10-cycle grid."""
    memo: dict[int, tuple[float, PlanOptions]] = {}

    def loss(i: int) -> float:
        if i not in memo:
            trial = replace(options, train_step_cycles=float(TRAIN_STEPS[i]))
            trial = replace(trial, train_work_fraction=training_fraction(trial))
            memo[i] = (sum(e * e for e in relative_errors(trial)), trial)
        return memo[i][0]

    lo, hi = 0, len(TRAIN_STEPS) - 1
    while hi - lo > 2:
        a, b = lo + (hi - lo) // 3, hi - (hi - lo) // 3
        lo, hi = (lo, b) if loss(a) <= loss(b) else (a, hi)
    best = min(range(lo, hi + 1), key=loss)
    return memo[best][1]


def fit(options: PlanOptions | None = None) -> PlanOptions:
    """Every calibrated parameter fitted from the calibration table, starting from ``options`` (the defaults)."""
    options = fit_inference(options or PlanOptions())
    return fit_training(options)


def main() -> int:
    defaults = PlanOptions()
    fitted = fit(defaults)
    differ = False
    for name in FITTED:
        ours, theirs = getattr(fitted, name), getattr(defaults, name)
        differ |= ours != theirs
        print(f"{name:22s} fitted {ours:<10g} PlanOptions {theirs:<10g} {'' if ours == theirs else 'DIFFERS'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

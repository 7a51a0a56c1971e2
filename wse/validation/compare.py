"""The simulator against published outcomes: one row per outcome with a public figure (wse.validation.published), the
simulated figure beside it and the distance between them, misses included. ``wse plan --published`` prints it; the
README's "simulated vs published" table is its output.
"""

from __future__ import annotations

from wse.assumptions import PlanOptions
from wse.costs import model_layers, paper_training_flops_per_token, parameters
from wse.errors import PlanError
from wse.validation.published import (CEREBRAS_GPT_CARD, INFERENCE, LINEAR_SCALING, MEMORYX_PAIRINGS, ONE_T,
                                      PLANNING_SHAPES, SANDIA_1T, TABLE6, TABLE6_SOURCE, TRAINING_FLOPS,
                                      TWENTY_FOUR_T, row)
from wse.wafer.hardware import CS2, CS3
from wse.wafer.kernels import CALIBRATION, GEMV_CHECK, calibration_efficiency, gemv_check
from wse.wafer.systems import get_system


def flops_rows(shapes: dict) -> list[dict]:
    """Total training FLOPs by the paper's convention (wse.costs) against the published totals."""
    out = []
    for name, published in TRAINING_FLOPS.items():
        shape = shapes[name]
        layers = model_layers(shape, 2048)
        total = paper_training_flops_per_token(layers, shape) * 20 * parameters(layers)
        out.append(row(f"training FLOPs, {name} (paper convention)", published, total, CEREBRAS_GPT_CARD, "FLOP"))
    return out


def utilisation_rows(shapes: dict) -> list[dict]:
    """Per-system utilisation (paper FLOPs) relative to one CS-2 on 111M, at the paper's systems and batches."""
    from wse.plan import make_plan

    measured = {}
    for name, (systems, per_system, _) in TABLE6.items():
        plan = make_plan(shapes[name], "cs2", mode="streaming", systems=systems, batch_size=systems * per_system)
        measured[name] = plan.details["utilization_paper"] * systems / plan.details["systems_used"]
    base = measured["111M"]
    return [row(f"utilisation relative to 111M, {name} ({s} x CS-2, {b} seqs each)", rel, measured[name] / base,
                TABLE6_SOURCE) for name, (s, b, rel) in TABLE6.items() if name != "111M"]


def scaling_rows(shapes: dict) -> list[dict]:
    """Strong-scaling efficiency of the paper's multi-system runs (Table 6's systems and batches) against 'linear
    within 9%': tokens/s on n systems over n times one system's, same global batch."""
    from wse.plan import make_plan

    out = []
    for name, (systems, per_system, _) in TABLE6.items():
        if systems == 1:
            continue
        plan = make_plan(shapes[name], "cs2", mode="streaming", systems=systems, batch_size=systems * per_system)
        eff = next(p.efficiency for p in plan.scaling if p.systems == systems)
        out.append(row(f"scaling efficiency, {name} on {systems} CS-2 ({systems * per_system} seqs)",
                       LINEAR_SCALING[0], eff, LINEAR_SCALING[1],
                       distance="meets" if eff >= LINEAR_SCALING[0] else f"{eff / LINEAR_SCALING[0] - 1:+.0%}"))
    return out


def hardware_rows() -> list[dict]:
    """Kernel calibration checks and MemoryX capacity against Cerebras' model-size pairings."""
    opts = PlanOptions()
    out = [row("GEMM efficiency, 16K cube on 720 x 720 WSE-2 cores", CALIBRATION["efficiency"],
               calibration_efficiency(CS2.chip, opts.kernel_step_cycles), CALIBRATION["source"]),
           row("GEMV time, 16K x 16K on 720 x 720 WSE-2 cores", GEMV_CHECK["seconds"],
               gemv_check(CS2.chip, opts.kernel_step_cycles), GEMV_CHECK["source"], "s")]
    for capacity, params, source in MEMORYX_PAIRINGS:
        out.append(row(f"parameters a {capacity / 1e15:g} PB MemoryX holds ({opts.memoryx_bytes_per_param} B/param)",
                       params, capacity / opts.memoryx_bytes_per_param, source, "parameters"))
    return out


def trillion_rows() -> list[dict]:
    """Whether 1T (16 CS-3) and 24T models plan on CS-3 with a 1,200 TB MemoryX, and at what utilisation."""
    from wse.plan import make_plan

    out = []
    for shape, source in ((ONE_T, SANDIA_1T), (TWENTY_FOUR_T, MEMORYX_PAIRINGS[0][2])):
        try:
            plan = make_plan(shape, CS3, systems=16, mode="streaming", memoryx="1200TB")
            simulated = (f"plans: {plan.tokens_per_s:,.0f} tokens/s, {plan.utilization:.0%} of peak, "
                         f"{plan.details['micro_batches']} micro-batches, offload {plan.details['offload']}")
        except PlanError as err:
            simulated = f"refused: {err}"
        out.append(row(f"{shape.name} ({parameters(model_layers(shape, 1)) / 1e12:.2f}T) on 16 CS-3, 1,200 TB MemoryX",
                       "trained" if shape is ONE_T else "sold for 24T", simulated, source,
                       distance="plans" if simulated.startswith("plans") else "miss"))
    return out


def inference_rows() -> list[dict]:
    """Decode tokens/s per request (batch 1, 2048-token context) on the fewest CS-3 wafers that hold the model, and
    on up to twice as many (Cerebras does not publish its wafer counts)."""
    from wse.wafer.inference import fewest_wafers, layer_bytes, plan_inference

    out = []
    system, _ = get_system("cs3")
    for name, published, source in INFERENCE:
        shape = PLANNING_SHAPES[name][0]
        mem = layer_bytes(model_layers(shape, 2048), shape, 2048, 1, PlanOptions())
        fewest = fewest_wafers(mem, system.grid().memory_bytes, 64)
        for wafers in (fewest, 2 * fewest):
            plan = plan_inference(shape, system, wafers=wafers, task="decode", batch_size=1, seq_len=2048)
            out.append(row(f"decode tokens/s per request, {name}, up to {wafers} CS-3 (used "
                           f"{plan.details['wafers_used']})", published, plan.tokens_per_s_per_request, source,
                           "tokens/s"))
    return out


def comparison(shapes: dict) -> list[dict]:
    """Every row of the simulated-vs-published table (module docstring)."""
    return (flops_rows(shapes) + utilisation_rows(shapes) + scaling_rows(shapes) + hardware_rows()
            + trillion_rows() + inference_rows())

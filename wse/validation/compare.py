"""The simulator against published outcomes (wse.validation.published): every calibration and validation row planned
as it was measured, the simulated figure beside the published one, the distance between them (simulated / published
- 1), and a summary line per table (mean and max |error|, how many within 10% and 25%), misses included. `wse plan
--published` prints it; README's "Simulated vs published" is its output.
"""

from __future__ import annotations

import math

from wse.assumptions import PlanOptions
from wse.costs import model_layers, paper_training_flops_per_token, parameters
from wse.errors import PlanError
from wse.validation.published import (CALIBRATION, CEREBRAS_GPT_CARD, LINEAR_SCALING, MEMORYX_PAIRINGS, SANDIA_1T,
                                      TABLE6, TABLE6_SOURCE, TRAINING_FLOPS, VALIDATION, Outcome, row)
from wse.validation.shapes import CEREBRAS_GPT, shape
from wse.wafer.hardware import CS2, CS3, System, with_chip
from wse.wafer.kernels import GEMV_CHECK, MESHGEMM, gemv_check, meshgemm_efficiency, meshgemm_side

# The 720 x 720 cores of a WSE-2 that WaferLLM's kernels ran on
WAFERLLM_SIDE = 720


def system_of(name: str) -> System:
    """cs2, cs3, or ``waferllm``: a CS-2 whose usable grid is WaferLLM's 720 x 720 cores."""
    if name == "waferllm":
        sub = with_chip(CS2, grid_cols=WAFERLLM_SIDE, grid_rows=WAFERLLM_SIDE)
        return System("WSE-2 720x720 (WaferLLM)", sub.chip, sub.io_bytes_per_s, sub.memoryx, sub.swarmx, sub.sources)
    return {"cs2": CS2, "cs3": CS3}[name]


def fewest_systems(o: Outcome, system: System, options: PlanOptions) -> int:
    """The fewest wafers that hold ``o``'s model for its inference task (its count being unpublished)."""
    from wse.wafer.inference import place

    s = shape(o.model)
    context = o.prompt + o.new_tokens if o.kind in ("generate", "output", "ttft") else o.seq_len
    prompt_tokens = o.batch * o.prompt if o.prompt else 0
    layers = model_layers(s, context, attention_probs_stashed=False)
    return place(s, system, layers, options, 10**4, o.batch, context, prompt_tokens)["need"]


def simulate(o: Outcome, options: PlanOptions | None = None) -> float:
    """The simulator's figure for a throughput or latency outcome (``kind`` train, prefill, decode, generate, output,
    ttft), in the outcome's unit."""
    from wse.plan import make_plan

    options = options or PlanOptions()
    system = system_of(o.system)
    systems = o.systems or fewest_systems(o, system, options)
    s = shape(o.model)
    if o.kind == "train":
        plan = make_plan(s, system, systems=systems, mode=o.mode, batch_size=o.batch, seq_len=o.seq_len,
                         options=options)
        return plan.tokens_per_s / o.seq_len
    if o.kind in ("prefill", "decode"):
        plan = make_plan(s, system, systems=systems, task=o.kind, batch_size=o.batch, seq_len=o.seq_len,
                         prompt_len=o.prompt or None, options=options)
        return plan.tokens_per_s_per_request
    plan = make_plan(s, system, systems=systems, task="generate", batch_size=o.batch, prompt_len=o.prompt,
                     new_tokens=o.new_tokens, options=options)
    return {"generate": plan.tokens_per_s_per_request, "ttft": plan.time_to_first_token_s,
            "output": plan.details["decode_tokens_per_s_per_request"]}[o.kind]


def outcome_row(o: Outcome, options: PlanOptions | None = None) -> dict:
    """One row: the outcome's configuration, the published and simulated figures, the distance, the source."""
    config = (f"{o.model}, {o.systems or 'fewest'} x {system_of(o.system).name}, "
              + (f"{o.batch} x {o.seq_len}" if o.kind == "train" else
                 f"batch {o.batch}, " + (f"prompt {o.prompt} + {o.new_tokens} new" if o.new_tokens else
                                         f"prompt {o.prompt}" if o.prompt else f"context {o.seq_len}")))
    label = {"train": "training", "prefill": "prefill", "decode": "decode", "generate": "end to end",
             "output": "output speed", "ttft": "time to first token"}[o.kind]
    extra = {"id": o.id, "release": o.release, "confidence": o.confidence, "note": o.note, "group": group_of(o)}
    try:
        simulated = simulate(o, options)
    except PlanError as err:
        return row(f"{o.id} {label}, {config}", o.published, f"refused: {err}", o.source, o.unit, "miss", **extra)
    return row(f"{o.id} {label}, {config}" + (f" ({o.mode})" if o.mode != "streaming" else ""), o.published,
               simulated, o.source, o.unit, **extra)


def group_of(o: Outcome) -> str:
    """The part of the table a row belongs to, for the per-group summary lines."""
    if o.note.startswith("decoder-shaped proxy"):
        return "proxies (encoders, a protein model)"
    if o.kind == "train":
        return f"training on {system_of(o.system).name}"
    return "inference, WaferLLM on WSE-2" if o.system == "waferllm" else "inference, Cerebras' service on CS-3"


def table6_rows(options: PlanOptions | None = None) -> list[dict]:
    """Per-system utilisation (paper FLOPs) relative to one CS-2 on 111M, at the paper's systems and batches."""
    from wse.plan import make_plan

    measured = {}
    for name, (systems, per_system, _) in TABLE6.items():
        plan = make_plan(CEREBRAS_GPT[name], CS2, mode="streaming", systems=systems, batch_size=systems * per_system,
                         options=options)
        measured[name] = plan.details["utilization_paper"] * systems / plan.details["systems_used"]
    base = measured["111M"]
    return [row(f"utilisation relative to 111M, {name} ({s} x CS-2, {b} seqs each)", rel, measured[name] / base,
                TABLE6_SOURCE, id=f"R-{name}") for name, (s, b, rel) in TABLE6.items() if name != "111M"]


def scaling_rows(options: PlanOptions | None = None) -> list[dict]:
    """Strong-scaling efficiency of the paper's multi-system runs (Table 6's systems and batches) against 'linear
    within 9%': tokens/s on n systems over n times one system's, same global batch."""
    from wse.plan import make_plan

    out = []
    for name, (systems, per_system, _) in TABLE6.items():
        if systems == 1:
            continue
        plan = make_plan(CEREBRAS_GPT[name], CS2, mode="streaming", systems=systems, batch_size=systems * per_system,
                         options=options)
        eff = next(p.efficiency for p in plan.scaling if p.systems == systems)
        out.append(row(f"scaling efficiency, {name} on {systems} CS-2 ({systems * per_system} seqs)",
                       LINEAR_SCALING[0], eff, LINEAR_SCALING[1], id=f"S-{name}",
                       distance="meets" if eff >= LINEAR_SCALING[0] else f"{eff / LINEAR_SCALING[0] - 1:+.0%}",
                       error=0.0 if eff >= LINEAR_SCALING[0] else eff / LINEAR_SCALING[0] - 1))
    return out


def flops_rows() -> list[dict]:
    """Total training FLOPs by the paper's convention (wse.costs) against the published totals."""
    out = []
    for name, published in TRAINING_FLOPS.items():
        s = CEREBRAS_GPT[name]
        layers = model_layers(s, 2048)
        total = paper_training_flops_per_token(layers, s) * 20 * parameters(layers)
        out.append(row(f"training FLOPs, {name} (paper convention)", published, total, CEREBRAS_GPT_CARD, "FLOP",
                       id=f"F-{name}"))
    return out


def kernel_rows(options: PlanOptions | None = None) -> list[dict]:
    """WaferLLM's kernel figures against the inference kernel model: MeshGEMM's 'above 70%' (a bound at a size not
    stated: where the model reaches it) and the 16K x 16K GEMV's 'about a microsecond'."""
    step = (options or PlanOptions()).kernel_step_cycles
    side = meshgemm_side(CS2.chip, step)
    at_16k = meshgemm_efficiency(CS2.chip, step, 16384)
    return [row("K1 MeshGEMM on 720 x 720 WSE-2 cores", MESHGEMM["efficiency"],
                f"70% from a {side:,} cube ({at_16k:.0%} at 16,384)", MESHGEMM["source"], "of peak",
                distance="consistent" if side else "miss", id="K1", group="kernels"),
            row("K2 GEMV 16K x 16K on 720 x 720 WSE-2 cores", GEMV_CHECK["seconds"], gemv_check(CS2.chip, step),
                GEMV_CHECK["source"], "s", id="K2", group="kernels")]


def check_rows() -> list[dict]:
    """Capacity checks (not throughput, in neither table): MemoryX against Cerebras' model-size pairings, and
    whether 1T (16 CS-3) and 24T models plan with a 1,200 TB MemoryX."""
    from wse.plan import make_plan

    opts = PlanOptions()
    out = [row(f"parameters a {c / 1e15:g} PB MemoryX holds ({opts.memoryx_bytes_per_param} B/param)", p,
               c / opts.memoryx_bytes_per_param, src, "parameters") for c, p, src in MEMORYX_PAIRINGS]
    for name, source in (("gpt-1t", SANDIA_1T), ("gpt-24t", MEMORYX_PAIRINGS[0][2])):
        s = shape(name)
        try:
            plan = make_plan(s, CS3, systems=16, mode="streaming", memoryx="1200TB")
            simulated = (f"plans: {plan.tokens_per_s:,.0f} tokens/s, {plan.utilization:.0%} of peak, batch "
                         f"{plan.batch_size}, {plan.details['micro_batches']} micro-batches, offload "
                         f"{plan.details['offload']}")
        except PlanError as err:
            simulated = f"refused: {err}"
        out.append(row(f"{name} ({parameters(model_layers(s, 1)) / 1e12:.2f}T) on 16 CS-3, 1,200 TB MemoryX",
                       "trained" if name == "gpt-1t" else "sold for 24T", simulated, source,
                       distance="plans" if simulated.startswith("plans") else "miss"))
    return out


def summary(rows: list[dict]) -> dict:
    """Mean and max |error| over the rows with a numeric error, and how many are within 10% and 25%."""
    errors = [abs(r["error"]) for r in rows if isinstance(r.get("error"), (int, float)) and math.isfinite(r["error"])]
    if not errors:
        return {"rows": 0}
    return {"rows": len(errors), "mean_abs_error": sum(errors) / len(errors), "max_abs_error": max(errors),
            "within_10": sum(e <= 0.10 for e in errors), "within_25": sum(e <= 0.25 for e in errors),
            "not_numeric": len(rows) - len(errors)}


def comparison(options: PlanOptions | None = None) -> dict:
    """Both tables, their summaries and the capacity checks (module docstring)."""
    calibration = [outcome_row(o, options) for o in CALIBRATION] + table6_rows(options) + scaling_rows(options) \
        + flops_rows()
    validation = [outcome_row(o, options) for o in VALIDATION if o.kind not in ("gemm", "gemv")] + kernel_rows(options)
    groups = {g: summary([r for r in validation if r.get("group") == g])
              for g in dict.fromkeys(r.get("group") for r in validation)}
    return {"calibration": calibration, "validation": validation, "checks": check_rows(),
            "summary": {"calibration": summary(calibration), "validation": summary(validation)},
            "validation_groups": groups}

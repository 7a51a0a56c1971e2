"""Four claims made about Cerebras hardware (exaflop, petabyte, energy, scale-out), checked against published specifications and the simulator.

Each claim gets three readings of the evidence:

- ``like_for_like``: the figure that matches the claim as worded (one chip, dense arithmetic, on-chip memory, chips
  joined into one machine).
- ``generous``: the best figure any published reading offers (sparsity-assisted "AI" FLOP/s, a whole cluster,
  external MemoryX, ...).
- the claim's ``threshold`` (1 exaflop, 1 PB, "hundreds" = 100x, ...).

The verdict follows from those numbers and nothing else (``verdict``): ``supported`` when the like-for-like figure
reaches the threshold, ``misleading`` when only a different reading does (the number exists but describes something
else), ``unsupported`` when no reading does. Every claim function takes its figures as keyword arguments, defaulting
to the sourced constants below and to the simulator (wse/), so a test or a what-if can change one figure and watch
the verdict follow. No JAX here: ``wse claims`` is instant.

Figures that wse/hardware.py does not model (sparse "AI" peaks, power, the largest MemoryX options, the GPU the claim
compares against) are kept here, each with its value and source, tagged as in shared/reference/wse-hardware.md.
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED, MISLEADING, UNSUPPORTED = "supported", "misleading", "unsupported"


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    source: str

    def to_dict(self) -> dict:
        return {"value": self.value, "unit": self.unit, "source": self.source}


PUBLISHED = {
    "cs2_sparse_peak_flops": Figure(62.5e15, "FLOP/s", "V: Cerebras CS-2 product page, 62.5 PFLOP/s 'AI compute' (with sparsity)"),
    "cs3_sparse_peak_flops": Figure(125e15, "FLOP/s", "V: Cerebras CS-3 product page, 125 PFLOP/s 'AI compute' (with sparsity)"),
    "andromeda_claim_flops": Figure(1e18, "FLOP/s", "V: Cerebras Andromeda announcement (Nov 2022), '1 exaflop AI' over 16 CS-2, sparse"),
    "andromeda_dense_flops": Figure(120e15, "FLOP/s", "V/S: Andromeda coverage, 120 PFLOP/s dense at 16-bit"),
    "andromeda_power_w": Figure(500e3, "W", "V/S: Andromeda announcement, 16 CS-2 in about 500 kW"),
    "wse2_power_w": Figure(15e3, "W", "S: press coverage of CS-2, about 15 kW for the wafer (system power unpublished)"),
    "wse2_sram_bytes": Figure(40e9, "B", "V: WSE-2 product page, 40 GB on-chip SRAM"),
    "wse3_sram_bytes": Figure(44e9, "B", "V: WSE-3 product page, 44 GB on-chip SRAM"),
    "memoryx_cs2_max_bytes": Figure(2.4e15, "B", "V: MemoryX for CS-2, options 4 TB to 2.4 PB (external DRAM + flash)"),
    "memoryx_cs3_max_bytes": Figure(1.2e15, "B", "V/S: MemoryX for CS-3, options 1.5 TB / 12 TB / 1.2 PB"),
    "h100_bf16_dense_flops": Figure(989e12, "FLOP/s", "V: NVIDIA H100 SXM5 datasheet, 989 TFLOP/s BF16 dense (1,979 with sparsity)"),
    "h100_power_w": Figure(700.0, "W", "V: NVIDIA H100 SXM5 datasheet, max thermal design power 700 W"),
}

# The claims' own thresholds.
EXAFLOP = 1e18
PETABYTE = 1e15
# "hundreds of times": the most lenient reading, 100x.
HUNDREDS = 100.0
# Scaling efficiency (tokens/s at N systems over N x one system's) from which a system is said to "scale
# horizontally": 80 % at 16 systems is the usual bar in the HPC literature for good strong scaling; a named
# judgement, not a published figure.
SCALING_EFFICIENCY_BAR = 0.8
# Chips that are "stacked" into one machine exchange data at a rate comparable to their own on-chip fabric (that is
# what lets a model be split across them as if it were one chip, e.g. HBM stacks or NVLink domains are within two
# orders of magnitude of on-die bandwidth). A named judgement: links between scale-out units below 1 % of the
# on-chip fabric bandwidth make them a cluster of separate machines, usable only data parallel.
STACK_BANDWIDTH_FRACTION = 0.01

# The model the simulated figures are computed on: the largest Cerebras-GPT, trained in weight-streaming mode.
CLAIM_MODEL = "13B"
CLAIM_SEQ_LEN = 2048


def verdict(like_for_like: float, generous: float, threshold: float) -> str:
    """supported if the like-for-like figure reaches the threshold, misleading if only the generous one does."""
    if like_for_like >= threshold:
        return SUPPORTED
    if generous >= threshold:
        return MISLEADING
    return UNSUPPORTED


def _pub(*names: str) -> dict:
    return {n: PUBLISHED[n].to_dict() for n in names}


def _fmt(x: float, unit: str) -> str:
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


# ----- the simulator's figures ---------------------------------------------------------------------------------
def simulated_training(model: str = CLAIM_MODEL, cluster: str = "andromeda", seq_len: int = CLAIM_SEQ_LEN) -> dict:
    """Peak and achieved FLOP/s of one CS-2 and of a cluster training ``model`` in weight-streaming mode (the wse
    planner at the preset's published batch size), plus the 16-system scaling efficiency."""
    from model.config import get_config
    from wse.wafer.hardware import CLUSTERS, CS2
    from wse.wafer.streaming import plan_streaming

    cfg = get_config(model)
    cl = CLUSTERS[cluster]
    one = plan_streaming(cfg, CS2, systems=1, batch_size=cfg.batch_size, seq_len=seq_len)
    many = plan_streaming(cfg, cl.system, systems=cl.n_systems, batch_size=cfg.batch_size, seq_len=seq_len)
    eff = next(p.efficiency for p in many.scaling if p.systems == cl.n_systems)
    return {
        "model": model, "batch_size": cfg.batch_size, "seq_len": seq_len, "cluster": cl.name, "systems": cl.n_systems,
        "cs2_peak_dense_flops": CS2.chip.peak_flops,
        "cs2_marketed_peak_dense_flops": CS2.chip.marketed_peak_flops,
        "cs2_achieved_flops": one.details["model_flops_per_step"] / one.step_time_s,
        "cs2_utilization": one.utilization,
        "cluster_peak_dense_flops": cl.n_systems * CS2.chip.peak_flops,
        "cluster_achieved_flops": many.details["model_flops_per_step"] / many.step_time_s,
        "cluster_tokens_per_s": many.tokens_per_s,
        "cluster_days_to_train": many.time_to_train_s / 86400,
        "scaling_efficiency": eff,
        "flop_convention": "ours (wse/costs.py): dense matmuls, attention scores and values once, logits; backward 2x "
                           "(the Cerebras-GPT paper's convention, which `wse info` also gives, counts more)",
    }


# ----- the four claims -------------------------------------------------------------------------------------------
def claim_exaflop(*, single_chip_dense_flops: float | None = None, single_chip_sparse_flops: float | None = None,
                  cluster_systems: int | None = None, sim: dict | None = None) -> dict:
    """'over 1 exaflop on a single chip'."""
    from wse.wafer.hardware import CLUSTERS

    sim = sim or simulated_training()
    dense = sim["cs2_marketed_peak_dense_flops"] if single_chip_dense_flops is None else single_chip_dense_flops
    sparse = PUBLISHED["cs2_sparse_peak_flops"].value if single_chip_sparse_flops is None else single_chip_sparse_flops
    n = CLUSTERS["andromeda"].n_systems if cluster_systems is None else cluster_systems
    cluster_sparse = n * sparse  # what Andromeda's '1 exaflop AI' is: 16 x 62.5 PFLOP/s sparse
    generous = max(dense, sparse, cluster_sparse)
    v = verdict(dense, generous, EXAFLOP)
    if v == SUPPORTED:
        reason = f"one chip's dense peak is {_fmt(dense, 'FLOP/s')}, at or above 1 EFLOP/s."
    elif v == MISLEADING:
        reason = (f"one chip peaks at {_fmt(dense, 'FLOP/s')} dense ({_fmt(sparse, 'FLOP/s')} with sparsity); the "
                  f"exaflop is {n} systems' sparsity-assisted peak ({_fmt(cluster_sparse, 'FLOP/s')}), "
                  f"{EXAFLOP / dense:.0f}x what one chip does densely.")
    else:
        reason = (f"no published reading reaches 1 EFLOP/s: the best is {_fmt(generous, 'FLOP/s')} "
                  f"({n} systems, sparse).")
    return {
        "claim": "over 1 exaflop on a single chip",
        "published": _pub("cs2_sparse_peak_flops", "andromeda_claim_flops", "andromeda_dense_flops"),
        "simulated": {
            "single_chip_dense_peak_flops": dense,
            "single_chip_usable_grid_peak_flops": sim["cs2_peak_dense_flops"],
            "single_chip_achieved_flops_13B": sim["cs2_achieved_flops"],
            "andromeda_dense_peak_flops": sim["cluster_peak_dense_flops"],
            "andromeda_achieved_flops_13B": sim["cluster_achieved_flops"],
            "andromeda_sparse_peak_flops": cluster_sparse,
            "threshold_flops": EXAFLOP,
        },
        "verdict": v,
        "reason": reason,
    }


def claim_petabyte(*, on_chip_bytes: float | None = None, external_bytes: float | None = None) -> dict:
    """'over 1 PB of memory'."""
    from model.config import get_config
    from wse.assumptions import PlanOptions
    from wse.wafer.hardware import CS2, CS3

    raw = CS3.chip.cores_marketed * CS3.chip.sram_bytes_per_core  # the largest wafer's SRAM from its core count
    on_chip = raw if on_chip_bytes is None else on_chip_bytes
    external = max(PUBLISHED["memoryx_cs2_max_bytes"].value, PUBLISHED["memoryx_cs3_max_bytes"].value) \
        if external_bytes is None else external_bytes
    opts = PlanOptions()
    state_13b = get_config(CLAIM_MODEL).parameters * (opts.weight_bytes + opts.optimizer_bytes)
    v = verdict(on_chip, max(on_chip, external), PETABYTE)
    if v == SUPPORTED:
        reason = f"the wafer itself holds {_fmt(on_chip, 'B')}, at or above 1 PB."
    elif v == MISLEADING:
        reason = (f"the wafer holds {_fmt(on_chip, 'B')} of SRAM, {PETABYTE / on_chip:,.0f}x less than 1 PB; the "
                  f"petabyte figures are MemoryX options ({_fmt(external, 'B')}), external DRAM and flash that "
                  "stream weights over the system I/O.")
    else:
        reason = f"neither the wafer ({_fmt(on_chip, 'B')}) nor the largest MemoryX ({_fmt(external, 'B')}) reaches 1 PB."
    return {
        "claim": "over 1 PB of memory",
        "published": _pub("wse2_sram_bytes", "wse3_sram_bytes", "memoryx_cs2_max_bytes", "memoryx_cs3_max_bytes"),
        "simulated": {
            "on_chip_sram_bytes": on_chip,
            "cs2_plannable_sram_bytes": CS2.grid().memory_bytes,
            "cs3_plannable_sram_bytes": CS3.grid().memory_bytes,
            "memoryx_default_bytes": CS2.memoryx.capacity_bytes,
            "largest_external_bytes": external,
            "train_state_13B_bytes": state_13b,
            "threshold_bytes": PETABYTE,
        },
        "verdict": v,
        "reason": reason,
    }


def claim_energy(*, wafer_power_w: float | None = None, gpu_flops: float | None = None,
                 gpu_power_w: float | None = None, wafer_dense_flops: float | None = None,
                 wafer_sparse_flops: float | None = None, sim: dict | None = None) -> dict:
    """'energy efficiency hundreds of times a GPU' (FLOP/s per watt against an H100 at its published peak)."""
    sim = sim or simulated_training()
    power = PUBLISHED["wse2_power_w"].value if wafer_power_w is None else wafer_power_w
    g_flops = PUBLISHED["h100_bf16_dense_flops"].value if gpu_flops is None else gpu_flops
    g_power = PUBLISHED["h100_power_w"].value if gpu_power_w is None else gpu_power_w
    dense = sim["cs2_marketed_peak_dense_flops"] if wafer_dense_flops is None else wafer_dense_flops
    sparse = PUBLISHED["cs2_sparse_peak_flops"].value if wafer_sparse_flops is None else wafer_sparse_flops
    gpu_eff = g_flops / g_power
    dense_ratio = dense / power / gpu_eff
    sparse_ratio = sparse / power / gpu_eff
    system_power = PUBLISHED["andromeda_power_w"].value / sim["systems"]
    achieved_ratio = sim["cluster_achieved_flops"] / PUBLISHED["andromeda_power_w"].value / gpu_eff
    v = verdict(dense_ratio, max(dense_ratio, sparse_ratio), HUNDREDS)
    if v == SUPPORTED:
        reason = f"dense peak per watt is {dense_ratio:.0f}x an H100's."
    elif v == MISLEADING:
        reason = (f"dense peak per watt is {dense_ratio:.2g}x an H100's; only the sparsity-assisted peak reaches "
                  f"{sparse_ratio:.0f}x.")
    else:
        reason = (f"peak FLOP/s per watt is {dense_ratio:.2g}x an H100's dense ({sparse_ratio:.2g}x even counting "
                  f"sparsity), {HUNDREDS / max(dense_ratio, sparse_ratio):.0f}x short of 'hundreds'; no published measurement "
                  "supports it.")
    return {
        "claim": "energy efficiency hundreds of times a GPU",
        "published": _pub("wse2_power_w", "cs2_sparse_peak_flops", "andromeda_power_w", "h100_bf16_dense_flops",
                          "h100_power_w"),
        "simulated": {
            "wafer_dense_flops_per_w": dense / power,
            "wafer_sparse_flops_per_w": sparse / power,
            "andromeda_13B_achieved_flops_per_w": sim["cluster_achieved_flops"] / PUBLISHED["andromeda_power_w"].value,
            "system_power_w_from_andromeda": system_power,
            "h100_peak_flops_per_w": gpu_eff,
            "ratio_dense_peak": dense_ratio,
            "ratio_sparse_peak": sparse_ratio,
            "ratio_andromeda_13B_achieved_vs_h100_peak": achieved_ratio,
            "threshold_ratio": HUNDREDS,
        },
        "verdict": v,
        "reason": reason,
    }


def claim_scaling(*, efficiency: float | None = None, link_bytes_per_s: float | None = None,
                  fabric_bytes_per_s: float | None = None, sim: dict | None = None) -> dict:
    """'scales horizontally by stacking chips'.

    Like-for-like needs both halves: the simulated 16-system efficiency reaches the bar AND the units joined are
    chips acting as one machine (links between them within STACK_BANDWIDTH_FRACTION of the on-chip fabric).
    Generous: scaling out at all, whatever the unit."""
    from wse.wafer.hardware import CS2

    sim = sim or simulated_training()
    eff = sim["scaling_efficiency"] if efficiency is None else efficiency
    link = CS2.stream_bandwidth_bytes_per_s() if link_bytes_per_s is None else link_bytes_per_s
    fabric = CS2.chip.fabric_bandwidth_bits_per_s / 8 if fabric_bytes_per_s is None else fabric_bytes_per_s
    fraction = link / fabric
    stacked = fraction >= STACK_BANDWIDTH_FRACTION
    # Scaled to the bar so that verdict()'s threshold is the efficiency bar for both readings.
    v = verdict(eff if stacked else 0.0, eff, SCALING_EFFICIENCY_BAR)
    n = sim["systems"]
    if v == SUPPORTED:
        reason = f"{n} chips joined at {fraction:.1%} of on-chip bandwidth keep {eff:.0%} scaling efficiency."
    elif v == MISLEADING:
        reason = (f"scale-out keeps {eff:.0%} efficiency at {n} systems, but as data parallelism of whole CS-2 systems "
                  f"over SwarmX ({_fmt(link, 'B/s')} each, {fraction:.1e} of the wafer's fabric), not by stacking chips.")
    else:
        reason = f"simulated efficiency at {n} systems is {eff:.0%}, below the {SCALING_EFFICIENCY_BAR:.0%} bar."
    return {
        "claim": "scales horizontally by stacking chips",
        "published": {
            "scale_out": {"value": "data parallel across whole systems via SwarmX; up to 192 CS-2 or 2,048 CS-3",
                          "unit": "", "source": "V: Cerebras weight-streaming / SwarmX documentation (Hot Chips 33)"},
            "pipelined_scale_out": {"value": "layer-pipelined mode runs on one system only", "unit": "",
                                    "source": "V: Cerebras execution-mode documentation"},
            "system_io": {"value": CS2.io_bytes_per_s, "unit": "B/s", "source": CS2.sources.get("io_bytes_per_s", "")},
        },
        "simulated": {
            "model": sim["model"],
            "systems": n,
            "scaling_efficiency": eff,
            "cluster_tokens_per_s": sim["cluster_tokens_per_s"],
            "cluster_days_to_train": sim["cluster_days_to_train"],
            "interconnect_bytes_per_s": link,
            "on_chip_fabric_bytes_per_s": fabric,
            "interconnect_fraction_of_fabric": fraction,
            "efficiency_bar": SCALING_EFFICIENCY_BAR,
            "stack_bandwidth_fraction": STACK_BANDWIDTH_FRACTION,
        },
        "verdict": v,
        "reason": reason,
    }


def check_claims() -> dict:
    """All four claims: {"claims": [{"claim", "published", "simulated", "verdict", "reason"}], "simulation": {...}}."""
    sim = simulated_training()
    return {
        "claims": [claim_exaflop(sim=sim), claim_petabyte(), claim_energy(sim=sim), claim_scaling(sim=sim)],
        "simulation": sim,
    }


def markdown_table(result: dict) -> str:
    """The claims as a Markdown table (README's Performance section)."""
    lines = ["| claim | verdict | why |", "|---|---|---|"]
    for c in result["claims"]:
        lines.append(f"| {c['claim']} | **{c['verdict']}** | {c['reason']} |")
    return "\n".join(lines)

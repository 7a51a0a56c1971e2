"""Cerebras hardware as data: WSE-1/2/3 chips, CS-1/2/3 systems, MemoryX, SwarmX and the named clusters.

Every figure carries its source in ``sources`` (field name -> "TAG: where it comes from"), with the tags of
``shared/reference/wse-hardware.md``: V vendor, P peer-reviewed paper, S press/secondary, D derived here by arithmetic,
U unpublished (a named field with a stated default and the reason for it), F from a user's system file. The planners
read only the fields; ``unpublished()`` lists the U and F figures a plan used, so a plan says what it assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, Mapping

from wse.errors import PlanError
from wse.grid import Grid

TAGS = {
    "V": "vendor (product pages, glossary, SDK documentation, Hot Chips talks)",
    "P": "peer-reviewed paper",
    "S": "press or secondary source",
    "D": "derived here by arithmetic from other figures",
    "U": "unpublished: a named parameter with a stated default and the reason for it",
    "F": "from a user's system file",
}


def source_tag(source: str) -> str:
    """The tag letter(s) of a source string such as ``"V: Cerebras SDK docs"`` (``"V/S"`` for mixed sources)."""
    return source.split(":", 1)[0].strip()


@dataclass(frozen=True)
class Chip:
    """A wafer-scale engine: its usable core grid and what one core can hold, compute and send."""

    name: str
    cores_marketed: int
    grid_cols: int
    grid_rows: int
    sram_bytes_per_core: int
    sram_reserved_bytes_per_core: int
    clock_hz: float
    fp16_simd_width: int
    sram_bandwidth_bytes_per_s: float
    fabric_bandwidth_bits_per_s: float
    link_bytes_per_cycle: int
    hop_latency_cycles: float
    layer_switch_cycles: float
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def flops_per_core_per_cycle(self) -> int:
        """A SIMD lane does one fused multiply-add (2 FLOPs) per cycle."""
        return 2 * self.fp16_simd_width

    @property
    def usable_cores(self) -> int:
        return self.grid_cols * self.grid_rows

    @property
    def peak_flops(self) -> float:
        """Dense FP16 peak of the usable grid (what a plan can use; below the marketing core count's)."""
        return self.usable_cores * self.flops_per_core_per_cycle * self.clock_hz

    @property
    def marketed_peak_flops(self) -> float:
        """Dense FP16 peak over the marketed core count (the [D] row of the reference table: ~7.5 PFLOP/s for WSE-2)."""
        return self.cores_marketed * self.flops_per_core_per_cycle * self.clock_hz

    def grid(self) -> Grid:
        """The chip as a grid of cells for the planners."""
        return Grid(
            name=self.name, kind="wafer", rows=self.grid_rows, cols=self.grid_cols,
            memory_bytes_per_cell=self.sram_bytes_per_core - self.sram_reserved_bytes_per_core,
            flops_per_cell=self.flops_per_core_per_cycle * self.clock_hz,
            link_bytes_per_s=self.link_bytes_per_cycle * self.clock_hz,
            hop_latency_s=self.hop_latency_cycles / self.clock_hz,
            layer_switch_s=self.layer_switch_cycles / self.clock_hz,
        )


@dataclass(frozen=True)
class MemoryX:
    """External weight and optimizer store; streams weights to the systems and runs the optimizer step itself."""

    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float
    optimizer_params_per_s: float
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class SwarmX:
    """The broadcast/reduce tree between MemoryX and the systems (weights down, summed gradients up)."""

    name: str
    link_bandwidth_bytes_per_s: float
    links_per_system: int
    fan_out: int
    level_latency_s: float
    max_systems: int
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def levels(self, n_systems: int) -> int:
        """Tree levels between MemoryX and n systems: one hop for a single system, then log_fan_out(n) more."""
        levels, reach = 1, 1
        while reach < n_systems:
            reach *= self.fan_out
            levels += 1
        return levels

    def latency_s(self, n_systems: int) -> float:
        return self.levels(n_systems) * self.level_latency_s


@dataclass(frozen=True)
class System:
    """A CS-x system: one wafer, its I/O to the outside, and (from CS-2 on) the MemoryX/SwarmX it streams from."""

    name: str
    chip: Chip
    io_bytes_per_s: float
    memoryx: MemoryX | None
    swarmx: SwarmX | None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def grid(self) -> Grid:
        return self.chip.grid()

    def stream_bandwidth_bytes_per_s(self) -> float:
        """Weights in (or gradients out) per system: the slowest of system I/O, MemoryX and the SwarmX links."""
        if self.memoryx is None or self.swarmx is None:
            raise PlanError(f"{self.name} has no MemoryX/SwarmX, so it cannot stream weights; use --system cs2 or cs3")
        swarm = self.swarmx.link_bandwidth_bytes_per_s * self.swarmx.links_per_system
        return min(self.io_bytes_per_s, self.memoryx.bandwidth_bytes_per_s, swarm)


@dataclass(frozen=True)
class Cluster:
    """A named installation: n identical systems sharing MemoryX through SwarmX."""

    name: str
    system: System
    n_systems: int
    claim: str
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


_SWITCH_WHY = (
    "U: a core that holds several layers reloads its task code and router colours when it moves from one layer to the "
    "next; Cerebras does not publish the cost. 2,000 cycles (~2 us) is assumed: loading 24 colour configurations and "
    "switching tasks is tens to hundreds of cycles, and the region must also drain its in-flight wavefront"
)
_RESERVED_WHY = (
    "U: a core's 48 KB holds its program, the runtime and fabric I/O buffers as well as data; the SDK does not publish "
    "a fixed split, so 8 KiB (1/6) is assumed reserved"
)

WSE1 = Chip(
    name="WSE-1", cores_marketed=400_000, grid_cols=519, grid_rows=683, sram_bytes_per_core=48 * 1024,
    sram_reserved_bytes_per_core=8 * 1024, clock_hz=1.1e9, fp16_simd_width=4, sram_bandwidth_bytes_per_s=9e15,
    fabric_bandwidth_bits_per_s=100e15, link_bytes_per_cycle=4, hop_latency_cycles=1.0, layer_switch_cycles=2000,
    sources={
        "cores_marketed": "V: Cerebras WSE-1 announcement (Hot Chips 31, 2019)",
        "grid_cols": "U: no usable SDK grid published for WSE-1; WSE-2's usable fraction (88.7%) and aspect (996/757) applied to 400,000 cores",
        "grid_rows": "U: as grid_cols",
        "sram_bytes_per_core": "V: 48 KB per core",
        "sram_reserved_bytes_per_core": _RESERVED_WHY,
        "clock_hz": "U: no clock published for WSE-1; WSE-2's 'up to 1.1 GHz' assumed",
        "fp16_simd_width": "V: 4-wide FP16 SIMD",
        "sram_bandwidth_bytes_per_s": "V: 9 PB/s",
        "fabric_bandwidth_bits_per_s": "V: 100 Pb/s",
        "link_bytes_per_cycle": "V: one 32-bit message to a neighbour per cycle",
        "hop_latency_cycles": "V/P: a hop takes about one cycle (Cerebras SDK docs; WaferLLM, OSDI 2025)",
        "layer_switch_cycles": _SWITCH_WHY,
    },
)

WSE2 = Chip(
    name="WSE-2", cores_marketed=850_000, grid_cols=757, grid_rows=996, sram_bytes_per_core=48 * 1024,
    sram_reserved_bytes_per_core=8 * 1024, clock_hz=1.1e9, fp16_simd_width=4, sram_bandwidth_bytes_per_s=20e15,
    fabric_bandwidth_bits_per_s=220e15, link_bytes_per_cycle=4, hop_latency_cycles=1.0, layer_switch_cycles=2000,
    sources={
        "cores_marketed": "V: Cerebras WSE-2 product page",
        "grid_cols": "V: Cerebras SDK documentation, usable grid 757 columns x 996 rows",
        "grid_rows": "V: Cerebras SDK documentation",
        "sram_bytes_per_core": "V: 48 KB per core",
        "sram_reserved_bytes_per_core": _RESERVED_WHY,
        "clock_hz": "V: up to 1.1 GHz",
        "fp16_simd_width": "V: 4-wide FP16 SIMD",
        "sram_bandwidth_bytes_per_s": "V: 20 PB/s",
        "fabric_bandwidth_bits_per_s": "V: 220 Pb/s",
        "link_bytes_per_cycle": "V: one 32-bit message to a neighbour per cycle",
        "hop_latency_cycles": "V/P: a hop takes about one cycle (Cerebras SDK docs; WaferLLM, OSDI 2025)",
        "layer_switch_cycles": _SWITCH_WHY,
    },
)

WSE3 = Chip(
    name="WSE-3", cores_marketed=900_000, grid_cols=762, grid_rows=1172, sram_bytes_per_core=48 * 1024,
    sram_reserved_bytes_per_core=8 * 1024, clock_hz=1.1e9, fp16_simd_width=8, sram_bandwidth_bytes_per_s=21e15,
    fabric_bandwidth_bits_per_s=214e15, link_bytes_per_cycle=4, hop_latency_cycles=1.0, layer_switch_cycles=2000,
    sources={
        "cores_marketed": "V: Cerebras WSE-3 product page",
        "grid_cols": "V: Cerebras SDK documentation, usable grid 762 columns x 1172 rows",
        "grid_rows": "V: Cerebras SDK documentation",
        "sram_bytes_per_core": "V: 48 KB per core",
        "sram_reserved_bytes_per_core": _RESERVED_WHY,
        "clock_hz": "U: no WSE-3 clock published; WSE-2's 1.1 GHz assumed (the ~15 PFLOP/s [D] figure assumes the same)",
        "fp16_simd_width": "V: 8-wide FP16 SIMD",
        "sram_bandwidth_bytes_per_s": "V: 21 PB/s",
        "fabric_bandwidth_bits_per_s": "V: 214 Pb/s",
        "link_bytes_per_cycle": "V: one 32-bit message to a neighbour per cycle",
        "hop_latency_cycles": "V/P: a hop takes about one cycle (Cerebras SDK docs; WaferLLM, OSDI 2025)",
        "layer_switch_cycles": _SWITCH_WHY,
    },
)

_MX_BW_WHY = "V: the MemoryX glossary says it 'can match or exceed' a system's I/O bandwidth; set equal to the system I/O"
_MX_OPT_WHY = (
    "U: MemoryX runs AdamW itself at an unpublished rate; 5e10 parameters/s is assumed (AdamW moves ~20 bytes of fp32 "
    "state per parameter, so ~1 TB/s of DRAM bandwidth across MemoryX's servers)"
)
_IO_SOURCE = "V: 12 x 100 GbE = 1.2 Tb/s = 150 GB/s"

MEMORYX_CS2 = MemoryX(
    name="MemoryX (CS-2)", capacity_bytes=4e12, bandwidth_bytes_per_s=150e9, optimizer_params_per_s=5e10,
    sources={
        "capacity_bytes": "V: 4 TB to 2.4 PB options for the CS-2 generation; the smallest is used",
        "bandwidth_bytes_per_s": _MX_BW_WHY,
        "optimizer_params_per_s": _MX_OPT_WHY,
    },
)
MEMORYX_CS3 = MemoryX(
    name="MemoryX (CS-3)", capacity_bytes=1.5e12, bandwidth_bytes_per_s=195e9, optimizer_params_per_s=5e10,
    sources={
        "capacity_bytes": "V/S: 1.5 TB / 12 TB / 1.2 PB options for CS-3; the smallest is used",
        "bandwidth_bytes_per_s": _MX_BW_WHY,
        "optimizer_params_per_s": _MX_OPT_WHY,
    },
)

_SWX_SOURCES = {
    "link_bandwidth_bytes_per_s": "V: SwarmX links are 100 Gb/s = 12.5 GB/s",
    "links_per_system": "V: each system attaches with 12 x 100 GbE",
    "fan_out": "V: SwarmX glossary: each node performs one 1:4 broadcast-reduce (or two 1:2), a fan-out of 4 per level",
    "level_latency_s": "U: per-level latency is unpublished; 2 us is assumed (a 100 GbE switch hop plus store-and-forward of a frame)",
}
SWARMX_CS2 = SwarmX(
    name="SwarmX (CS-2)", link_bandwidth_bytes_per_s=12.5e9, links_per_system=12, fan_out=4, level_latency_s=2e-6,
    max_systems=192, sources={**_SWX_SOURCES, "max_systems": "V: up to 192 CS-2 per cluster"},
)
SWARMX_CS3 = SwarmX(
    name="SwarmX (CS-3)", link_bandwidth_bytes_per_s=12.5e9, links_per_system=16, fan_out=4, level_latency_s=2e-6,
    max_systems=2048, sources={
        **_SWX_SOURCES, "max_systems": "V/S: up to 2,048 CS-3 per cluster",
        "links_per_system": "U: a CS-3's port count is unpublished; 16 x 100 GbE (200 GB/s) is assumed, enough to "
                            "carry its documented I/O (+30% over CS-2, 195 GB/s)"},
)

CS1 = System(
    name="CS-1", chip=WSE1, io_bytes_per_s=150e9, memoryx=None, swarmx=None,
    sources={
        "io_bytes_per_s": _IO_SOURCE,
        "memoryx": "V/S: weight streaming, MemoryX and SwarmX were introduced with CS-2 (Hot Chips 33, 2021); CS-1 runs layer-pipelined only",
    },
)
CS2 = System(name="CS-2", chip=WSE2, io_bytes_per_s=150e9, memoryx=MEMORYX_CS2, swarmx=SWARMX_CS2,
             sources={"io_bytes_per_s": _IO_SOURCE})
CS3 = System(
    name="CS-3", chip=WSE3, io_bytes_per_s=195e9, memoryx=MEMORYX_CS3, swarmx=SWARMX_CS3,
    sources={"io_bytes_per_s": "V: Cerebras' CS-3 training documentation gives +30% ingress/egress over CS-2's 150 GB/s "
                               "(a product page says 'same'; the documented figure is used)"},
)

# The MemoryX capacities Cerebras sells with each system, smallest first (a plan uses the smallest that holds the
# model unless told otherwise; ``with_memoryx`` makes the system with another one).
MEMORYX_CAPACITIES: dict[str, tuple[tuple[float, str], ...]] = {
    "CS-2": ((4e12, "V: 4 TB, the smallest CS-2 MemoryX"), (2.4e15, "V: 2.4 PB, the largest CS-2 MemoryX")),
    "CS-3": ((1.5e12, "V/S: 1.5 TB CS-3 option"), (12e12, "V/S: 12 TB CS-3 option"),
             (1.2e15, "V/S: 1,200 TB CS-3 option, marketed for 24T-parameter models"),
             (2.4e15, "V/S: 2.4 PB, marketed for 120T-parameter models")),
}

SYSTEMS: dict[str, System] = {"cs1": CS1, "cs2": CS2, "cs3": CS3}
CLUSTERS: dict[str, Cluster] = {
    "andromeda": Cluster("Andromeda", CS2, 16, "'1 exaflop AI' (sparse); 120 PFLOP/s dense",
                         {"n_systems": "V/S: 16 CS-2, 500 kW"}),
    "cg1": Cluster("Condor Galaxy 1", CS2, 64, "'4 exaflops' (sparse)", {"n_systems": "V: 64 CS-2"}),
    "cg3": Cluster("Condor Galaxy 3", CS3, 64, "'8 exaflops' (sparse)", {"n_systems": "V: 64 CS-3"}),
}


# ----- provenance -------------------------------------------------------------------------------------------------
def figures(obj: Any, prefix: str | None = None) -> dict[str, tuple[Any, str]]:
    """Every numeric figure of a spec (recursing into chip, MemoryX, SwarmX) as qualified name -> (value, source)."""
    prefix = prefix or getattr(obj, "name", type(obj).__name__)
    out: dict[str, tuple[Any, str]] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in ("name", "sources", "claim"):
            continue
        if is_dataclass(value):
            out.update(figures(value, value.name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}.{f.name}"] = (value, obj.sources.get(f.name, ""))
    return out


def unpublished(*specs: Any) -> dict[str, dict]:
    """The U (unpublished) and F (user file) figures of the given specs: qualified name -> {value, reason}."""
    out = {}
    for spec in specs:
        for name, (value, source) in figures(spec).items():
            if set(source_tag(source).split("/")) & {"U", "F"}:
                out[name] = {"value": value, "reason": source.split(":", 1)[1].strip()}
    return out


# ----- MemoryX sizes and what-if copies -----------------------------------------------------------------------------
_UNITS = (("PB", 1e15), ("TB", 1e12), ("GB", 1e9))


def format_capacity(n_bytes: float) -> str:
    """Bytes as the command line writes a MemoryX size: '1.5TB', '1200TB' (TB from 1 TB up), '234GB' below."""
    if n_bytes >= 1e12:
        return f"{n_bytes / 1e12:.4g}TB"
    return f"{n_bytes / 1e9:.4g}GB"


def parse_capacity(text: str) -> float:
    """'12TB', '1.2PB', '500GB' (or a plain number of bytes) as bytes; PlanError for anything else."""
    value = str(text).strip().upper().replace(" ", "")
    for unit, size in _UNITS:
        if value.endswith(unit):
            value, scale = value[: -len(unit)], size
            break
    else:
        scale = 1.0
    try:
        result = float(value) * scale
    except ValueError:
        result = -1.0
    if not result > 0:
        raise PlanError(f"--memoryx {text!r} is not a size; give one such as 12TB, 1200TB or 1.2PB")
    return result


def memoryx_options(system: System) -> tuple[float, ...]:
    """The published MemoryX capacities (bytes) for this system, smallest first; a custom system has only its own."""
    if system.memoryx is None:
        return ()
    published = tuple(c for c, _ in MEMORYX_CAPACITIES.get(system.name, ()))
    return published or (system.memoryx.capacity_bytes,)


def with_memoryx(system: System, capacity_bytes: float) -> System:
    """A copy of a system whose MemoryX holds ``capacity_bytes`` (tagged with the option's source when published)."""
    if system.memoryx is None:
        raise PlanError(f"{system.name} has no MemoryX; use --system cs2 or cs3")
    source = dict(MEMORYX_CAPACITIES.get(system.name, ())).get(capacity_bytes, "U: a MemoryX size chosen for a what-if")
    mx = replace(system.memoryx, capacity_bytes=float(capacity_bytes),
                 sources={**system.memoryx.sources, "capacity_bytes": source})
    return replace(system, memoryx=mx)


def with_chip(system: System, **changes) -> System:
    """A copy of a system with some chip fields changed (the changed figures are tagged U: they are what-ifs)."""
    sources = {**system.chip.sources, **{k: "U: changed from the published value for a what-if" for k in changes}}
    return replace(system, chip=replace(system.chip, **changes, sources=sources))

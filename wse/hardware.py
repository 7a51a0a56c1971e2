"""Cerebras hardware as data: WSE-1/2/3 chips, CS-1/2/3 systems, MemoryX, SwarmX and the named clusters.

Every figure carries its source in ``sources`` (field name -> "TAG: where it comes from"), with the tags of
``shared/reference/wse-hardware.md``: V vendor, P peer-reviewed paper, S press/secondary, D derived here by arithmetic,
U unpublished (a named field with a stated default and the reason for it), F from a user's system file. The planners
read only the fields; ``unpublished()`` lists the U and F figures a plan used, so a plan says what it assumed.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
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

_MX_BW_WHY = (
    "U: MemoryX's bandwidth to a system is unpublished; it is bounded by the system I/O (150 GB/s) and assumed to "
    "saturate it, since Cerebras sizes MemoryX to keep a system fed"
)
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
    name="MemoryX (CS-3)", capacity_bytes=1.5e12, bandwidth_bytes_per_s=150e9, optimizer_params_per_s=5e10,
    sources={
        "capacity_bytes": "V/S: 1.5 TB / 12 TB / 1.2 PB options for CS-3; the smallest is used",
        "bandwidth_bytes_per_s": _MX_BW_WHY,
        "optimizer_params_per_s": _MX_OPT_WHY,
    },
)

_SWX_SOURCES = {
    "link_bandwidth_bytes_per_s": "V: SwarmX links are 100 Gb/s = 12.5 GB/s",
    "links_per_system": "V: each system attaches with 12 x 100 GbE",
    "fan_out": "U: the tree's fan-out is unpublished; 16 is assumed (Andromeda's 16 systems in one level)",
    "level_latency_s": "U: per-level latency is unpublished; 2 us is assumed (a 100 GbE switch hop plus store-and-forward of a frame)",
}
SWARMX_CS2 = SwarmX(
    name="SwarmX (CS-2)", link_bandwidth_bytes_per_s=12.5e9, links_per_system=12, fan_out=16, level_latency_s=2e-6,
    max_systems=192, sources={**_SWX_SOURCES, "max_systems": "V: up to 192 CS-2 per cluster"},
)
SWARMX_CS3 = SwarmX(
    name="SwarmX (CS-3)", link_bandwidth_bytes_per_s=12.5e9, links_per_system=12, fan_out=16, level_latency_s=2e-6,
    max_systems=2048, sources={**_SWX_SOURCES, "max_systems": "V/S: up to 2,048 CS-3 per cluster"},
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
    name="CS-3", chip=WSE3, io_bytes_per_s=150e9, memoryx=MEMORYX_CS3, swarmx=SWARMX_CS3,
    sources={"io_bytes_per_s": "V: 'same or +30%' as CS-2 in different vendor pages (inconsistent); the lower 150 GB/s is used"},
)

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


# ----- lookup and user files ----------------------------------------------------------------------------------------
def get_system(name_or_file: str | Path) -> tuple[System, int | None]:
    """A system by name (cs1, cs2, cs3), a cluster name (andromeda, cg1, cg3: its system and size) or a YAML file.

    Returns the system and the cluster's system count (None unless a cluster or a file that gives ``systems``).
    """
    key = str(name_or_file)
    if key.lower() in SYSTEMS:
        return SYSTEMS[key.lower()], None
    if key.lower() in CLUSTERS:
        cluster = CLUSTERS[key.lower()]
        return cluster.system, cluster.n_systems
    path = Path(key)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
        return load_system_file(path)
    names = list(SYSTEMS) + list(CLUSTERS)
    close = difflib.get_close_matches(key.lower(), names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise PlanError(f"unknown system '{key}'{hint}; give one of {', '.join(names)} or a YAML system file")


_SECTIONS = {"chip": Chip, "memoryx": MemoryX, "swarmx": SwarmX}
_TOP_KEYS = {"name", "base", "chip", "io_bytes_per_s", "memoryx", "swarmx", "systems", "planner"}


def load_system_file(path: Path) -> tuple[System, int | None]:
    """A custom system from YAML: optionally ``base: cs2`` to start from, then any fields to change or give.

    Sections ``chip``, ``memoryx`` and ``swarmx`` hold the fields of those specs (``memoryx: null`` for a system with
    none); ``io_bytes_per_s`` the system I/O; ``systems`` a default system count. Every figure given is tagged F (from
    the file) so plans list it among their assumptions. Unknown keys are refused with one line naming the key.
    ``planner`` (PlanOptions overrides) is read by ``load_planner_overrides``.
    """
    import yaml

    if not path.is_file():
        raise PlanError(f"system file '{path}' does not exist; give cs1, cs2, cs3, a cluster name or a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0]
        raise PlanError(f"system file '{path}' is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise PlanError(f"system file '{path}' must hold a mapping (name, base, chip, io_bytes_per_s, memoryx, swarmx)")
    _refuse_unknown(path, "", data, _TOP_KEYS)
    base_name = data.get("base")
    if base_name is not None and str(base_name).lower() not in SYSTEMS:
        raise PlanError(f"system file '{path}': base '{base_name}' is not one of {', '.join(SYSTEMS)}")
    base = SYSTEMS[str(base_name).lower()] if base_name is not None else None
    tag = f"F: {path.name}"

    parts: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        given = data.get(section, {} if base is not None else None)
        base_part = getattr(base, section) if base is not None else None
        if section in data and given is None:  # explicitly none (a system without MemoryX/SwarmX)
            if section == "chip":
                raise PlanError(f"system file '{path}': chip cannot be empty")
            parts[section] = None
            continue
        if given is None:
            if section == "chip":
                raise PlanError(f"system file '{path}': missing section 'chip' (or give 'base: cs2')")
            parts[section] = None
            continue
        if not isinstance(given, dict):
            raise PlanError(f"system file '{path}': '{section}' must be a mapping of {cls.__name__} fields")
        parts[section] = _build(path, section, cls, base_part, given, tag)

    io = data.get("io_bytes_per_s", base.io_bytes_per_s if base is not None else None)
    if io is None:
        raise PlanError(f"system file '{path}': missing field 'io_bytes_per_s'")
    io = _positive(path, "io_bytes_per_s", io)
    sources = dict(base.sources) if base is not None else {}
    if "io_bytes_per_s" in data:
        sources["io_bytes_per_s"] = tag
    name = str(data.get("name", path.stem))
    system = System(name=name, chip=parts["chip"], io_bytes_per_s=io, memoryx=parts["memoryx"],
                    swarmx=parts["swarmx"], sources=sources)
    systems = data.get("systems")
    if systems is not None:
        systems = int(_positive(path, "systems", systems))
    return system, systems


def load_planner_overrides(path: str | Path) -> dict:
    """The ``planner:`` section of a system file (PlanOptions field -> value), validated by the caller."""
    import yaml

    p = Path(path)
    if not p.is_file():
        return {}
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    planner = data.get("planner") or {}
    if not isinstance(planner, dict):
        raise PlanError(f"system file '{p}': 'planner' must be a mapping of planner assumptions")
    return planner


def _refuse_unknown(path: Path, where: str, given: dict, valid) -> None:
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(str(key), list(valid), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise PlanError(f"system file '{path}': unknown key '{where}{key}'{hint}")


def _number(path: Path, name: str, value, *, positive: bool) -> float:
    """A number from YAML; strings such as '2.2e9' (which YAML 1.1 reads as text) are accepted too."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 if positive else value >= 0):
        raise PlanError(f"system file '{path}': '{name}' must be a {'positive number' if positive else 'number >= 0'}, "
                        f"got {value!r}")
    return value


def _positive(path: Path, name: str, value) -> float:
    return _number(path, name, value, positive=True)


def _build(path: Path, section: str, cls, base_part, given: dict, tag: str):
    valid = [f.name for f in fields(cls) if f.name != "sources"]
    _refuse_unknown(path, f"{section}.", given, valid)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "sources":
            continue
        if f.name in given:
            value = given[f.name]
            if f.name == "name":
                values[f.name] = str(value)
                continue
            value = _number(path, f"{section}.{f.name}", value, positive=f.name not in (
                "sram_reserved_bytes_per_core", "hop_latency_cycles", "layer_switch_cycles", "level_latency_s"))
            if f.type in ("int",) and float(value) != int(value):
                raise PlanError(f"system file '{path}': '{section}.{f.name}' must be a whole number, got {value!r}")
            values[f.name] = int(value) if f.type == "int" else value
        elif base_part is not None:
            values[f.name] = getattr(base_part, f.name)
        elif f.name == "name":
            values[f.name] = f"{path.stem} {section}"
        else:
            raise PlanError(f"system file '{path}': missing field '{section}.{f.name}' (or start from 'base: cs2')")
    sources = dict(base_part.sources) if base_part is not None else {}
    sources.update({k: tag for k in given if k != "name"})
    spec = cls(**values, sources=sources)
    if isinstance(spec, Chip) and spec.sram_reserved_bytes_per_core >= spec.sram_bytes_per_core:
        raise PlanError(f"system file '{path}': chip.sram_reserved_bytes_per_core must be below sram_bytes_per_core")
    return spec


def with_chip(system: System, **changes) -> System:
    """A copy of a system with some chip fields changed (the changed figures are tagged U: they are what-ifs)."""
    sources = {**system.chip.sources, **{k: "U: changed from the published value for a what-if" for k in changes}}
    return replace(system, chip=replace(system.chip, **changes, sources=sources))

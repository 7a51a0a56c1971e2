"""CS systems by name or file: ``get_system`` looks a name up in the catalog (wse.wafer.hardware: cs1, cs2, cs3 and
the clusters) or reads a custom system from YAML (``base: cs2`` plus the fields to change, every given figure tagged
F); ``load_planner_overrides`` reads a file's ``planner:`` section (PlanOptions overrides). The catalog never imports
this reader: the reader imports the catalog.
"""

from __future__ import annotations

import difflib
from dataclasses import fields
from pathlib import Path
from typing import Any

from wse.errors import PlanError
from wse.wafer.hardware import CLUSTERS, SYSTEMS, Chip, MemoryX, SwarmX, System

_SECTIONS = {"chip": Chip, "memoryx": MemoryX, "swarmx": SwarmX}
_TOP_KEYS = {"kind", "name", "base", "chip", "io_bytes_per_s", "memoryx", "swarmx", "systems", "planner"}


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


def load_system_file(path: Path) -> tuple[System, int | None]:
    """A custom system from YAML: optionally ``base: cs2`` to start from, then any fields to change or give.

    Sections ``chip``, ``memoryx`` and ``swarmx`` hold the fields of those specs (``memoryx: null`` for a system with
    none); ``io_bytes_per_s`` the system I/O; ``systems`` a default system count. Every figure given is tagged F (from
    the file) so plans list it among their assumptions. Unknown keys are refused with one line naming the key.
    ``planner`` (PlanOptions overrides) is read by ``load_planner_overrides``; ``kind: system`` may say what the file
    is (``kind: device`` files describe GPUs or CPU devices: wse.devices.files).
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

"""Device descriptions from YAML files: ``kind: device``, optionally ``base: h100`` (or h200), ``devices: 8`` and any
figure of wse.devices.specs.Device to give or change; every figure given is tagged F (from the file), so a plan lists it
among its assumptions. A ``planner:`` section changes planner assumptions (``compute_efficiency``), as in a system
file. For example, 8 H100s whose host link was measured at 52 GB/s each way::

    kind: device
    base: h100
    devices: 8
    host_to_device_bytes_per_s: 52e9
    device_to_host_bytes_per_s: 52e9

A file without ``kind: device`` is a CS system file (wse.wafer.systems). Bad input is one PlanError line naming the key
and the fix.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from pathlib import Path

from wse.devices.specs import DEVICES, FIGURES, Device
from wse.errors import PlanError

TOP_KEYS = ("kind", "name", "base", "planner") + FIGURES
KINDS = ("device", "system")


def read_yaml(path: Path):
    """The parsed YAML of ``path``; PlanError when it is missing or not YAML."""
    import yaml

    if not path.is_file():
        raise PlanError(f"system file '{path}' does not exist; give cs1, cs2, cs3, h100, h200, a cluster name or a "
                        "YAML file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0]
        raise PlanError(f"system file '{path}' is not valid YAML: {first}") from None


def find_device(name_or_file) -> tuple[Device, dict] | None:
    """(device, planner overrides) for ``h100``/``h200`` or a YAML file with ``kind: device``; None for anything
    else (a CS system, a cluster or a system file: wse.wafer.systems.get_system reads those)."""
    key = str(name_or_file)
    if key.lower() in DEVICES:
        return DEVICES[key.lower()], {}
    path = Path(key)
    if path.suffix.lower() not in (".yaml", ".yml", ".json") or not path.is_file():
        return None
    data = read_yaml(path)
    if not isinstance(data, dict):
        return None
    if "kind" not in data:
        figures = [k for k in data if k in FIGURES]
        if figures:
            raise PlanError(f"system file '{path}': '{figures[0]}' is a device figure; add 'kind: device' to describe "
                            "GPUs or CPU devices (a CS system file has no such key)")
        return None
    if data["kind"] == "system":
        return None
    if data["kind"] != "device":
        raise PlanError(f"device file '{path}': kind must be one of {', '.join(KINDS)}, got {data['kind']!r}")
    return load_device_file(path, data)


def load_device_file(path: Path, data: dict) -> tuple[Device, dict]:
    """The Device a ``kind: device`` mapping describes, and its ``planner`` section (see the module docstring)."""
    where = f"device file '{path}'"
    for key in data:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; valid keys: {', '.join(TOP_KEYS)}"
            raise PlanError(f"{where}: unknown key '{key}'{hint}")
    base_name = data.get("base")
    if base_name is not None and str(base_name).lower() not in DEVICES:
        raise PlanError(f"{where}: base '{base_name}' is not one of {', '.join(DEVICES)}")
    base = DEVICES[str(base_name).lower()] if base_name is not None else None
    given = {k: figure(where, k, data[k]) for k in FIGURES if k in data}
    missing = [k for k in FIGURES if k not in given]
    if base is None and missing:
        raise PlanError(f"{where}: missing figure '{missing[0]}' ({len(missing)} missing in all); give it, or start "
                        f"from 'base: {next(iter(DEVICES))}'")
    sources = {**(base.sources if base is not None else {}), **{k: f"F: {path.name}" for k in given}}
    name = str(data.get("name", base.name if base is not None else path.stem))
    try:
        device = replace(base, name=name, **given, sources=sources) if base is not None else \
            Device(name=name, **given, sources=sources)
    except PlanError as err:
        raise PlanError(f"{where}: {err}") from None
    planner = data.get("planner") or {}
    if not isinstance(planner, dict):
        raise PlanError(f"{where}: 'planner' must be a mapping of planner assumptions (compute_efficiency: 0.5)")
    return device, planner


def figure(where: str, key: str, value):
    """A figure's value from YAML, checked: true/false for the switches, a whole number for ``devices``, else a
    number (strings such as '64e9', which YAML 1.1 reads as text, are accepted)."""
    kind = Device.__dataclass_fields__[key].type
    if kind == "bool":
        if not isinstance(value, bool):
            raise PlanError(f"{where}: '{key}' must be true or false, got {value!r}")
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise PlanError(f"{where}: '{key}' must be a number >= 0, got {value!r}")
    if kind == "int":
        if value != int(value) or value < 1:
            raise PlanError(f"{where}: '{key}' must be a whole number of at least 1, got {value!r}")
        return int(value)
    return float(value)

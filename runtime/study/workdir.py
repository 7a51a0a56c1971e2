"""A study's directory: created or reopened for the same settings (a study resumes where it stopped), refused for
other ones before anything is written, and the place its results land (``study.json``, the figure, the points).

``<out>/settings.json``  the study's kind and settings (the ones that shape its points)
``<out>/points/<name>/`` one run dir per point (runtime.study.sweep)
``<out>/study.json``     the result, rewritten at the end of each run
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from runtime.errors import UserError

SETTINGS_FILE = "settings.json"
RESULT_FILE = "study.json"
# Settings that do not change what a point computes: a study may resume with other values (another machine).
FREE_SETTINGS = ("platform", "devices")


def default_out(kind: str, quick: bool) -> Path:
    return Path("runs") / f"study-{kind}{'-quick' if quick else ''}"


def open_study(out: Path, kind: str, settings: dict) -> bool:
    """Create ``out`` for this study, or reopen it when it holds the same study; True when it was reopened.
    UserError (writing nothing) for a file, a non-empty directory that is not a study, or another study's settings."""
    out = Path(out)
    wanted = {"kind": kind, **settings}
    path = out / SETTINGS_FILE
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory for the study")
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        for key in wanted:
            if key not in FREE_SETTINGS and saved.get(key) != wanted[key]:
                raise UserError(f"--out {out} holds a study with {key}={saved.get(key)!r}, not {wanted[key]!r}; run "
                                f"with the same settings to resume it, or choose another --out")
        return True
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is a non-empty directory that is not a study; choose a new or empty --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, wanted)
    return False


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON at ``path``, atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_plain) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _plain(obj):
    """NumPy scalars and arrays, paths: as JSON takes them."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def machine() -> dict:
    """Where the study ran: the processor (or accelerator, once JAX is up), cores, and the load averages, since a
    shared machine's timings mean little without them."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M")}
    if hasattr(os, "getloadavg"):
        info["load_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    return info


def accelerator() -> str:
    """The device the points trained on, as JAX names it (after training: JAX is up): ``CPU`` or the accelerator's
    kind (``NVIDIA H100 80GB HBM3``)."""
    import jax

    d = jax.devices()[0]
    kind = getattr(d, "device_kind", "") or ""
    return kind if kind and kind.lower() != d.platform else d.platform.upper()

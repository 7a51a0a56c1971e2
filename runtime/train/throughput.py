"""Throughput accounting for MFU: the peak FLOP/s a run is measured against, with its source.

MFU = 6N x tokens/s / peak, and the peak must be a stable figure or MFU means nothing from run to run:

- a known accelerator: the vendor's published dense figure per device (``NOMINAL_PEAK``), times the device count;
- anything else (CPU, unknown GPUs): the best rate this host has shown, kept in ``<cache dir>/peak-flops.json`` per
  host, backend, dtype and JAX version. Each run measures square matmuls (``PEAK_MATMUL_SIZES``, the best call over
  at least ``PEAK_MIN_CALLS`` calls and ``PEAK_SECONDS`` per size: on a shared machine a call that ran alone is the
  hardware's rate, the slower ones are other work) and keeps the higher of that and the stored figure, so the peak
  only rises towards what the hardware does (measured on a busy 2-core EPYC, five starts of the old one-size best
  of 3 read 38-46 GFLOP/s at 1024^3, while 512^3 calls reached 98-184). A training step faster than the peak
  (possible only while the stored figure is still low) is itself the better measurement: the peak rises to it
  (``Peak.mfu``), so MFU is never above 100%.

On CPU the emulated devices share the host's cores, so the host's rate is the peak of the whole mesh.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

# Published dense peak FLOP/s per device (bf16, and TF32 tensor cores for float32 matmuls) from the vendors' data
# sheets; used for MFU when the device kind matches (nominal_peak: the first name the device kind contains, so the
# variants come before their family). Anything else is measured (see peak_flops).
NOMINAL_PEAK = {
    "H100 PCIe": {"bfloat16": 756e12, "float32": 378e12},  # NVIDIA H100 PCIe data sheet
    "H200 NVL": {"bfloat16": 835e12, "float32": 418e12},  # NVIDIA H200 NVL data sheet
    "H100 NVL": {"bfloat16": 835e12, "float32": 418e12},  # NVIDIA H100 NVL data sheet
    "H200": {"bfloat16": 989.4e12, "float32": 494.7e12},  # NVIDIA H200 SXM data sheet: dense bf16 / TF32 tensor core
    "H100": {"bfloat16": 989.4e12, "float32": 494.7e12},  # NVIDIA H100 SXM data sheet (same figures)
    "A100": {"bfloat16": 312e12, "float32": 156e12},  # NVIDIA A100 data sheet: dense bf16 / TF32
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12},  # Google Cloud TPU v4 documentation
    "TPU v5e": {"bfloat16": 197e12, "float32": 197e12},  # Google Cloud TPU v5e documentation
}

# The matmuls timed when no nominal peak applies, per platform: on a CPU 512^3 fits a core's caches (the highest rate
# on the 2-core EPYC) and 1024^3 a wider CPU's; a GPU needs thousands to fill its cores. Each is timed for at least
# PEAK_SECONDS and PEAK_MIN_CALLS calls (about a second in all on 2 cores, once per process and mesh).
PEAK_MATMUL_SIZES = {"cpu": (512, 1024), "other": (4096, 8192)}
PEAK_SECONDS = 0.4
PEAK_MIN_CALLS = 8
PEAK_FILE = "peak-flops.json"


def nominal_peak(device_kind: str, dtype: str) -> tuple[str, float] | None:
    """(table name, dense peak FLOP/s of one device in ``dtype``) from NOMINAL_PEAK for a device kind such as
    "NVIDIA H200", or None when the device is not listed."""
    for name, peaks in NOMINAL_PEAK.items():
        if name.lower() in device_kind.lower():
            return name, peaks[dtype]
    return None


@dataclass
class Peak:
    """The peak FLOP/s of a whole mesh for MFU: ``flops``, ``source`` (how it was obtained, in words) and ``key``
    (its entry in the host's peak file; None for a nominal peak, which never moves)."""

    flops: float
    source: str
    key: str | None = None

    def mfu(self, flops_per_s: float) -> float:
        """``flops_per_s`` over the peak. A measured peak below that rate rises to it first (and is kept for the
        next run): the step is a better measurement of the hardware than the matmul was, and MFU stays <= 1."""
        if self.key is not None and flops_per_s > self.flops:
            self.flops = flops_per_s
            self.source = f"the host's best rate, {flops_per_s / 1e9:.1f} GFLOP/s: this run's own steps ({self.key})"
            remember(self.key, flops_per_s)
        return flops_per_s / self.flops


def peak_flops(dtype: str, devices: list) -> Peak:
    """The Peak of a mesh of ``devices`` in ``dtype`` (see the module doc); measured once per process and mesh."""
    key = (dtype, tuple(d.id for d in devices), devices[0].platform)
    if key not in _PEAKS:
        _PEAKS[key] = _peak(dtype, devices)
    return _PEAKS[key]


_PEAKS: dict = {}


def _peak(dtype: str, devices: list) -> Peak:
    import jax

    known = nominal_peak(str(getattr(devices[0], "device_kind", "")), dtype)
    if known is not None:
        name, peak = known
        return Peak(peak * len(devices), f"nominal {name} {dtype} peak x {len(devices)} devices")
    local = [d for d in devices if d.process_index == jax.process_index()] or devices
    sizes = PEAK_MATMUL_SIZES.get(devices[0].platform, PEAK_MATMUL_SIZES["other"])
    per_device = max(matmul_rate(n, dtype, local[0]) for n in sizes)
    shared = devices[0].platform == "cpu"  # emulated devices share the host: its rate is the whole mesh's
    measured = per_device if shared else per_device * len(devices)
    key = f"{host_name(devices[0])} | {dtype} | {'host' if shared else f'{len(devices)} devices'} | jax {jax.__version__}"
    best = max(measured, recalled(key))
    remember(key, best)
    what = "emulated devices share it" if shared else f"x {len(devices)} devices"
    return Peak(best, f"the host's best measured {dtype} matmul rate, {best / 1e9:.1f} GFLOP/s ({what}; this run "
                      f"measured {measured / 1e9:.1f})", key)


def matmul_rate(n: int, dtype: str, device) -> float:
    """FLOP/s of the fastest of at least PEAK_MIN_CALLS calls (and PEAK_SECONDS) of an n x n matmul on ``device``."""
    import jax
    import jax.numpy as jnp

    a = jax.device_put(jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype), device)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best, calls, start = math.inf, 0, time.perf_counter()
    while calls < PEAK_MIN_CALLS or time.perf_counter() - start < PEAK_SECONDS:
        t = time.perf_counter()
        f(a).block_until_ready()
        best, calls = min(best, time.perf_counter() - t), calls + 1
    return 2 * n ** 3 / best


def host_name(device) -> str:
    """The device kind, or for a CPU the host's model name and usable cores (its peak depends on both)."""
    if device.platform != "cpu":
        return f"{device.platform} {getattr(device, 'device_kind', '')}".strip()
    model = "CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"cpu {model} x {len(os.sched_getaffinity(0))} cores"


def _peak_file() -> Path:
    from runtime.data import cache_dir

    return cache_dir() / PEAK_FILE


def recalled(key: str) -> float:
    """The best rate stored for ``key`` (0 when none, or the file is unreadable)."""
    try:
        value = json.loads(_peak_file().read_text(encoding="utf-8")).get(key, 0.0)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0
    except (OSError, ValueError, AttributeError):
        return 0.0


def remember(key: str, flops: float) -> None:
    """Store ``flops`` as ``key``'s best rate if it is higher (write-then-rename; a cache that cannot be written costs
    only the memory of it, never the run)."""
    path = _peak_file()
    try:
        table = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if not isinstance(table, dict) or flops <= float(table.get(key, 0.0) or 0.0):
            return
        table[key] = flops
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, ValueError, TypeError):
        pass

"""Throughput accounting for MFU: the peak FLOP/s a run is measured against, with its source.

MFU = 6N x tokens/s / peak. For known accelerators the peak is the vendor's published dense figure per device
(``NOMINAL_PEAK``); anything else (CPU, unknown GPUs) gets a dense matmul measured on this machine.
"""

from __future__ import annotations

import math
import time

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


def nominal_peak(device_kind: str, dtype: str) -> tuple[str, float] | None:
    """(table name, dense peak FLOP/s of one device in ``dtype``) from NOMINAL_PEAK for a device kind such as
    "NVIDIA H200", or None when the device is not listed."""
    for name, peaks in NOMINAL_PEAK.items():
        if name.lower() in device_kind.lower():
            return name, peaks[dtype]
    return None


# The matmul timed when no nominal peak applies: 1024^3 x 2 = 2.1 GFLOP, a few tens of ms on a 2-core CPU.
PEAK_MATMUL_SIZE = 1024


def peak_flops(dtype: str, devices: list) -> tuple[float, str]:
    """(peak FLOP/s of the whole mesh, how it was obtained) for MFU.

    Known accelerators: the published dense peak per device times the device count. Otherwise (CPU, unknown GPUs):
    a ``PEAK_MATMUL_SIZE`` square matmul in ``dtype`` timed on one device, best of 3; on CPU the emulated devices
    share the host's cores, so the host's measured rate is the peak of the whole mesh, not one device's.
    """
    key = (dtype, tuple(d.id for d in devices), devices[0].platform)
    if key not in _PEAKS:
        _PEAKS[key] = _peak_flops(dtype, devices)
    return _PEAKS[key]


_PEAKS: dict = {}  # measured once per process and mesh


def _peak_flops(dtype: str, devices: list) -> tuple[float, str]:
    import jax
    import jax.numpy as jnp

    known = nominal_peak(str(getattr(devices[0], "device_kind", "")), dtype)
    if known is not None:
        name, peak = known
        return peak * len(devices), f"nominal {name} {dtype} peak x {len(devices)} devices"
    n = PEAK_MATMUL_SIZE
    local = [d for d in devices if d.process_index == jax.process_index()] or devices
    a = jax.device_put(jnp.ones((n, n), dtype), local[0])
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    rate = 2 * n ** 3 / best
    if devices[0].platform == "cpu":
        return rate, f"measured {n}^3 {dtype} matmul on this host ({rate / 1e9:.1f} GFLOP/s; emulated devices share it)"
    return rate * len(devices), f"measured {n}^3 {dtype} matmul x {len(devices)} devices"

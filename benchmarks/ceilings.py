"""The device's own ceilings, measured first: dense matmul FLOP/s (float32 and bfloat16) and memory-copy bandwidth.

They are the denominators of everything else: MFU is model FLOP/s over the measured matmul rate (not a datasheet
figure the machine may never reach), and the simulator's device grid gets cells with exactly these rates, so a
predicted step time is the cost model's, not a fitted one.

Method. Matmul: one jitted ``a @ b`` of two random n x n matrices, best of ``repeats`` timed calls after a warm-up
(best, not median: the ceiling is what the device can do, noise only slows it). Copy: a jitted ``x + 1`` over a buffer
far larger than the caches, with the input donated so the output reuses its pages (otherwise every call pays the
kernel's first-touch page faults and measures the allocator); one read plus one write of the buffer per call.

On CPU every emulated device shares the host's cores and memory, so a ceiling measured on one of them is the whole
host's; ``per_device`` divides by how many devices share it.
"""

from __future__ import annotations

import time

# Matrix size and copy buffer per platform and mode: large enough to reach the plateau of the rate (a 1024^3 matmul
# is within a few % of 2048^3 on a 2-core CPU; a GPU needs >= 8192 to fill its tensor cores), small enough to time
# in about a second.
SIZES = {
    "cpu": {"quick": (1024, 128 << 20), "full": (2048, 256 << 20)},
    "gpu": {"quick": (8192, 1 << 30), "full": (16384, 2 << 30)},
    "tpu": {"quick": (8192, 1 << 30), "full": (16384, 2 << 30)},
}
REPEATS = {"quick": 3, "full": 5}


def _best_time(fn, *args, repeats: int, donate: bool = False):
    """Best wall time of ``repeats`` calls; with ``donate`` the output is fed back as the next input."""
    import jax

    out = jax.block_until_ready(fn(*args))
    if donate:
        args = (out,)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
        if donate:
            args = (out,)
    return best


def matmul_flops(dtype: str, n: int, device=None, repeats: int = 3) -> float:
    """Measured dense matmul FLOP/s (2 n^3 per product) in ``dtype`` on ``device``."""
    import jax
    import jax.numpy as jnp

    device = device or jax.devices()[0]
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.device_put(jax.random.normal(ka, (n, n), jnp.float32).astype(dtype), device)
    b = jax.device_put(jax.random.normal(kb, (n, n), jnp.float32).astype(dtype), device)
    f = jax.jit(lambda x, y: x @ y)
    return 2.0 * n ** 3 / _best_time(f, a, b, repeats=repeats)


def copy_bandwidth(nbytes: int, device=None, repeats: int = 3) -> float:
    """Measured memory bandwidth in bytes/s: read + write of an ``nbytes`` float32 buffer per call."""
    import jax
    import jax.numpy as jnp

    device = device or jax.devices()[0]
    x = jax.device_put(jnp.zeros((nbytes // 4,), jnp.float32), device)
    f = jax.jit(lambda v: v + 1.0, donate_argnums=0)
    return 2.0 * (nbytes // 4) * 4 / _best_time(f, x, repeats=repeats, donate=True)


def measure_ceilings(device=None, *, quick: bool = False, n_devices: int = 1) -> dict:
    """{"device", "platform", "matmul_flops": {"float32", "bfloat16"}, "copy_bytes_per_s", sizes, per-device shares}.

    ``n_devices``: how many (emulated) devices share what was measured; on CPU they share the host, so
    ``per_device`` is the host's figure over n; on accelerators each device has its own, so it is the figure itself.
    """
    import jax

    device = device or jax.devices()[0]
    platform = device.platform
    mode = "quick" if quick else "full"
    n, nbytes = SIZES.get(platform, SIZES["gpu"])[mode]
    repeats = REPEATS[mode]
    flops = {dt: matmul_flops(dt, n, device, repeats) for dt in ("float32", "bfloat16")}
    bandwidth = copy_bandwidth(nbytes, device, repeats)
    shared = platform == "cpu"
    share = n_devices if shared else 1
    return {
        "device": describe_device(device),
        "platform": platform,
        "matmul_size": n,
        "matmul_flops": flops,
        "copy_bytes": nbytes,
        "copy_bytes_per_s": bandwidth,
        "shared_by_devices": share,
        "per_device": {"matmul_flops": {k: v / share for k, v in flops.items()}, "copy_bytes_per_s": bandwidth / share},
        "method": f"best of {repeats}: {n}x{n} matmul (2n^3 FLOPs); donated x+1 over {nbytes >> 20} MiB (read+write)",
    }


def describe_device(device) -> str:
    """A human name for the device: the accelerator kind, or the host CPU model and core count for CPU."""
    import os

    if device.platform != "cpu":
        return str(getattr(device, "device_kind", device.platform))
    model = "CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} ({len(os.sched_getaffinity(0))} cores)"

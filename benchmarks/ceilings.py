"""The device's own ceilings, measured first: dense matmul FLOP/s (float32 and bfloat16), memory-copy and memory-read
bandwidth, the host link each way (pinned host memory), the host's AdamW rate and the fixed cost of dispatching a
compiled step.

They are the denominators of everything else: MFU is model FLOP/s over the measured matmul rate (not a datasheet
figure the machine may never reach), and the simulator's device grid gets cells with exactly these rates, so a
predicted step time is the cost model's, not a fitted one.

Method. Every figure is the median of ``repeats`` timed calls after a warm-up, so that two runs read the same
ceilings: the best of a few calls is an extreme value that moves with whatever else the machine runs (on a shared
2-core EPYC two consecutive `wse bench --quick` runs gave predicted/measured 0.67-1.06 and 1.05-1.53 for the same
rows), while the median moves with the same share of the machine that the training rows' median steps see, and on
a quiet machine is within a few % of the best. Matmul: one jitted ``a @ b`` of two random n x n matrices at two
sizes, n / 2 and n, the faster median (a 2-core EPYC runs 512^3 at twice 1024^3's rate: the model's own matmuls fit
its caches too). Copy: a jitted ``x + 1`` over a buffer
far larger than the caches, with the input donated so the output reuses its pages (otherwise every call pays the
kernel's first-touch page faults and measures the allocator); one read plus one write of the buffer per call. Read:
a jitted product of a matrix of the copy's size with a vector, one read of the matrix per call (``read_bandwidth``;
the decode roofline's denominator with the copy's, benchmarks/generation.py).
Host link: a jitted copy of a float32 buffer from memory kind ``pinned_host`` to ``device`` and one back, bytes of
the buffer over the median time (on JAX's CPU backend both kinds are the same RAM: it is a memory copy). AdamW: one
jitted ``optax.adamw`` update (its default hyperparameters) of a flat float32 vector in the host's memory, state
donated, parameters per second. All-reduce: a jitted psum over the run's devices, as the link bandwidth a ring
all-reduce would need to take that long. Dispatch: a jitted scalar add, called and waited for.

On CPU every emulated device shares the host's cores and memory, so a ceiling measured on one of them is the whole
host's; ``per_device`` divides by how many devices share it.
"""

from __future__ import annotations

import functools
import statistics
import time

from model.host_memory import back_with_huge_pages

# Matrix size and copy buffer per platform and mode: large enough to reach the plateau of the rate (a 1024^3 matmul
# is within a few % of 2048^3 on a 2-core CPU; a GPU needs >= 8192 to fill its tensor cores), small enough to time
# in about a second.
SIZES = {
    "cpu": {"quick": (1024, 128 << 20), "full": (2048, 256 << 20)},
    "gpu": {"quick": (8192, 1 << 30), "full": (16384, 2 << 30)},
    "tpu": {"quick": (8192, 1 << 30), "full": (16384, 2 << 30)},
}
# Parameters of the AdamW measurement: weights, gradient and two moments of 4 x this many float32 values are far
# beyond the caches (16M: 256 MiB), and one update takes tens of milliseconds on a 2-core CPU.
ADAMW_PARAMS = {"quick": 8 << 20, "full": 16 << 20}
REPEATS = {"quick": 7, "full": 9}


def _call_times(fn, *args, repeats: int, donate: bool = False) -> list[float]:
    """Wall times of ``repeats`` calls after a warm-up; with ``donate`` the output is fed back as the next input."""
    import jax

    out = jax.block_until_ready(fn(*args))
    if donate:
        args = (out,)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
        if donate:
            args = (out,)
    return times


def _median_time(fn, *args, repeats: int, donate: bool = False) -> float:
    """Median wall time of ``repeats`` calls after a warm-up (the ceilings: repeatable from run to run)."""
    return statistics.median(_call_times(fn, *args, repeats=repeats, donate=donate))


def _best_time(fn, *args, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after a warm-up (the decode roofline's read bandwidth, sampled many times
    between decode calls: its best sample is what a decode step could read at that moment)."""
    return min(_call_times(fn, *args, repeats=repeats))


def matmul_flops(dtype: str, n: int, device=None, repeats: int = 3) -> float:
    """Measured dense matmul FLOP/s (2 m^3 per product) in ``dtype`` on ``device``: the faster of m = n / 2 and n,
    each the median of ``repeats`` calls."""
    import jax
    import jax.numpy as jnp

    device = device or jax.devices()[0]
    ka, kb = jax.random.split(jax.random.key(0))
    f = _matmul()
    rates = []
    for m in (n // 2, n):
        a = jax.device_put(jax.random.normal(ka, (m, m), jnp.float32).astype(dtype), device)
        b = jax.device_put(jax.random.normal(kb, (m, m), jnp.float32).astype(dtype), device)
        rates.append(2.0 * m ** 3 / _median_time(f, a, b, repeats=repeats))
    return max(rates)


@functools.lru_cache(maxsize=1)
def _matmul():
    """One jitted ``x @ y`` for every matmul timed here (a probe between training rounds compiles nothing new)."""
    import jax

    return jax.jit(lambda x, y: x @ y)


def copy_bandwidth(nbytes: int, device=None, repeats: int = 3) -> float:
    """Measured memory bandwidth in bytes/s: read + write of an ``nbytes`` float32 buffer per call."""
    import jax
    import jax.numpy as jnp

    device = device or jax.devices()[0]
    x = jax.device_put(jnp.zeros((nbytes // 4,), jnp.float32), device)
    back_with_huge_pages(x)  # as the decode weights are (model/host_memory.py): the host's best, not its default
    f = jax.jit(lambda v: v + 1.0, donate_argnums=0)
    return 2.0 * (nbytes // 4) * 4 / _median_time(f, x, repeats=repeats, donate=True)


# Row length of the read measurement's matrix. A matrix-vector product streams a row-major matrix fastest with long
# rows (XLA:CPU, 2-core EPYC, jax 0.10.2, [n, c] float32 far beyond the caches: ~15 GB/s at c = 256, ~20 at 768,
# ~40 at 3072-4096), faster than XLA:CPU's reductions. On XLA:CPU it is one single-threaded kernel (a jax.profiler
# trace shows one thunk on one thread, and the HLO has no partitions), as are the decode step's batch-1 matmuls, so
# the figure is one core's streaming read: the bandwidth those matmuls can reach, not necessarily the host's.
READ_ROW = 4096


def read_bandwidth(nbytes: int, device=None, repeats: int = 3) -> float:
    """Measured memory read bandwidth in bytes/s: one read of an ``nbytes`` float32 matrix [nbytes / 4 / READ_ROW,
    READ_ROW] per call, by a jitted product with a vector (the access pattern of batch-1 decoding: benchmarks/
    generation.py's roofline); best of ``repeats`` calls after a warm-up."""
    return read_probe(nbytes, device)(repeats)


def read_probe(nbytes: int, device=None):
    """``read_bandwidth`` as a function of ``repeats`` that keeps its matrix and compiled product between calls, for
    sampling the bandwidth many times in a run (benchmarks/generation.py)."""
    import jax
    import jax.numpy as jnp

    device = device or jax.devices()[0]
    rows = max(1, nbytes // 4 // READ_ROW)
    m = jax.device_put(jnp.full((rows, READ_ROW), 0.5, jnp.float32), device)  # not zeros: they can run faster
    v = jax.device_put(jnp.full((1, READ_ROW), 0.25, jnp.float32), device)
    back_with_huge_pages(m)  # as the decode weights are (model/host_memory.py)
    f = jax.jit(lambda m, v: jnp.einsum("bi,oi->bo", v, m))
    return lambda repeats=1: rows * READ_ROW * 4 / _best_time(f, m, v, repeats=repeats)


def host_link_bandwidth(nbytes: int, device=None, repeats: int = 3) -> dict:
    """Measured {"host_to_device", "device_to_host"} bytes/s of a ``nbytes`` float32 buffer moved by a jitted copy
    between memory kinds ``pinned_host`` and ``device`` of ``device``; {} where the device has no pinned host
    memory."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import SingleDeviceSharding

    device = device or jax.devices()[0]
    if "pinned_host" not in {m.kind for m in device.addressable_memories()}:
        return {}
    host = SingleDeviceSharding(device, memory_kind="pinned_host")
    dev = SingleDeviceSharding(device, memory_kind="device")
    x = jax.device_put(jnp.ones((nbytes // 4,), jnp.float32), dev)
    to_host = jax.jit(lambda v: v, out_shardings=host)
    to_device = jax.jit(lambda v: v, out_shardings=dev)
    on_host = jax.block_until_ready(to_host(x))
    return {"host_to_device": nbytes / _median_fresh(to_device, on_host, max(repeats, 5)),
            "device_to_host": nbytes / _median_fresh(to_host, x, max(repeats, 5))}


def _median_fresh(fn, arg, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn(arg)`` after a warm-up, each output freed before the next call
    (so the allocator can hand its pages back instead of the kernel faulting in new ones)."""
    import jax

    jax.block_until_ready(fn(arg))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - t0)
        del out
    return statistics.median(times)


def all_reduce_link(nbytes: int, devices, repeats: int = 3) -> float | None:
    """Bytes/s of one device's link as a ring all-reduce sees it: a jitted psum of ``nbytes`` of float32 per device
    over ``devices`` takes t, each device sends 2 (n - 1) / n x nbytes, so the link is that over t (the form
    wse.devices.cost_model.ring_all_reduce_s reads back). None for fewer than two devices."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    n = len(devices)
    if n < 2:
        return None
    mesh = Mesh(np.array(devices), ("data",))
    spec = PartitionSpec("data")
    x = jax.device_put(jnp.ones((n, nbytes // 4), jnp.float32), NamedSharding(mesh, spec))
    psum = jax.jit(jax.shard_map(lambda v: jax.lax.psum(v, "data"), mesh=mesh, in_specs=spec, out_specs=spec))
    return 2 * (n - 1) / n * nbytes / _median_fresh(psum, x, max(repeats, 5))


def adamw_rate(n_params: int, device=None, repeats: int = 3) -> float:
    """Measured parameters per second of one jitted optax.adamw update of ``n_params`` float32 parameters on
    ``device`` (the CPU device: the host's rate), weights and state donated so each call updates in place."""
    import jax
    import jax.numpy as jnp
    import optax

    device = device or jax.devices("cpu")[0]
    opt = optax.adamw(1e-3)
    params = jax.device_put(jnp.zeros((n_params,), jnp.float32), device)
    grads = jax.device_put(jnp.full((n_params,), 1e-3, jnp.float32), device)
    state = opt.init(params)

    def update(p, s, g):
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s

    step = jax.jit(update, donate_argnums=(0, 1))
    params, state = jax.block_until_ready(step(params, state, grads))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        params, state = jax.block_until_ready(step(params, state, grads))
        times.append(time.perf_counter() - t0)
    return n_params / statistics.median(times)


def dispatch_seconds(device=None, repeats: int = 20) -> float:
    """Median seconds to call a compiled scalar add on ``device`` and wait for its result: a step's fixed cost."""
    import jax
    import jax.numpy as jnp

    device = device or jax.devices()[0]
    x = jax.device_put(jnp.float32(1.0), device)
    return _median_time(jax.jit(lambda v: v + 1.0), x, repeats=repeats)


def measure_ceilings(device=None, *, quick: bool = False, n_devices: int = 1) -> dict:
    """{"device", "platform", "matmul_flops": {"float32", "bfloat16"}, "copy_bytes_per_s", "read_bytes_per_s",
    "host_link_bytes_per_s":
    {"host_to_device", "device_to_host"} ({} without pinned host memory), "host_adamw_params_per_s",
    "all_reduce_link_bytes_per_s" (None on one device), "dispatch_s", sizes, per-device shares}.

    ``n_devices``: how many (emulated) devices share what was measured; on CPU they share the host, so
    ``per_device`` is the host's figure over n; on accelerators each device has its own, so it is the figure itself.
    The AdamW rate is the host's (measured on the CPU device; None when JAX has no CPU backend), shared by every
    device.
    """
    import jax

    device = device or jax.devices()[0]
    platform = device.platform
    mode = "quick" if quick else "full"
    n, nbytes = SIZES.get(platform, SIZES["gpu"])[mode]
    repeats = REPEATS[mode]
    flops = {dt: matmul_flops(dt, n, device, repeats) for dt in ("float32", "bfloat16")}
    bandwidth = copy_bandwidth(nbytes, device, repeats)
    read = read_bandwidth(nbytes, device, repeats)
    link = host_link_bandwidth(nbytes // 2, device, repeats)
    peers = [d for d in jax.devices(platform) if d.process_index == device.process_index][:n_devices]
    ring = all_reduce_link(nbytes // 4, peers, repeats)
    try:
        host_cpu = jax.devices("cpu")[0]
    except RuntimeError:  # JAX_PLATFORMS without cpu: nothing to measure the host's update on
        host_cpu = None
    adamw = adamw_rate(ADAMW_PARAMS[mode], host_cpu, repeats) if host_cpu is not None else None
    shared = platform == "cpu"
    share = n_devices if shared else 1
    return {
        "device": describe_device(device),
        "platform": platform,
        "matmul_size": n,
        "matmul_flops": flops,
        "copy_bytes": nbytes,
        "copy_bytes_per_s": bandwidth,
        "read_bytes_per_s": read,
        "shared_by_devices": share,
        "host_link_bytes_per_s": link,
        "host_adamw_params_per_s": adamw,
        "all_reduce_link_bytes_per_s": ring,
        "dispatch_s": dispatch_seconds(device),
        "per_device": {"matmul_flops": {k: v / share for k, v in flops.items()}, "copy_bytes_per_s": bandwidth / share,
                       "host_link_bytes_per_s": {k: v / share for k, v in link.items()}},
        "method": f"median of {repeats} after a warm-up: {n // 2}x{n // 2} and {n}x{n} matmuls, the faster (2n^3 "
                  f"FLOPs); donated x+1 over {nbytes >> 20} MiB (read+write); {nbytes >> 20} MiB [., {READ_ROW}] "
                  "matrix times a vector (read); "
                  f"jitted pinned_host<->device copies of {nbytes >> 21} MiB; optax.adamw over "
                  f"{ADAMW_PARAMS[mode] >> 20}M float32 parameters; psum of {nbytes >> 22} MiB per device over "
                  f"{len(peers)} devices (ring link = 2 (n-1)/n x bytes / time); median of 20 dispatches of a scalar add",
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

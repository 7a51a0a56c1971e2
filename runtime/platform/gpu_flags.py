"""The XLA:GPU flags a run starts with (``execution.xla_gpu_flags``, `wse bench --xla-gpu-flags`): one list, each flag
with its reason and source, applied to ``XLA_FLAGS`` before JAX's backend starts and only where it will be a GPU.

The set is what MaxText's GPU recipes pass (MaxText/configs/a3/llama_2_7b/1vm.sh, the Llama2-7B run issue 29 quotes
at 49.7% MFU per H100) less the flags today's XLA no longer has (``--xla_gpu_graph_level``,
``--xla_gpu_enable_triton_softmax_fusion``: XLA aborts the process on an unknown flag, and tests check every flag
here against the installed jaxlib), cross-checked with JAX's "GPU performance tips" and NVIDIA JAX-Toolbox's "Tips for
High-Performance LLMs with JAX and XLA". Left out on purpose: ``--xla_disable_hlo_passes=rematerialization``
(MaxText's: without XLA's own remat pass a step that would have fitted by recomputing runs out of memory instead; this
project's plan decides remat, runtime/execution/placement.py) and command-buffer settings (XLA's default, command
buffers on, is kept; MaxText's ``graph_level=0`` turned them off).

The user's ``XLA_FLAGS`` are respected flag by flag: a flag the user sets keeps the user's value, ours fill in only
the flags the user did not name. ``off`` adds none. XLA parses ``XLA_FLAGS`` once per process, when the first backend
starts (CPU included), so ``apply_gpu_flags`` must run before anything uses JAX: runtime.platform.build_mesh calls it
first thing, and `wse bench` before it starts JAX. The decision is made once per process and recorded
(``applied_gpu_flags``); build_executor copies it into the plan (``plan["xla_gpu_flags"]``).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

GPU_FLAG_SETTINGS = ("auto", "off")
MAXTEXT = "MaxText/configs/a3/llama_2_7b/1vm.sh"
JAX_TIPS = "docs.jax.dev gpu_performance_tips"
TOOLBOX = "NVIDIA JAX-Toolbox rosetta/docs/GPU_performance.md"


@dataclass(frozen=True)
class GpuFlag:
    """One XLA:GPU flag: ``--name=value``, why we set it, and where the recommendation comes from."""

    name: str
    value: str
    reason: str
    source: str

    @property
    def word(self) -> str:
        return f"--{self.name}={self.value}"


GPU_FLAGS = (
    GpuFlag("xla_gpu_enable_latency_hiding_scheduler", "true",
            "schedule asynchronous work (collectives, streaming's host-device copies) to overlap with compute",
            f"{MAXTEXT}; {JAX_TIPS}; {TOOLBOX}"),
    GpuFlag("xla_gpu_enable_triton_gemm", "false", "cuBLAS for every matmul instead of Triton-generated GEMMs",
            f"{MAXTEXT}; {TOOLBOX} (JAX-Toolbox README)"),
    GpuFlag("xla_gpu_enable_highest_priority_async_stream", "true",
            "collectives on a high-priority stream, so they are not starved by compute kernels", f"{MAXTEXT}; {TOOLBOX}"),
    GpuFlag("xla_gpu_enable_while_loop_double_buffering", "true",
            "double-buffer the loops that remain (scanned layers, streaming's layer loop, pipeline ticks, accumulation)",
            f"{MAXTEXT}; {TOOLBOX}"),
    GpuFlag("xla_gpu_enable_pipelined_all_gather", "true", "FSDP: overlap the next layer's weight all-gather",
            f"{MAXTEXT}; {TOOLBOX}"),
    GpuFlag("xla_gpu_enable_pipelined_reduce_scatter", "true", "FSDP: overlap the gradient reduce-scatter",
            f"{MAXTEXT}; {TOOLBOX}"),
    GpuFlag("xla_gpu_enable_pipelined_all_reduce", "true", "data parallelism: overlap the gradient all-reduce",
            MAXTEXT),
    GpuFlag("xla_gpu_all_reduce_combine_threshold_bytes", "134217728",
            "combine small all-reduces into ones of up to 128 MiB (fewer launches)", MAXTEXT),
    GpuFlag("xla_gpu_all_gather_combine_threshold_bytes", "134217728",
            "combine small all-gathers into ones of up to 128 MiB", MAXTEXT),
    GpuFlag("xla_gpu_reduce_scatter_combine_threshold_bytes", "67108864",
            "combine small reduce-scatters into ones of up to 64 MiB", MAXTEXT),
)

# This process's decision (apply_gpu_flags), made once: XLA reads XLA_FLAGS once per process.
_APPLIED: dict = {}


def flag_names(xla_flags: str) -> set[str]:
    """The flag names an XLA_FLAGS value sets (``--name=value`` or ``--name`` -> ``name``)."""
    return {w[2:].split("=", 1)[0] for w in xla_flags.split() if w.startswith("--")}


def compose_xla_flags(current: str, setting: str, platform: str) -> tuple[str, dict]:
    """(the XLA_FLAGS value to start with, the record of what was added and why) for an XLA_FLAGS value ``current``,
    ``setting`` (GPU_FLAG_SETTINGS) and the ``platform`` the run will use ("gpu", "cpu", "tpu"). Ours are added only
    on a GPU with setting "auto", and only the flags ``current`` does not name. Raises ValueError for another
    setting."""
    if setting not in GPU_FLAG_SETTINGS:
        raise ValueError(f"unknown execution.xla_gpu_flags '{setting}'; use one of {', '.join(GPU_FLAG_SETTINGS)}")
    record = {"setting": setting, "added": [], "user_set": sorted(n for n in flag_names(current)
                                                                   if n.startswith("xla_gpu"))}
    if setting == "off":
        return current, {**record, "reason": "execution.xla_gpu_flags=off: XLA's defaults and the user's XLA_FLAGS"}
    if platform != "gpu":
        return current, {**record, "reason": f"platform {platform}: the flags are XLA:GPU's"}
    named = flag_names(current)
    added = [f.word for f in GPU_FLAGS if f.name not in named]
    kept = [f.name for f in GPU_FLAGS if f.name in named]
    reason = f"XLA:GPU with {len(added)} of {len(GPU_FLAGS)} flags from MaxText's GPU recipes"
    if kept:
        reason += f" ({', '.join(kept)} as the user's XLA_FLAGS set)"
    return " ".join([current.strip(), *added]).strip(), {**record, "added": added, "reason": reason}


def gpu_expected(platform: str) -> bool:
    """Whether a run on ``platform`` (gpu, cpu, tpu, auto) will use a GPU, decided without starting JAX: asked for,
    or ``auto`` with an NVIDIA device node present."""
    return platform == "gpu" or (platform == "auto" and bool(glob.glob("/dev/nvidia[0-9]*")))


def apply_gpu_flags(setting: str = "auto", platform: str = "auto") -> dict:
    """Set ``XLA_FLAGS`` for this process (compose_xla_flags) before JAX's backend starts, and return the record.
    The first call of a process decides; later calls return its record. Called after the backend started, it adds
    nothing and says so. Raises ValueError for an unknown setting."""
    if _APPLIED:
        return dict(_APPLIED)
    from runtime.platform.launch import backend_initialized

    target = "gpu" if gpu_expected(platform) else ("cpu" if platform == "auto" else platform)
    current = os.environ.get("XLA_FLAGS", "")
    flags, record = compose_xla_flags(current, setting, target)
    if flags != current and backend_initialized():
        record = {**record, "added": [], "reason": "JAX's backend had started before the flags could be set"}
    elif flags != current:
        os.environ["XLA_FLAGS"] = flags
    _APPLIED.update(record)
    return dict(record)


def applied_gpu_flags() -> dict:
    """This process's record (apply_gpu_flags), or one saying that nothing was applied."""
    return dict(_APPLIED) or {"setting": None, "added": [], "user_set": [],
                              "reason": "not set by this process (runtime.platform.build_mesh applies them)"}

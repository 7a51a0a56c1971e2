"""Where a run executes: the processes and devices JAX starts with, the mesh over them, and the process settings
that make JAX fast on them.

- ``launch``: emulated CPU devices, ``jax.distributed`` for a multi-process run, cluster launchers (Slurm, Open MPI,
  Kubernetes) through JAX's own detection; all of it before JAX's backend starts;
- ``mesh``: the ``data``/``stage``/``model`` mesh of a mesh spec or a run config;
- ``allocator``: glibc's allocator kept from returning XLA:CPU's per-step buffers to the OS;
- ``compile_cache``: JAX's persistent compilation cache;
- ``gpu_flags``: the XLA:GPU performance flags (MaxText's), set before the backend starts where it will be a GPU;
- ``rendezvous``: the processes of a multi-process run meet before ``jax.distributed`` starts (a missing one named);
- ``environment``: the environment variables the stack reads, checked like settings;
- ``storage``: writing results safely (held hidden temporaries renamed into place; full or read-only disks in one
  line).

Import-light (no JAX at import time): the command line uses it before it decides to start JAX. The names below are
the package's public API; import them from ``runtime.platform``.
"""

from runtime.platform.allocator import keep_freed_memory
from runtime.platform.compile_cache import cache_enabled, compile_cache_dir, use_compile_cache
from runtime.platform.gpu_flags import GPU_FLAGS, applied_gpu_flags, apply_gpu_flags, gpu_expected
from runtime.platform.launch import (backend_initialized, detect_launcher, ensure_cpu_devices,
                                     maybe_initialize_distributed, process_count)
from runtime.platform.mesh import AXES, PLATFORMS, build_mesh, build_run_mesh, make_mesh, mesh_shape, resolve_axes

__all__ = ["AXES", "GPU_FLAGS", "PLATFORMS", "applied_gpu_flags", "apply_gpu_flags", "backend_initialized",
           "build_mesh", "build_run_mesh", "cache_enabled", "compile_cache_dir", "detect_launcher",
           "ensure_cpu_devices", "gpu_expected", "keep_freed_memory", "make_mesh", "maybe_initialize_distributed",
           "mesh_shape", "process_count", "resolve_axes", "use_compile_cache"]

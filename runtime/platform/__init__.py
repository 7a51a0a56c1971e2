"""Where a run executes: the processes and devices JAX starts with, the mesh over them, and the process settings
that make JAX fast on them.

- ``launch``: emulated CPU devices, ``jax.distributed`` for a multi-process run, cluster launchers (Slurm, Open MPI,
  Kubernetes) through JAX's own detection; all of it before JAX's backend starts;
- ``mesh``: the ``data``/``stage``/``model`` mesh of a mesh spec or a run config;
- ``allocator``: glibc's allocator kept from returning XLA:CPU's per-step buffers to the OS;
- ``compile_cache``: JAX's persistent compilation cache;
- ``rendezvous``: the processes of a multi-process run meet before ``jax.distributed`` starts (a missing one named);
- ``environment``: the environment variables the stack reads, checked like settings;
- ``storage``: writing results safely (held hidden temporaries renamed into place; full or read-only disks in one
  line).

Import-light (no JAX at import time): the command line uses it before it decides to start JAX. The names below are
the package's public API; import them from ``runtime.platform``.
"""

from runtime.platform.allocator import keep_freed_memory
from runtime.platform.compile_cache import cache_enabled, compile_cache_dir, use_compile_cache
from runtime.platform.launch import (backend_initialized, detect_launcher, ensure_cpu_devices,
                                     maybe_initialize_distributed, process_count)
from runtime.platform.mesh import AXES, PLATFORMS, build_mesh, build_run_mesh, make_mesh, mesh_shape, resolve_axes

__all__ = ["AXES", "PLATFORMS", "backend_initialized", "build_mesh", "build_run_mesh", "cache_enabled",
           "compile_cache_dir", "detect_launcher", "ensure_cpu_devices", "keep_freed_memory", "make_mesh",
           "maybe_initialize_distributed", "mesh_shape", "process_count", "resolve_axes", "use_compile_cache"]

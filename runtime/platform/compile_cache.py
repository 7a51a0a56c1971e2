"""Compile once: JAX's persistent compilation cache, on by default for `wse train`, `wse finetune`, `wse demo` and the
tutorial's workflow.

XLA compilation is most of a short run's start-up (the training step of the ``tiny`` preset takes seconds to
compile on CPU, a 1.3B step on a GPU tens of seconds). With the cache, the compiled programs are written to disk on
the first start and loaded on every later start of the same run shape (same model, mesh, mode, batch, dtype, JAX
version and flags: JAX keys each entry by all of them), in this or any later process.

Where: ``$JAX_COMPILATION_CACHE_DIR`` when you set it (JAX's own variable), else ``<cache dir>/jax`` with the
project's cache dir (``$WSE_CACHE_DIR``, else ``~/.cache/wse-sim``; runtime.data.cache_dir). Off:
``execution.compile_cache=false`` or ``WSE_COMPILE_CACHE=0``. Only programs that took at least JAX's
``jax_persistent_cache_min_compile_time_secs`` (1 s by default) to compile are written, and only by process 0 of a
multi-process run. The directory grows with each new run shape; deleting it is always safe. It must be configured
before the process compiles anything that should be cached (``use_compile_cache`` is called first thing by the
Trainer and by fine-tuning).
"""

from __future__ import annotations

import os
from pathlib import Path

# Set to 0 / false / off / no to turn the cache off for every run of the process (the tests do).
ENV_SWITCH = "WSE_COMPILE_CACHE"
CACHE_SUBDIR = "jax"


def cache_enabled(setting: bool = True) -> bool:
    """Whether a run with ``execution.compile_cache=setting`` uses the cache: the setting, unless WSE_COMPILE_CACHE
    turns it off."""
    switch = os.environ.get(ENV_SWITCH, "").strip().lower()
    return bool(setting) and switch not in ("0", "false", "off", "no")


def compile_cache_dir() -> Path:
    """The cache directory: ``$JAX_COMPILATION_CACHE_DIR`` if set, else ``<runtime.data.cache_dir()>/jax``."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).expanduser()
    from runtime.data import cache_dir

    return cache_dir() / CACHE_SUBDIR


def use_compile_cache(setting: bool = True) -> Path | None:
    """Point JAX's persistent compilation cache at ``compile_cache_dir()`` for the rest of this process and return
    that directory; when ``cache_enabled(setting)`` is false, switch JAX's cache off and return None.

    Call it before the first compilation that should be cached (JAX opens the cache at the first compilation after a
    directory is set). A directory that cannot be created (read-only home, full disk) is not an error: the run goes
    on without the cache (None). A cache already opened earlier in the process stays in use either way.
    """
    import jax

    if not cache_enabled(setting):
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = compile_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    return path

"""Test set-up: 8 emulated CPU devices, set before anything initialises JAX's backend."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# No persistent compilation cache (runtime.platform.compile_cache) unless a test turns it on: every test compiles as a fresh
# user's first run would, and no test depends on what another left in a shared cache directory.
os.environ.setdefault("WSE_COMPILE_CACHE", "0")

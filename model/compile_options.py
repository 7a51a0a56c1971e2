"""XLA compile options for the generation programs (model/generate.py's prefill and decode): which ones, on which
backend, and compiling with them where the installed jaxlib knows them."""

from __future__ import annotations

import jax

# XLA options for the generation programs on CPU. XLA:CPU has LLVM vectorise its loops 256 bits wide even on a CPU
# with 512-bit registers (AVX-512: sparing older cores' clocks); the decode step is ~250 small operations a token
# (norms, attention over the cache, the reductions over the vocabulary) between its matrix-vector products, and those
# run faster 512 wide: small, batch 1, same process alternating programs, 2-core Xeon with AVX-512, jax 0.10.2:
# 2.75 against 2.96 ms a step (best of 12), 2.88 against 3.17 (median). A CPU without AVX-512 vectorises as wide as
# it can, as before. Prefill is built the same way, so that prefill and decode round alike.
CPU_COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


def compiler_options() -> dict:
    """The XLA options the prefill and decode programs are compiled with on the default backend:
    CPU_COMPILER_OPTIONS on CPU, none elsewhere."""
    return dict(CPU_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else {}


def compile_lowered(lowered, options: dict):
    """``lowered.compile(compiler_options=options)`` (a ``jax.stages.Lowered``; returns its ``Compiled``), or
    ``lowered.compile()`` where this jaxlib does not know one of the options (XLA's debug options come and go between
    releases), so that an option only ever changes speed. Other compile errors are raised as they are."""
    if not options:
        return lowered.compile()
    try:
        return lowered.compile(compiler_options=options)
    except jax.errors.JaxRuntimeError as err:
        if "compile option" not in str(err):
            raise
        return lowered.compile()

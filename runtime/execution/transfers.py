"""Bytes a traced program moves between host memory and device memory, read from the program itself.

Why the jaxpr and not the compiled HLO: JAX 0.10's CPU lowering drops in-jit moves between memory kinds (host and
device memory are the same RAM there), so on the machines CI has the compiled program shows no transfer at all. The
jaxpr is the program JAX hands XLA on every backend: each ``device_put`` whose operand and result live in different
memory spaces is one transfer, and a transfer inside a ``lax.scan`` body happens once per iteration. On a GPU the same
moves become XLA's host-offload copies.
"""

from __future__ import annotations

import math


def _subjaxprs(value):
    """The jaxprs held in one equation parameter (a Jaxpr, a ClosedJaxpr, or a tuple/list of them)."""
    if hasattr(value, "eqns"):
        return [value]
    if hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        return [value.jaxpr]
    if isinstance(value, (tuple, list)):
        return [j for v in value for j in _subjaxprs(v)]
    return []


def _space(var) -> str:
    space = getattr(var.aval, "memory_space", None)
    return "host" if space is not None and "host" in str(space).lower() else "device"


def link_bytes(jaxpr, times: int = 1) -> dict:
    """{"to_device", "to_host", "moves"} for a jaxpr (``jax.make_jaxpr(f)(...).jaxpr`` or ``Traced.jaxpr``): bytes of
    every ``device_put`` between memory spaces, times the trip count of the scans around it; "moves" counts the
    transfers executed. Raises ValueError for a transfer inside a loop whose trip count the jaxpr does not state
    (``while``) or inside a branch (``cond``), where the count would be a guess."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr) if not hasattr(jaxpr, "eqns") else jaxpr
    out = {"to_device": 0, "to_host": 0, "moves": 0}
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "device_put":
            for src, dst in zip(eqn.invars, eqn.outvars):
                if _space(src) != _space(dst):
                    nbytes = math.prod(dst.aval.shape) * dst.aval.dtype.itemsize
                    out["to_device" if _space(dst) == "device" else "to_host"] += times * nbytes
                    out["moves"] += times
            continue
        inner = [j for v in eqn.params.values() for j in _subjaxprs(v)]
        if not inner:
            continue
        trips = eqn.params["length"] if name == "scan" else 1
        for sub in inner:
            counted = link_bytes(sub, times * trips)
            if counted["moves"] and name in ("while", "cond"):
                raise ValueError(f"a host transfer inside a '{name}': its count per step is not in the program")
            for key in out:
                out[key] += counted[key]
    return out

"""Logical axis names -> mesh axes -> a ``NamedSharding`` per parameter (the MaxText way: parallelism is a table).

model/gpt.py names every parameter dimension (``vocab``, ``embed``, ``layers``, ``heads``, ``mlp`` ...); an execution
mode chooses a rule table mapping those names to mesh axes. A dimension is sharded only if the mesh axis divides it
and the axis is not already used by another dimension of the same tensor; otherwise it is replicated (e.g. GPT-2's
vocabulary of 50257 over a model axis of 4), so any preset runs on any mesh.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from model import gpt
from model.config import GPTConfig

Rules = Mapping[str, str | tuple[str, ...] | None]


def rules_for(mode: str, *, fsdp: bool = False) -> dict[str, str | None]:
    """The logical -> mesh axis table of an execution mode.

    Tensor parallelism over ``model`` shards whole attention heads (query heads, and grouped K/V heads when the axis
    divides their count; a single K/V head is replicated), the FFN's hidden units and the vocabulary (the Megatron
    split; a gated FFN's gate/up pair stays together on each device); pipelining shards the stacked ``layers`` over ``stage``; FSDP/ZeRO-3 shards the ``embed``
    dimension of every weight over ``data`` (gathered for use by GSPMD, gradients reduce-scattered).
    """
    rules: dict[str, str | None] = {
        "vocab": "model", "heads": "model", "kv_heads": "model", "mlp": "model",
        "embed": "data" if fsdp else None,
        "layers": "stage" if mode == "pipelined" else None,
        "qkv": None, "gate": None, "head_dim": None, "position": None,
    }
    return rules


def spec_for(axes: tuple[str, ...], shape: tuple[int, ...], rules: Rules, mesh) -> P:
    """PartitionSpec of one tensor: each logical axis mapped by ``rules`` if the mesh axis divides it and is unused."""
    used: set[str] = set()
    out = []
    for name, size in zip(axes, shape):
        target = rules.get(name)
        targets = (target,) if isinstance(target, str) else tuple(target or ())
        keep = tuple(t for t in targets if t not in used and mesh.shape[t] > 1)
        n = 1
        for t in keep:
            n *= mesh.shape[t]
        if keep and size % n == 0:
            used.update(keep)
            out.append(keep[0] if len(keep) == 1 else keep)
        else:
            out.append(None)
    while out and out[-1] is None:
        out.pop()
    return P(*out)


def param_specs(cfg: GPTConfig, mesh, rules: Rules, shapes=None):
    """PartitionSpec per parameter (same tree as the parameters). ``shapes`` overrides gpt.param_shapes(cfg), e.g.
    for the pipelined layout whose layer axis is padded."""
    shapes = gpt.param_shapes(cfg) if shapes is None else shapes
    return jax.tree.map(lambda ax, shp: spec_for(ax, shp, rules, mesh), gpt.logical_axes(cfg), shapes,
                        is_leaf=lambda x: isinstance(x, tuple))


def named(mesh, specs, memory_kind: str | None = None):
    """NamedSharding per PartitionSpec of a tree."""
    return jax.tree.map(lambda s: NamedSharding(mesh, s, memory_kind=memory_kind), specs,
                        is_leaf=lambda x: isinstance(x, P))


def replicated(mesh, memory_kind: str | None = None) -> NamedSharding:
    return NamedSharding(mesh, P(), memory_kind=memory_kind)


def host_memory_kind(mesh) -> str | None:
    """'pinned_host' if the mesh's devices can address it (GPU, TPU, and the CPU backend of JAX >= 0.4.3x), else None."""
    device = mesh.devices.flat[0]
    try:
        kinds = {m.kind for m in device.addressable_memories()}
    except Exception:  # noqa: BLE001 - a backend without the memories API has no host memory space
        return None
    return "pinned_host" if "pinned_host" in kinds else None

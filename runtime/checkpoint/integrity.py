"""Checkpoint integrity: order-independent checksums of every saved array, verified on restore.

A garbled data file can decode into plausible wrong numbers without any error from the storage layer (measured:
flipping bytes inside Orbax's compressed chunk file restored silently different values), so runtime.checkpoint.store saves
these sums beside the arrays and refuses a restore that does not match them. The sums are computed on the devices
and do not depend on the sharding, so a checkpoint saved on one mesh verifies on another.
"""

from __future__ import annotations

import functools

from runtime.errors import UserError


def tree_checksums(tree) -> dict[str, list[int]]:
    """``{"blocks/attn/c_attn/kernel": [s1, s2], ...}``: two wrapping uint32 sums of each array's bit patterns.

    Integer addition modulo 2^32 is associative and commutative, so the result does not depend on how the array is
    sharded or in which order it is reduced; ``s2`` (sum of squares) catches changes that keep ``s1``. Arrays in
    device memory are summed on their devices (one jitted call); arrays in host memory (weight streaming) and NumPy
    arrays are summed by NumPy where they are, with the same arithmetic, so no weights are pulled onto a device.
    """
    return checksums_and_nonfinite(tree)[0]


def checksums_and_nonfinite(tree) -> tuple[dict[str, list[int]], list[str]]:
    """(``tree_checksums(tree)``, the names of the leaves holding a NaN or an infinity), in the same pass over the
    arrays: a checkpoint is summed when it is saved and when it is read, so checking that its weights are finite
    there costs no extra read of them."""
    import jax
    import numpy as np

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    on_device = [i for i, (_, x) in enumerate(leaves) if isinstance(x, jax.Array) and not _in_host_memory(x)]
    sums: dict[int, tuple] = {}
    if on_device:
        sums.update(zip(on_device, jax.device_get(_checksum_jit()([leaves[i][1] for i in on_device]))))
    for i, (_, x) in enumerate(leaves):
        if i not in sums:
            a = np.asarray(x)
            b = _bits_np(a)
            finite = bool(np.isfinite(a).all()) if np.issubdtype(a.dtype, np.floating) else True
            sums[i] = (b.sum(dtype=np.uint32), (b * b).sum(dtype=np.uint32), finite)
    names = [_path_name(p) for p, _ in leaves]
    return ({name: [int(sums[i][0]), int(sums[i][1])] for i, name in enumerate(names)},
            [name for i, name in enumerate(names) if not bool(sums[i][2])])


def _in_host_memory(x) -> bool:
    return getattr(x.sharding, "memory_kind", None) in ("pinned_host", "unpinned_host") and x.is_fully_addressable


def _bits_np(x):
    import numpy as np

    x = np.ascontiguousarray(x)
    if x.dtype == np.bool_:
        return x.astype(np.uint32)
    view = {4: np.uint32, 2: np.uint16, 1: np.uint8}.get(x.dtype.itemsize)
    if view is None:
        raise TypeError(f"cannot checksum arrays of {x.dtype}")
    return x.view(view).astype(np.uint32)


@functools.cache
def _checksum_jit():
    """One jitted function for the process (jit caches a compilation per tree structure and shapes)."""
    import jax
    import jax.numpy as jnp

    def bits(x):
        if x.dtype == jnp.bool_:
            return x.astype(jnp.uint32)
        view = {4: jnp.uint32, 2: jnp.uint16, 1: jnp.uint8}.get(x.dtype.itemsize)
        if view is None:
            raise TypeError(f"cannot checksum arrays of {x.dtype}")
        return jax.lax.bitcast_convert_type(x, view).astype(jnp.uint32)

    def one(x):
        b = bits(x)
        finite = jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.floating) else jnp.bool_(True)
        return jnp.sum(b, dtype=jnp.uint32), jnp.sum(b * b, dtype=jnp.uint32), finite

    return jax.jit(lambda xs: [one(x) for x in xs])


def _path_name(path) -> str:
    from model.gpt import path_names

    return "/".join(path_names(path)) or "<root>"


def verify_checksums(item: str, tree, expected: dict | None, where: str, fix: str) -> list[str]:
    """UserError (naming ``where``, the leaf and ``fix``) when ``tree`` does not match the saved ``expected`` sums
    (None: a checkpoint from before checksums, accepted); returns the names of the leaves that are not finite (for the
    caller to refuse: a diverged run's weights match their checksums, NaN bits are stable)."""
    got, nonfinite = checksums_and_nonfinite(tree)
    for name, sums in (expected or {}).items():
        if got.get(name) != list(sums):
            raise UserError(f"{where}: {item} '{name}' does not match its checksum (the files are corrupt); "
                            f"{fix}")
    return nonfinite

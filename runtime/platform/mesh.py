"""The device mesh, from a plain mesh spec: platform, device count and the sizes of the ``data``/``stage``/``model`` axes.

The mesh config is the only thing that changes between a laptop and an accelerator cluster: ``platform: cpu`` with
``devices: 8`` emulates eight devices on the host CPU; ``platform: gpu`` uses the real GPUs and refuses a count that
does not match them. Axis sizes may be ``-1`` ("whatever is left"). The axes are always the same three, in the same
order — ``data`` outermost (replicas, across hosts), ``stage`` (pipeline stages), ``model`` innermost (tensor
parallelism, which needs the fastest links) — so every mode and every test sees one mesh shape convention.

Every axis is ``AxisType.Auto``: the execution modes mix GSPMD-propagated shardings (``jax.jit`` in/out shardings,
``with_sharding_constraint``) with a ``jax.shard_map`` that is manual over ``stage`` only, which is the combination
Auto axes support on JAX 0.10 and 0.11 alike (Explicit axes would make every ambiguous op an error).

The devices themselves are started by runtime.platform.launch (emulated CPU devices, ``jax.distributed``, cluster
launchers), which ``build_mesh`` calls first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from runtime.errors import UserError
from runtime.platform.launch import (DEFAULT_START_TIMEOUT, backend_initialized, ensure_cpu_devices,
                                     maybe_initialize_distributed, process_count)

AXES = ("data", "stage", "model")
PLATFORMS = ("cpu", "gpu", "tpu", "auto")


def resolve_axes(axes: Mapping[str, int] | None, n_devices: int) -> dict[str, int]:
    """Axis sizes with ``-1`` filled in; UserError if they cannot multiply to ``n_devices``.

    Axes not given are 1, except that with no ``-1`` anywhere and a product short of the device count, ``data``
    absorbs the rest (an empty spec means plain data parallelism over every device).
    """
    axes = dict(axes or {})
    unknown = sorted(set(axes) - set(AXES))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], AXES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(f"unknown mesh axis '{unknown[0]}'{hint}; the axes are data, stage and model")
    sizes = {a: int(axes.get(a, 1)) for a in AXES}
    fill = [a for a, s in sizes.items() if s == -1]
    if any(s == 0 or s < -1 for s in sizes.values()):
        raise UserError(f"mesh axis sizes must be positive or -1, got {sizes}")
    if len(fill) > 1:
        raise UserError(f"only one mesh axis may be -1, got {', '.join(fill)}")
    known = math.prod(s for s in sizes.values() if s != -1)
    if not fill and "data" not in axes and known < n_devices:
        fill = ["data"]
    if fill:
        if n_devices % known:
            raise UserError(f"mesh axes {sizes} cannot fill {n_devices} devices: {n_devices} is not a multiple of {known}")
        sizes[fill[0]] = n_devices // known
    if math.prod(sizes.values()) != n_devices:
        raise UserError(
            f"mesh axes data={sizes['data']} x stage={sizes['stage']} x model={sizes['model']} = "
            f"{math.prod(sizes.values())} devices, but the mesh has {n_devices}; make the product match mesh.devices"
        )
    return sizes


def make_mesh(axes: Mapping[str, int] | None, devices: Sequence | None = None):
    """A ``jax.sharding.Mesh`` over ``devices`` (default: all) with axes (data, stage, model), all AxisType.Auto."""
    import jax
    from jax.sharding import AxisType

    devices = list(jax.devices() if devices is None else devices)
    sizes = resolve_axes(axes, len(devices))
    return jax.make_mesh(tuple(sizes[a] for a in AXES), AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def build_mesh(platform: str = "auto", devices: int | None = None, axes: Mapping[str, int] | None = None,
               *, coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               start_timeout: float = DEFAULT_START_TIMEOUT):
    """The mesh a run config asks for. ``devices`` is the global count (all processes together).

    cpu: emulated devices; asked before the backend starts, the backend gets exactly ``devices`` (split evenly over
    processes); if it is already up with more, the first ``devices`` are used (emulated CPU devices are all alike,
    and this lets one process host meshes of several sizes, as the tests do); fewer is an error.
    gpu/tpu: the real devices; a count that differs from ``devices`` is an error. auto: JAX's default backend.
    """
    import jax

    if platform not in PLATFORMS:
        raise UserError(f"unknown mesh.platform '{platform}'; use one of {', '.join(PLATFORMS)}")
    maybe_initialize_distributed(coordinator, num_processes, process_id, start_timeout)
    if platform == "cpu" and devices is not None and not backend_initialized():
        if devices % process_count():
            raise UserError(f"mesh.devices={devices} does not split evenly over {process_count()} processes")
        ensure_cpu_devices(devices // process_count())
    name = jax.default_backend() if platform == "auto" else platform
    try:
        available = jax.devices(name)
    except RuntimeError:
        raise UserError(f"mesh.platform={platform} but JAX has no {name} backend here (it has {jax.default_backend()}); "
                        "set mesh.platform=cpu or install the accelerator's jaxlib") from None
    if devices is None:
        chosen = available
    elif len(available) == devices:
        chosen = available
    elif name == "cpu" and len(available) > devices and process_count() == 1:
        chosen = available[:devices]
    else:
        raise UserError(f"mesh.devices={devices} but {len(available)} {name} devices are available; "
                        f"set mesh.devices={len(available)}")
    return make_mesh(axes, chosen)


def mesh_shape(mesh) -> dict[str, int]:
    """{'data': D, 'stage': S, 'model': M} of a mesh built here."""
    return {a: int(mesh.shape[a]) for a in AXES}


def build_run_mesh(run):
    """The mesh of a run config (runtime.config.RunConfig; see ``build_mesh``). Call it before anything else touches
    JAX: on CPU it sets the emulated device count, and it joins a multi-process run, both of which only work before
    JAX's backend starts."""
    m = run.mesh
    return build_mesh(m.platform, run.devices(), m.axes.model_dump(), coordinator=m.coordinator_address,
                      num_processes=m.num_processes, process_id=m.process_id, start_timeout=m.start_timeout)

"""The device mesh, from a plain mesh spec: platform, device count and the sizes of the ``data``/``stage``/``model`` axes.

The mesh config is the only thing that changes between a laptop and an accelerator cluster: ``platform: cpu`` with
``devices: 8`` emulates eight devices on the host CPU; ``platform: gpu`` uses the real GPUs and refuses a count that
does not match them. Axis sizes may be ``-1`` ("whatever is left"). The axes are always the same three, in the same
order — ``data`` outermost (replicas, across hosts), ``stage`` (pipeline stages), ``model`` innermost (tensor
parallelism, which needs the fastest links) — so every mode and every test sees one mesh shape convention.

Every axis is ``AxisType.Auto``: the execution modes mix GSPMD-propagated shardings (``jax.jit`` in/out shardings,
``with_sharding_constraint``) with a ``jax.shard_map`` that is manual over ``stage`` only, which is the combination
Auto axes support on JAX 0.10 and 0.11 alike (Explicit axes would make every ambiguous op an error).

Emulated CPU devices and ``jax.distributed`` must both be set up before JAX initialises its backend; the helpers here
check that and say so in one line when it is too late. A process started by a cluster launcher (``srun``, ``mpirun``,
a Kubernetes JobSet) joins its peers with no settings: the values not given are read from the launcher by JAX's own
cluster detection (``detect_launcher``).
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Mapping, Sequence

from runtime.errors import UserError

AXES = ("data", "stage", "model")
PLATFORMS = ("cpu", "gpu", "tpu", "auto")

# Set by maybe_initialize_distributed: how many processes form the mesh (known before the backend starts, which
# jax.process_count() is not).
_PROCESSES = {"count": 1, "initialized": False}


def backend_initialized() -> bool:
    """Whether JAX has already created its backends (after which device counts and distributed setup are fixed)."""
    try:
        from jax._src import xla_bridge

        return xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # private API; without it assume a fresh process
        return False


def ensure_cpu_devices(n: int) -> None:
    """Make JAX's CPU backend expose ``n`` devices (emulated), which must happen before the backend starts.

    Sets ``jax_num_cpu_devices`` (which takes precedence over ``XLA_FLAGS=--xla_force_host_platform_device_count``)
    and the flag itself for child processes. If the backend is already up with another count, raises UserError.
    """
    import jax

    if n < 1:
        raise UserError(f"mesh.devices must be positive, got {n}")
    if backend_initialized():
        have = len(jax.devices("cpu"))
        if have != n:
            raise UserError(
                f"JAX already started with {have} CPU devices, {n} were asked for; set mesh.devices before anything "
                f"uses JAX (or run in a fresh process with XLA_FLAGS=--xla_force_host_platform_device_count={n})"
            )
        return
    from runtime.allocator import keep_freed_memory

    keep_freed_memory()  # the CPU backend is about to start: its per-step buffers then stay mapped (allocator.py)
    jax.config.update("jax_num_cpu_devices", n)
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])


def maybe_initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                                 process_id: int | None = None) -> bool:
    """Join a multi-process run if one is configured or a cluster launcher started this process; returns whether
    this process is part of one.

    Each value comes from the argument (``mesh.coordinator_address``/``num_processes``/``process_id``), else from
    ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``, else from the launcher as
    ``jax.distributed.initialize()``'s own cluster detection reads it (``detect_launcher``: Slurm under ``srun``,
    Open MPI under ``mpirun``, a Kubernetes Job or JobSet). ``num_processes=1`` runs alone whatever the launcher
    says. With one process (or nothing configured or detected) this does nothing, so a single-process run never pays
    for a coordinator. Must run before anything initialises JAX's backend. Raises UserError (one line) for an
    incomplete or inconsistent setting, or when JAX's backend has already started.
    """
    import jax

    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    if _PROCESSES["initialized"]:
        return True
    if num_processes == 1:
        return False
    if None in (coordinator, num_processes, process_id):
        coordinator, num_processes, process_id = detect_launcher(coordinator, num_processes, process_id)
    if not num_processes or num_processes <= 1:
        return False
    if coordinator is None or process_id is None:
        raise UserError(
            f"a {num_processes}-process run needs a coordinator address and a process id; set "
            "mesh.coordinator_address and mesh.process_id (or JAX_COORDINATOR_ADDRESS and JAX_PROCESS_ID), or start "
            "the processes with a launcher JAX detects (srun, mpirun, a Kubernetes JobSet)"
        )
    if not 0 <= process_id < num_processes:
        raise UserError(f"process id {process_id} is outside 0..{num_processes - 1}")
    if backend_initialized():
        raise UserError("jax.distributed must start before JAX is used; initialise the mesh first thing in the process")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    _PROCESSES.update(count=num_processes, initialized=True)
    return True


def detect_launcher(coordinator: str | None, num_processes: int | None,
                    process_id: int | None) -> tuple[str | None, int | None, int | None]:
    """(coordinator address, process count, process id) with the values that are None filled in from the cluster
    launcher that started this process, exactly as ``jax.distributed.initialize()`` fills them when called without
    arguments (JAX's ClusterEnv detection): Slurm (``SLURM_JOB_ID``, ``SLURM_STEP_NODELIST``, ``SLURM_NTASKS``,
    ``SLURM_PROCID``, ``SLURM_LOCALID``; the coordinator is the step's first node), Open MPI
    (``OMPI_MCA_orte_hnp_uri``, ``OMPI_COMM_WORLD_SIZE``/``RANK``/``LOCAL_RANK``; the coordinator is mpirun's host),
    Kubernetes (``KUBERNETES_SERVICE_HOST`` and the ``kubernetes`` package, which reads the pod's Job or JobSet from
    the API), Cloud TPU. The coordinator's port is ``JAX_COORDINATOR_PORT`` when set, else one derived from the job
    id. Without a launcher the values come back unchanged. Raises UserError (one line) when a launcher is present but
    its settings cannot be read."""
    import inspect

    try:  # JAX's own detection; the module is private, so a JAX without it means no detection
        from jax._src.clusters import ClusterEnv

        detect = ClusterEnv.auto_detect_unset_distributed_params
        names = inspect.signature(detect).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        return coordinator, num_processes, process_id
    # what jax.distributed.initialize passes: no detection method forced, its default timeout of 300 s
    extra = {k: v for k, v in (("cluster_detection_method", None), ("initialization_timeout", 300)) if k in names}
    try:
        with warnings.catch_warnings(record=True) as caught:  # JAX warns in many lines; we say it in one
            warnings.simplefilter("always")
            found = detect(coordinator, num_processes, process_id, None, **extra)
    except Exception as err:  # noqa: BLE001 - a launcher's environment that JAX cannot read (e.g. the Kubernetes API)
        from model.errors import describe_error

        raise UserError(f"the cluster launcher's settings could not be read ({describe_error(err)}); set "
                        "mesh.coordinator_address, mesh.num_processes and mesh.process_id, or mesh.num_processes=1 "
                        "to run alone") from None
    if any("kubernetes" in str(w.message) for w in caught) and found[1] is None:
        print("note: running in Kubernetes without the kubernetes package, so JAX cannot read a Job's or JobSet's "
              'processes and this process runs alone (pip install "jax[k8s]" to join them)', file=sys.stderr)
    return found[0], found[1], found[2]


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
               *, coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None):
    """The mesh a run config asks for. ``devices`` is the global count (all processes together).

    cpu: emulated devices; asked before the backend starts, the backend gets exactly ``devices`` (split evenly over
    processes); if it is already up with more, the first ``devices`` are used (emulated CPU devices are all alike,
    and this lets one process host meshes of several sizes, as the tests do); fewer is an error.
    gpu/tpu: the real devices; a count that differs from ``devices`` is an error. auto: JAX's default backend.
    """
    import jax

    if platform not in PLATFORMS:
        raise UserError(f"unknown mesh.platform '{platform}'; use one of {', '.join(PLATFORMS)}")
    maybe_initialize_distributed(coordinator, num_processes, process_id)
    if platform == "cpu" and devices is not None and not backend_initialized():
        if devices % _PROCESSES["count"]:
            raise UserError(f"mesh.devices={devices} does not split evenly over {_PROCESSES['count']} processes")
        ensure_cpu_devices(devices // _PROCESSES["count"])
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
    elif name == "cpu" and len(available) > devices and _PROCESSES["count"] == 1:
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
                      num_processes=m.num_processes, process_id=m.process_id)

"""Starting JAX the way a run asks, before its backend starts: emulated CPU devices, ``jax.distributed`` for a
multi-process run, and the cluster launcher that started this process.

Emulated CPU devices and ``jax.distributed`` must both be set up before JAX initialises its backend; the helpers here
check that and say so in one line when it is too late. A process started by a cluster launcher (``srun``, ``mpirun``,
a Kubernetes JobSet) joins its peers with no settings: the values not given are read from the launcher by JAX's own
cluster detection (``detect_launcher``).
"""

from __future__ import annotations

import os
import sys
import warnings

from runtime.errors import UserError

# Seconds a multi-process start waits for all its processes (mesh.start_timeout): jax.distributed's own default.
DEFAULT_START_TIMEOUT = 300.0
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
    from runtime.platform.allocator import keep_freed_memory

    keep_freed_memory()  # the CPU backend is about to start: its per-step buffers then stay mapped (allocator.py)
    jax.config.update("jax_num_cpu_devices", n)
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])


def process_count() -> int:
    """How many processes form the mesh: set by ``maybe_initialize_distributed`` (1 until it joins a multi-process
    run), known before JAX's backend starts, which ``jax.process_count()`` is not."""
    return _PROCESSES["count"]


def maybe_initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                                 process_id: int | None = None, timeout: float = DEFAULT_START_TIMEOUT) -> bool:
    """Join a multi-process run if one is configured or a cluster launcher started this process; returns whether
    this process is part of one.

    Each value comes from the argument (``mesh.coordinator_address``/``num_processes``/``process_id``), else from
    ``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``, else from the launcher as
    ``jax.distributed.initialize()``'s own cluster detection reads it (``detect_launcher``: Slurm under ``srun``,
    Open MPI under ``mpirun``, a Kubernetes Job or JobSet). ``num_processes=1`` runs alone whatever the launcher
    says. The processes first meet at the coordinator (runtime.platform.rendezvous): one that has not arrived after
    ``timeout`` seconds (``mesh.start_timeout``) ends the start with one line naming it. With one process (or nothing
    configured or detected) this does nothing, so a single-process run never pays
    for a coordinator. Must run before anything initialises JAX's backend. Raises UserError (one line) for an
    incomplete or inconsistent setting, or when JAX's backend has already started.
    """
    import jax

    from runtime.platform.environment import env_int

    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = env_int("JAX_NUM_PROCESSES", 1) if num_processes is None else num_processes
    process_id = env_int("JAX_PROCESS_ID", 0) if process_id is None else process_id
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
    from runtime.platform.rendezvous import rendezvous

    rendezvous(coordinator, num_processes, process_id, timeout)  # all arrive, or one line naming who did not
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
                               initialization_timeout=max(1, int(timeout)))
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

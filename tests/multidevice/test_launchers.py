"""Cluster launchers (issue 14, item 6): under Slurm or Open MPI, `wse train` joins the multi-process mesh with no
coordinator settings, through jax.distributed's own cluster detection, and explicit mesh settings still win.

The launchers are played by environment variables, exactly those JAX's detection reads (jax/_src/clusters/), with
127.0.0.1 as the coordinator and JAX_COORDINATOR_PORT for a free port; the two processes are real `wse train`s.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys

import pytest

from runtime import platform as meshlib
from tests.multidevice.test_train import overrides, world  # noqa: F401 - the micro model and its dataset (a module fixture)

LAUNCHER_VARS = ("SLURM_", "OMPI_", "JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "KUBERNETES_")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slurm_env(rank: int, port: int) -> dict[str, str]:
    """What `srun --ntasks=2` sets on one node (the subset JAX reads), plus the coordinator's port."""
    return {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "127.0.0.1", "SLURM_STEP_NUM_NODES": "1",
            "SLURM_NTASKS": "2", "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
            "JAX_COORDINATOR_PORT": str(port)}


def ompi_env(rank: int) -> dict[str, str]:
    """What `mpirun -np 2` sets (the subset JAX reads); mpirun's own address is the coordinator."""
    return {"OMPI_MCA_orte_hnp_uri": "4096000.0;tcp://127.0.0.1:1024", "OMPI_COMM_WORLD_SIZE": "2",
            "OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_LOCAL_RANK": str(rank)}


@pytest.fixture
def clean_env(monkeypatch):
    """No launcher variables from the machine running the tests."""
    for key in list(os.environ):
        if key.startswith(LAUNCHER_VARS):
            monkeypatch.delenv(key)
    return monkeypatch


def test_jax_detection_fills_only_what_is_not_given(clean_env):
    assert meshlib.detect_launcher(None, None, None) == (None, None, None)  # no launcher: nothing
    for key, value in slurm_env(1, 5555).items():
        clean_env.setenv(key, value)
    assert meshlib.detect_launcher(None, None, None) == ("127.0.0.1:5555", 2, 1)
    assert meshlib.detect_launcher("10.1.1.1:7", None, 0) == ("10.1.1.1:7", 2, 0)  # explicit values win
    assert meshlib.maybe_initialize_distributed(None, 1, None) is False  # num_processes=1 runs alone


def test_open_mpi_is_detected(clean_env):
    for key, value in ompi_env(1).items():
        clean_env.setenv(key, value)
    coordinator, n, rank = meshlib.detect_launcher(None, None, None)
    assert coordinator.startswith("127.0.0.1:") and (n, rank) == (2, 1)


def test_under_slurm_two_processes_form_one_mesh_and_explicit_settings_win(world, tmp_path):  # noqa: F811
    """Two `wse train` processes under srun's variables: process A has no mesh settings at all; process B's
    variables claim rank 0 and another coordinator port, but its command line says process 1 and names the right
    coordinator, and the command line wins. Together they form one 2-process mesh and train identically."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS" and not k.startswith(LAUNCHER_VARS)}
    args = [sys.executable, "-m", "runtime.cli", "train", "--json",
            *overrides(world, tmp_path / "run", "execution.mode=data", "mesh.devices=2", "train.steps=2")]
    explicit = ["mesh.process_id=1", f"mesh.coordinator_address=127.0.0.1:{port}"]
    launched = [(args, slurm_env(0, port)), (args + explicit, slurm_env(0, _free_port()))]
    with contextlib.ExitStack() as cleanup:
        procs = [subprocess.Popen(cmd, env={**env, **launcher}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for cmd, launcher in launched]
        for p in procs:
            cleanup.callback(p.kill)  # on the way out; a no-op for a process that has ended
        outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert [r["processes"] for r in results] == [2, 2] and [r["process_index"] for r in results] == [0, 1]
    assert results[0]["mesh"] == {"data": 2, "stage": 1, "model": 1}
    assert results[0]["losses"] == results[1]["losses"] and len(results[0]["losses"]) == 2

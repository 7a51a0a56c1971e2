"""Two processes x 4 CPU devices form one 8-device mesh and train to the same losses as one process x 8 devices.

The two processes talk through jax.distributed on 127.0.0.1 (CPU collectives over gloo); the single-process run is
this pytest process itself, whose 8 emulated devices come from tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from runtime.platform import make_mesh
from tests.multidevice import multihost_worker as check  # the worker both halves run

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("multihost_worker.py")), "--process-id", str(i), "--num-processes", "2",
             "--coordinator", f"127.0.0.1:{port}", "--devices", "8", "--out", str(tmp_path / f"p{i}.json")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=400)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    multi = [json.loads((tmp_path / f"p{i}.json").read_text()) for i in range(2)]
    assert [m["process_count"] for m in multi] == [2, 2] and [m["local_devices"] for m in multi] == [4, 4]

    for mode, axes in check.CASES:
        single = check.run_case(mode, axes, make_mesh(axes, jax.devices()[:8]))
        for m in multi:
            np.testing.assert_allclose(m[mode], single, rtol=1e-5, err_msg=mode)
        assert single[-1] < single[0]  # it trains

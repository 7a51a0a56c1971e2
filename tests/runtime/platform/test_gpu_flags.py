"""The XLA:GPU flags (runtime/platform/gpu_flags.py): composed beside the user's XLA_FLAGS, only for a GPU, every one
known to the installed jaxlib (XLA aborts on an unknown flag), off when asked, recorded in the plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import pytest

from runtime.config import load_config
from runtime.errors import UserError
from runtime.execution import build_executor
from runtime.platform import GPU_FLAGS, apply_gpu_flags, make_mesh
from runtime.platform.gpu_flags import compose_xla_flags, flag_names
from tests.runtime.execution.test_layer_loop import MODELS


def test_flags_are_added_on_a_gpu_only_and_the_user_s_own_win():
    every = [f.word for f in GPU_FLAGS]
    flags, record = compose_xla_flags("", "auto", "gpu")
    assert flags.split() == every and record["added"] == every and "MaxText" in record["reason"]
    for platform in ("cpu", "tpu"):
        flags, record = compose_xla_flags("--xla_force_host_platform_device_count=8", "auto", platform)
        assert flags == "--xla_force_host_platform_device_count=8" and record["added"] == []
        assert f"platform {platform}" in record["reason"]
    flags, record = compose_xla_flags("--xla_gpu_enable_triton_gemm=true", "off", "gpu")
    assert flags == "--xla_gpu_enable_triton_gemm=true" and record["added"] == [] and "off" in record["reason"]
    # a flag the user names keeps the user's value; ours fill in the rest
    user = "--xla_gpu_enable_triton_gemm=true --xla_dump_to=/tmp/d"
    flags, record = compose_xla_flags(user, "auto", "gpu")
    assert flags.startswith(user + " ") and flags.split().count("--xla_gpu_enable_triton_gemm=true") == 1
    assert "--xla_gpu_enable_triton_gemm=false" not in flags and len(record["added"]) == len(GPU_FLAGS) - 1
    assert record["user_set"] == ["xla_gpu_enable_triton_gemm"] and "xla_gpu_enable_triton_gemm" in record["reason"]
    assert flag_names(flags) >= {f.name for f in GPU_FLAGS}
    with pytest.raises(ValueError, match="use one of auto, off"):
        compose_xla_flags("", "on", "gpu")


def test_every_flag_is_known_to_the_installed_jaxlib():
    """A fresh process applies the GPU set (as a GPU run would) and then starts JAX: XLA parses every flag at backend
    start and aborts on one it does not know (``--xla_gpu_graph_level``, MaxText's, is gone from jaxlib 0.10)."""
    code = ("import json, os; from runtime.platform.gpu_flags import apply_gpu_flags; r = apply_gpu_flags('auto', 'gpu'); "
            "import jax; jax.numpy.zeros(1).block_until_ready(); "
            "print(json.dumps({'record': r, 'xla_flags': os.environ['XLA_FLAGS']}))")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(out["record"]["added"]) == len(GPU_FLAGS)
    assert out["xla_flags"].split() == ["--xla_force_host_platform_device_count=2"] + [f.word for f in GPU_FLAGS]


def test_a_cpu_run_adds_none_and_the_plan_records_it():
    before = os.environ.get("XLA_FLAGS")
    record = apply_gpu_flags("auto", "cpu")
    assert record["added"] == [] and os.environ.get("XLA_FLAGS") == before
    ex = build_executor("data", MODELS["cerebras"], make_mesh({"data": 1}, jax.devices()[:1]))
    assert ex.plan["xla_gpu_flags"]["added"] == [] and ex.plan["xla_gpu_flags"]["reason"]


def test_a_bad_setting_is_refused_in_one_line():
    with pytest.raises(UserError, match=r"execution.xla_gpu_flags.*'auto' or 'off'") as err:
        load_config(None, ["execution.xla_gpu_flags=maxtext"])
    assert "\n" not in str(err.value)
    for given, setting in (("off", "off"), ("false", "off"), ("on", "auto"), ("auto", "auto")):
        assert load_config(None, [f"execution.xla_gpu_flags={given}"]).execution.xla_gpu_flags == setting

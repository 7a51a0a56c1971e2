"""Environment variables get the treatment of settings (issue 28, item 5 of Build): a value the stack cannot use is
one `error:` line, exit 2, no traceback, whether this project reads it or JAX does; a multi-process start whose peers
do not all arrive says what it waits for and ends, after mesh.start_timeout, with one line naming the missing ones."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.platform.environment import check_environment

ROOT = Path(__file__).resolve().parents[3]
TRAIN = ["train", "model=tiny", "data=builtin", "mesh.devices=1", "train.seq_len=32", "train.batch_size=2",
         "train.steps=1"]


def _wse(argv, timeout=300, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    environ.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "runtime.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=environ, cwd=ROOT)


def _one_line(res, *fragments) -> None:
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr[-3000:]
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


@pytest.mark.parametrize("name, value, fragment", [
    ("JAX_ENABLE_X64", "maybe", "takes true or false"),                       # JAX reads it at import
    ("JAX_PLATFORMS", "foo", "takes a backend JAX has here"),                 # JAX reads it when a backend starts
    ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "abc", "takes a value of that flag's type"),
    ("JAX_NUM_PROCESSES", "two", "takes a whole number of at least 1"),        # we read these three
    ("JAX_PROCESS_ID", "x", "takes a whole number of at least 0"),
    ("JAX_COORDINATOR_ADDRESS", "nohost", "takes HOST:PORT"),
    ("XLA_FLAGS", "garbage", "'garbage' is not one"),                        # XLA would read it as a flag file
    ("WSE_KEEP_FREED_MEMORY", "maybe", "takes 1 or 0"),
    ("WSE_COMPILE_CACHE", "maybe", "takes 1 or 0"),
    ("WSE_CACHE_DIR", "{file}", "takes a directory (this is a file)"),
])
def test_an_unusable_variable_is_one_line(tmp_path, name, value, fragment):
    (tmp_path / "f").write_text("a file, not a directory")
    value = value.format(file=tmp_path / "f")
    res = _wse([*TRAIN, f"train.run_dir={tmp_path / 'run'}"], **{name: value})
    _one_line(res, f"error: environment variable {name}={value!r} cannot be used", fragment)
    assert not (tmp_path / "run").exists()


def test_a_cache_dir_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "f").write_text("a file")
    res = _wse([*TRAIN, f"train.run_dir={tmp_path / 'run'}"], WSE_CACHE_DIR=str(tmp_path / "f" / "cache"))
    _one_line(res, "the built-in corpus cannot be prepared in", "set WSE_CACHE_DIR to a writable directory")


def test_usable_values_pass():
    check_environment({"WSE_COMPILE_CACHE": "off", "WSE_KEEP_FREED_MEMORY": "1", "JAX_NUM_PROCESSES": "2",
                       "JAX_PROCESS_ID": "0", "JAX_COORDINATOR_ADDRESS": "[::1]:1234",
                       "XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_cpu_enable_fast_math=false"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_start_whose_peer_never_arrives_ends_naming_it(tmp_path):
    """A two-process run whose process 1 never starts: process 0 says what it waits for, then ends with one line
    naming process 1 after mesh.start_timeout (not JAX's abort five minutes later)."""
    port = _free_port()
    mp = ["mesh.num_processes=2", f"mesh.coordinator_address=127.0.0.1:{port}", "mesh.start_timeout=4"]
    res = _wse([*TRAIN, *mp, "mesh.process_id=0", f"train.run_dir={tmp_path / 'run'}"], timeout=120)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert lines[:-1] == [f"process 0 of 2: waiting up to 4 s at 127.0.0.1:{port} for process 1"], res.stderr
    assert lines[-1] == (f"error: 1 of the 2 processes did not arrive at 127.0.0.1:{port} within 4 s: process 1 "
                         "missing; start each with its mesh.process_id (or check that they can reach this host), or "
                         "raise mesh.start_timeout")
    # and a process whose coordinator never starts names it
    res = _wse([*TRAIN, *mp, "mesh.process_id=1", f"train.run_dir={tmp_path / 'run'}"], timeout=120)
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith(
        f"error: process 1 of 2 could not join the coordinator (process 0) at 127.0.0.1:{port} within 4 s"), res.stderr

"""The glibc allocator settings for XLA:CPU (runtime/platform/allocator.py): applied once, and off when asked."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = "from runtime.platform.allocator import keep_freed_memory as k; print(k(), k())"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt settings are glibc's")
@pytest.mark.parametrize("setting,expected", [(None, "True True"), ("0", "False False")])
def test_keep_freed_memory(setting, expected):
    env = {k: v for k, v in os.environ.items() if k != "WSE_KEEP_FREED_MEMORY"}
    if setting is not None:
        env["WSE_KEEP_FREED_MEMORY"] = setting
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == expected

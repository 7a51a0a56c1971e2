"""Environment variables, held to the standard of settings: a value the stack cannot use is one `error:` line that
names the variable, its value and what it takes, never a traceback.

``check_environment`` runs first thing in the command line, before JAX is imported, over the variables this project
reads (``os.environ`` in runtime/ and benchmarks/):

- ``WSE_KEEP_FREED_MEMORY``, ``WSE_COMPILE_CACHE``, ``WSE_BENCH_DEBUG``: switches (1/0, true/false, on/off,
  yes/no);
- ``WSE_CACHE_DIR``, ``XDG_CACHE_HOME``, ``JAX_COMPILATION_CACHE_DIR``: directories (a file there is refused);
- ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, ``JAX_COORDINATOR_ADDRESS``: a multi-process start (counts, ``HOST:PORT``);
- ``XLA_FLAGS``: every word a ``--flag`` or ``--flag=value`` (else XLA reads the whole value as a flag file's name
  and aborts). A flag name XLA does not know is reported by XLA itself, in one line, when the backend starts: the
  flags differ between the CPU, GPU and TPU builds of jaxlib, so no list here could be right for all of them.

JAX reads its own variables (``JAX_PLATFORMS``, ``JAX_ENABLE_X64``, any ``JAX_<flag>``) when it is imported or starts
a backend; ``environment_error`` turns its complaint into the same one line, and the command line applies it to any
error that reaches it. Pure Python.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from runtime.errors import UserError

SWITCH_ON, SWITCH_OFF = ("1", "true", "on", "yes"), ("0", "false", "off", "no")
SWITCHES = ("WSE_KEEP_FREED_MEMORY", "WSE_COMPILE_CACHE", "WSE_BENCH_DEBUG")
DIRECTORIES = ("WSE_CACHE_DIR", "XDG_CACHE_HOME", "JAX_COMPILATION_CACHE_DIR")
_XLA_FLAG = re.compile(r"--[A-Za-z0-9_]+(=.*)?$")


def switch(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    """The value of a switch variable (``default`` when unset or empty); UserError for anything but a switch word."""
    raw = (os.environ if environ is None else environ).get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in SWITCH_ON or raw in SWITCH_OFF:
        return raw in SWITCH_ON
    raise _bad(name, raw, "1 or 0 (true/false, on/off, yes/no)")


def _bad(name: str, value: str, takes: str) -> UserError:
    return UserError(f"environment variable {name}={value!r} cannot be used: it takes {takes}; set it so or unset it")


def env_int(name: str, low: int, environ: Mapping[str, str] | None = None) -> int | None:
    """An integer variable at least ``low`` (None when unset or empty); UserError otherwise."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if raw == "":
        return None
    if not re.fullmatch(r"[+-]?\d+", raw) or int(raw) < low:
        raise _bad(name, raw, f"a whole number of at least {low}")
    return int(raw)


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """UserError (one line) for the first variable of the module doc whose value cannot be used."""
    environ = os.environ if environ is None else environ
    for name in SWITCHES:
        switch(name, True, environ)
    for name in DIRECTORIES:
        raw = environ.get(name, "")
        if raw.strip() and Path(raw).expanduser().exists() and not Path(raw).expanduser().is_dir():
            raise _bad(name, raw, "a directory (this is a file)")
    env_int("JAX_NUM_PROCESSES", 1, environ)
    env_int("JAX_PROCESS_ID", 0, environ)
    address = environ.get("JAX_COORDINATOR_ADDRESS", "").strip()
    if address:
        from runtime.platform.rendezvous import split_address

        try:
            split_address(address)
        except UserError:
            raise _bad("JAX_COORDINATOR_ADDRESS", address, "HOST:PORT, e.g. 10.0.0.1:1234") from None
    for word in environ.get("XLA_FLAGS", "").split():
        if not _XLA_FLAG.match(word):
            raise _bad("XLA_FLAGS", environ["XLA_FLAGS"], f"--flags separated by spaces ('{word}' is not one, e.g. "
                                                          "--xla_force_host_platform_device_count=8)")


# JAX's own words for a variable it could not use (jax/_src/config.py, xla_bridge.py).
_JAX_COMPLAINTS = (
    (re.compile(r"invalid truth value '(?P<value>.*)' for environment '(?P<name>JAX_\w+)'"), "true or false"),
    (re.compile(r'Invalid value "(?P<value>.*)" for JAX flag (?P<flag>jax_\w+)'), "a value of that flag's type"),
    (re.compile(r"Unable to initialize backend '(?P<value>[^']*)': (?P<why>[^(]*)"), None),
)


def environment_error(err: BaseException, environ: Mapping[str, str] | None = None) -> UserError | None:
    """The one line for an exception (or one in its chain) in which JAX says an environment variable's value is
    unusable; None for any other exception."""
    environ = os.environ if environ is None else environ
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err)
        for pattern, takes in _JAX_COMPLAINTS:
            m = pattern.search(text)
            if m is None:
                continue
            groups = m.groupdict()
            name = groups.get("name") or (groups["flag"].upper() if groups.get("flag") else "JAX_PLATFORMS")
            if name not in environ:
                continue  # not set in the environment: a config call in code, not the user's variable
            if takes is None:
                takes = f"a backend JAX has here ({groups['why'].strip().rstrip('.')}), or nothing to let JAX choose"
            return _bad(name, environ[name], takes)
        err = err.__cause__ or err.__context__
    return None

"""Faults injected into a `wse` subprocess (tests only): put this folder on PYTHONPATH and set

- ``TESTFAULT_FSIZE=<bytes>``: no file may grow past that size (``RLIMIT_FSIZE``), so a write fails with EFBIG as on a
  full disk, in Python and in C++ (TensorStore) alike; SIGXFSZ is ignored so the write fails instead of the process;
- ``TESTFAULT_FSIZE_AT_SAVE=<step>:<bytes>``: the same limit, from the checkpoint save of ``step`` on (after the
  previous save completed): a disk that fills during a run;
- ``TESTFAULT_READ_ONLY=<dir>``: every write under ``dir`` fails with EROFS (a read-only mount), at Python's file
  calls (running as root, permissions alone would not stop a write).
"""

import builtins
import errno
import io
import os
import resource
import signal


def _limit(nbytes: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, resource.RLIM_INFINITY))


if os.environ.get("TESTFAULT_FSIZE"):
    _limit(int(os.environ["TESTFAULT_FSIZE"]))

if os.environ.get("TESTFAULT_FSIZE_AT_SAVE"):
    _at, _bytes = (int(x) for x in os.environ["TESTFAULT_FSIZE_AT_SAVE"].split(":"))
    import runtime.checkpoint.store as _store

    _save = _store.RunCheckpoints.save

    def _save_then_fill(self, step, *args, **kwargs):
        if step >= _at:
            self.wait()
            _limit(_bytes)
        return _save(self, step, *args, **kwargs)

    _store.RunCheckpoints.save = _save_then_fill

if os.environ.get("TESTFAULT_READ_ONLY"):
    _ro = os.path.abspath(os.environ["TESTFAULT_READ_ONLY"])

    def _under(path) -> bool:
        try:
            p = os.path.abspath(os.fsdecode(path))
        except TypeError:
            return False
        return p == _ro or p.startswith(_ro + os.sep)

    def _refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    _os_open, _mkdir, _open, _rename, _replace = os.open, os.mkdir, builtins.open, os.rename, os.replace
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _guarded_os_open(path, flags, *a, **k):
        if flags & _WRITE and _under(path):
            _refuse(path)
        return _os_open(path, flags, *a, **k)

    def _guarded_mkdir(path, *a, **k):
        if _under(path):
            _refuse(path)
        return _mkdir(path, *a, **k)

    def _guarded_open(file, mode="r", *a, **k):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and _under(file):
            _refuse(file)
        return _open(file, mode, *a, **k)

    def _guarded_rename(src, dst, *a, **k):
        if _under(dst) or _under(src):
            _refuse(dst)
        return _rename(src, dst, *a, **k)

    def _guarded_replace(src, dst, *a, **k):
        if _under(dst) or _under(src):
            _refuse(dst)
        return _replace(src, dst, *a, **k)

    os.open, os.mkdir, os.rename, os.replace = _guarded_os_open, _guarded_mkdir, _guarded_rename, _guarded_replace
    builtins.open = io.open = _guarded_open

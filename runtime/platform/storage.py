"""Writing results where a user points them: a full or read-only destination is one line, a finished result is never
replaced without ``--overwrite``, and a killed writer leaves nothing a later run trips over.

Failures. The operating system says a write cannot go on with ENOSPC (the disk is full), EDQUOT (a quota),
EFBIG (the file-size limit, ``ulimit -f``), EROFS (a read-only file system) or EACCES/EPERM (no permission);
TensorStore, under Orbax, reports the same inside its own error text (``Failed to write ...: File too large
[os_error_code='27']``). ``storage_error`` recognises both and makes the one-line UserError: the path, the free
space there and what the write needed.

Destinations. Every writer builds its result in a hidden sibling of the destination (``.<name>.tmp-<pid>-<hex>``)
and renames it into place when it is complete, so a reader never sees half a result; ``install`` refuses to replace
a finished one unless asked to (a rename onto a non-empty directory fails atomically, a hard link onto an existing
file too). The writer holds an exclusive ``flock`` on its temporary for as long as it lives; the operating system
drops it when the process ends in any way, SIGKILL included. So the next writer of the same destination knows
which temporaries are live (``live_writer``: another process is writing this destination now) and which a killed
writer left (``clean_stale`` removes them): nothing stays behind for longer than the next run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from runtime.errors import UserError

# errno -> what it means for the user, and how TensorStore spells it inside its messages
FAILURES = {
    errno.ENOSPC: ("the disk is full", "no space left on device"),
    errno.EDQUOT: ("the disk quota is used up", "disk quota exceeded"),
    errno.EFBIG: ("a file reached the file-size limit (ulimit -f)", "file too large"),
    errno.EROFS: ("it is on a read-only file system", "read-only file system"),
    errno.EACCES: ("permission is denied", "permission denied"),
    errno.EPERM: ("the operation is not permitted", "operation not permitted"),
}
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def failure_errno(err: BaseException) -> int | None:
    """The storage errno an exception (or one it was raised from) carries: OSError's, or the one TensorStore's
    text names; None for anything else."""
    seen = set()
    while err is not None and id(err) not in seen and not isinstance(err, UserError):  # a UserError is said already
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in FAILURES:
            return err.errno
        text = str(err).lower()
        for code, (_, spelled) in FAILURES.items():
            if spelled in text or f"os_error_code='{code}'" in text:
                return code
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return None


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free space for an unprivileged user on the file system of ``path`` (or of its nearest existing parent)."""
    p = Path(path).absolute()
    for candidate in (p, *p.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def size_text(n: float | None) -> str:
    if n is None:
        return "an unknown amount"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} bytes"


def storage_error(err: BaseException, path: str | os.PathLike, need: int | None = None, *, what: str = "writing",
                  fix: str = "free space or choose another place",
                  readonly_fix: str = "choose a writable place") -> UserError | None:
    """The one-line UserError for a write that failed for lack of room or of permission (None for other errors):
    ``<what> '<path>' failed: <why> (<free> free, it needs about <need>); <fix>`` (``readonly_fix`` when the
    destination cannot be written at all)."""
    code = failure_errno(err)
    if code is None:
        return None
    why, free = FAILURES[code][0], size_text(free_bytes(path))
    if code in FULL:
        room = f" ({free} free, it needs about {size_text(need)})" if need else f" ({free} free)"
    else:
        room, fix = "", readonly_fix
    return UserError(f"{what} '{path}' failed: {why}{room}; {fix}")


@contextlib.contextmanager
def writing(path: str | os.PathLike, need: int | None = None, *, what: str = "writing", **fixes):
    """Around a write to ``path``: a full or read-only destination becomes ``storage_error``'s one line (``fixes``:
    its ``fix`` and ``readonly_fix``)."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - only storage failures are translated, the rest re-raised
        user = storage_error(err, path, need, what=what, **fixes)
        if user is None:
            raise
        raise user from None


# ----------------------------------------------------------------------------------------------------------------
# Destinations: hidden temporaries, held while their writer lives.


def _prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


def _held(path: Path) -> bool:
    """Whether a live process holds the writer's lock on ``path`` (a temporary file or directory)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock if it got it
    return False


def live_writer(out: str | os.PathLike) -> str | None:
    """The process id (as its temporary names it) of a live writer of ``out``, or None."""
    out = Path(out).absolute()
    if not out.parent.is_dir():
        return None
    for p in out.parent.glob(_prefix(out) + "*"):
        if _held(p):
            return p.name[len(_prefix(out)):].split("-")[0]
    return None


def wait_for_writers(out: str | os.PathLike) -> None:
    """Block until no live process holds a temporary of ``out`` (each writer finished, failed or died)."""
    import fcntl

    out = Path(out).absolute()
    for p in list(out.parent.glob(_prefix(out) + "*")) if out.parent.is_dir() else []:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue  # installed or removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # granted when the writer's process lets go
        finally:
            os.close(fd)


def clean_stale(out: str | os.PathLike) -> int:
    """Remove the temporaries of ``out`` that no live writer holds (a killed writer's); returns how many."""
    out = Path(out).absolute()
    removed = 0
    if not out.parent.is_dir():
        return 0
    for p in out.parent.glob(_prefix(out) + "*"):
        if not _held(p):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
    return removed


class Temporary:
    """A hidden sibling of ``out`` to build the result in (a directory, or a file ending like ``out``), held
    (``flock``) until ``close``; a ``with`` block removes it unless it was installed."""

    def __init__(self, out: str | os.PathLike, *, directory: bool):
        self.out = Path(out).absolute()
        self.path = self.out.parent / f"{_prefix(self.out)}{os.getpid()}-{uuid.uuid4().hex[:8]}{'' if directory else self.out.suffix}"
        self.directory = directory
        self._fd: int | None = None

    def __enter__(self) -> "Temporary":
        import fcntl

        if self.directory:
            self.path.mkdir()
        else:
            self.path.touch()
        self._fd = os.open(self.path, os.O_RDONLY)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True) if self.directory else self.path.unlink(missing_ok=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Finished(UserError):
    """The destination already holds a finished result and replacing it was not asked for."""


def install(tmp: Path, out: str | os.PathLike, *, overwrite: bool, what: str = "--out") -> None:
    """Move the complete ``tmp`` into place at ``out``. Without ``overwrite`` a finished result there (a non-empty
    directory, an existing file) is never replaced: Finished. With it, a previous result is swapped out only after
    the new one is complete, and put back if the swap fails."""
    out = Path(out).absolute()
    if not overwrite:
        try:
            if tmp.is_dir():
                os.rename(tmp, out)  # atomic; refused by the OS when out is a non-empty directory
            else:
                os.link(tmp, out)  # atomic; refused by the OS when out exists
                tmp.unlink()
            return
        except (FileExistsError, OSError) as err:
            if isinstance(err, FileExistsError) or err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise Finished(f"{what} {out} already holds a finished result; pass --overwrite to replace it or "
                               "choose another path") from None
            raise
    if tmp.is_dir() and out.is_dir() and any(out.iterdir()):
        old = out.parent / f"{_prefix(out)}{os.getpid()}-old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except OSError:
            os.rename(old, out)  # put the previous result back: a failure must not lose it
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(tmp, out)


def write_file(out: str | os.PathLike, write: Callable[[Path], object], *, overwrite: bool, what: str,
               need: int | None = None) -> Path:
    """Write one file through a held hidden temporary (``write(tmp_path)`` writes it; the temporary ends like ``out``
    so writers that pick a format by extension keep working), then ``install`` it. Storage failures are one line."""
    out = Path(out)
    with writing(out, need, what=f"writing {what}"):
        clean_stale(out)
        with Temporary(out, directory=False) as tmp:
            write(tmp.path)
            install(tmp.path, out, overwrite=overwrite, what=what)
    return out


def write_new_directory(out: str | os.PathLike, write: Callable[[Path], object], need: int | None, *,
                        what: str) -> object:
    """``write(folder)`` into a held hidden sibling of ``out``, renamed into place when done: the one way a command
    writes a new output directory (`wse convert`'s export, a model-only checkpoint). Refused in one line (UserError)
    when ``out`` is not empty, another process is writing it or finishes it meanwhile, or the disk is full or
    read-only (naming ``what``, the free space and ``need`` bytes). Returns what ``write`` returned."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"output directory '{out}' is not empty; choose a new --out directory")
    with writing(out, need, what=what, fix="free space or choose another --out", readonly_fix="choose a writable --out"):
        out.parent.mkdir(parents=True, exist_ok=True)
        if live_writer(out):
            raise UserError(f"'{out}' is being written by another process; wait for it or choose another --out")
        clean_stale(out)
        with Temporary(out, directory=True) as tmp:
            written = write(tmp.path)
            try:
                install(tmp.path, out, overwrite=False)
            except Finished:
                raise UserError(f"output directory '{out}' was filled by another process meanwhile; it is left as it "
                                "is: choose a new --out directory") from None
    return written

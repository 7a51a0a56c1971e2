"""What clusters and shared disks do to a run, handled: preemption signals and a second process in the run dir.

Signals. Slurm and Kubernetes send SIGTERM before they preempt (then SIGKILL after a grace period); a user presses
Ctrl-C (SIGINT). While a run trains, ``StopSignals`` turns the first of either into a request: the loop finishes the
step it is on, writes a checkpoint of it, says so in one line and stops with status 128 + the signal number (143 for
SIGTERM, 130 for SIGINT; runtime.errors.TrainingStopped). The first signal also restores the default handlers, so a
second one ends the process at once; a checkpoint being written then is abandoned in Orbax's temporary directory and
the previous complete one stays the latest (the next start clears the leftover). In a multi-process run every process
learns of a signal any of them received at the same step boundary (one small all-gather per step), so all of them
save the same step.

Lock. ``RunDirLock`` holds an exclusive ``flock`` on ``<run_dir>/.lock`` for the whole run (process 0 of a
multi-process run takes it for all of them). The operating system releases it when the process ends in any way,
SIGKILL included, so a killed run never leaves a stale lock (at most a stale file, which the next run locks anew); a second run in the same run dir is refused with one line
naming the holder's process id and host. Readers (`wse eval`, `wse generate`, `wse convert`, fine-tuning from the run)
take no lock: they read the latest complete checkpoint. ``flock`` is per host on some network file systems (older
NFS): two hosts sharing a run dir there are not excluded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

from runtime.errors import UserError

LOCK_FILE = ".lock"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """A context manager: while active, SIGTERM and SIGINT are recorded instead of ending the process (main thread
    only; elsewhere Python cannot install handlers and signals keep their default effect). ``received`` is the first
    signal's number, or None."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
        for sig in STOP_SIGNALS:  # a second signal ends the process as it normally would
            signal.signal(sig, signal.SIG_DFL)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def agreed(self, process_count: int = 1) -> int | None:
        """The signal to stop for, the same in every process: any process's first signal (the highest number when
        two processes received different ones)."""
        if process_count <= 1:
            return self.received
        import numpy as np
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.asarray(self.received or 0, np.int32))
        return int(np.max(flags)) or None


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class RunDirLock:
    """An exclusive lock on a run dir for as long as a run uses it; ``acquire`` refuses (UserError) a run dir another
    live process holds, naming that process. ``release`` (or the process ending) frees it. Releasing removes the lock
    file, and the run dir too when the lock made it and nothing else was written there, so a run refused after it
    took the lock leaves the directory as it found it."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._file = None
        self._made_dir = False

    def acquire(self) -> "RunDirLock":
        import fcntl

        self._made_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            f = open(self.path, "a+", encoding="utf-8")  # never truncated before the lock is ours: it names the holder
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = _holder(f.read())
                f.close()
                raise UserError(f"train.run_dir '{self.run_dir}' is in use by {holder}; wait for that run to end or "
                                "stop it, or choose another train.run_dir") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder released (and removed) the file between our open and our lock: try again
                break
            f.close()
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is None:
            return
        import fcntl

        self.path.unlink(missing_ok=True)  # while still holding it: nobody can lock the file we remove
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None
        if self._made_dir:
            try:
                self.run_dir.rmdir()  # only when empty: a refused fresh run leaves no directory behind
            except OSError:
                pass


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"process {info['pid']} on host {info['host']} (since {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "another process"

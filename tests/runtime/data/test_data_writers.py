"""`wse data` holds its --out (issue 28, items 3, 5 and 6): a second writer of the same --out is refused while the
first writes, one that finishes second never replaces the first's dataset without --overwrite, a killed writer's
hidden temporary is gone after the next run, and a full or read-only destination is one `error:` line that names it,
with nothing finished lost and no temporary left (runtime/platform/storage.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.data import TokenDataset, build_dataset

ROOT = Path(__file__).resolve().parents[3]
FAULTS = ROOT / "tests" / "fault_injection"


def _docs(folder: Path, word: str, n: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i}.txt").write_text(f"{word} document {i}. " * 40, encoding="utf-8")
    return folder


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _one_error_line(err: str, fragment: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err


def _wse(*argv, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAULTS), str(ROOT)]), **env}
    return subprocess.run([sys.executable, "-m", "runtime.cli", *argv], capture_output=True, text=True, timeout=300,
                          env=environ, cwd=ROOT)


def test_a_second_writer_is_refused_while_the_first_writes(tmp_path, capsys):
    out = tmp_path / "ds"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom runtime.platform.storage import Temporary\n"
                               "t = Temporary(sys.argv[1], directory=True).__enter__()\nprint('writing', flush=True)\n"
                               "time.sleep(600)", str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "writing"
        assert main(["data", str(_docs(tmp_path / "a", "alpha")), "--out", str(out)]) == 2
        _one_error_line(capsys.readouterr().err, f"is being written by another process (pid {holder.pid})")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["data", str(_docs(tmp_path / "a", "alpha")), "--out", str(out)]) == 0  # the killed one let go
    assert _leftovers(out) == []  # and its temporary is gone


def test_one_that_finishes_second_never_replaces_the_first(tmp_path, capsys, monkeypatch):
    """Two `wse data` with different inputs on one --out, the other finishing while this one tokenises."""
    import runtime.data.datasets as datasets

    out = tmp_path / "ds"
    build_dataset([str(_docs(tmp_path / "b", "beta"))], tmp_path / "theirs")
    fingerprint = json.loads((tmp_path / "theirs" / "meta.json").read_text())["fingerprint"]
    real = datasets._tokenise_into

    def meanwhile(*args, **kwargs):
        result = real(*args, **kwargs)
        os.rename(tmp_path / "theirs", out)  # the other process's dataset lands at --out first
        return result

    monkeypatch.setattr(datasets, "_tokenise_into", meanwhile)
    assert main(["data", str(_docs(tmp_path / "a", "alpha")), "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, "was written by another process while this one ran; pass --overwrite")
    assert TokenDataset(out).fingerprint == fingerprint and _leftovers(out) == []  # theirs, whole


@pytest.mark.slow
def test_a_killed_writer_leaves_nothing_after_the_next_run(tmp_path):
    out = tmp_path / "ds"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "runtime.cli", "data", "--builtin", "python-docs", "--out", str(out)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None and not _leftovers(out):
            time.sleep(0.01)
        assert proc.poll() is None, "the writer finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _leftovers(out) and not out.exists()  # what a kill leaves: a hidden temporary
    res = _wse("data", str(_docs(tmp_path / "a", "alpha")), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert _leftovers(out) == [] and (out / "meta.json").is_file()


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_finished_dataset_stays(tmp_path):
    out = tmp_path / "ds"
    before = build_dataset([str(_docs(tmp_path / "a", "alpha"))], out)
    meta = (out / "meta.json").read_text()
    # every file may grow to 64 KB: the built-in corpus's shards cannot (EFBIG, as ENOSPC on a full disk)
    res = _wse("data", "--builtin", "python-docs", "--out", str(out), "--overwrite", TESTFAULT_FSIZE="65536")
    assert res.returncode == 2, res.stderr
    _one_error_line(res.stderr, f"error: writing the dataset '{out}' failed: a file reached the file-size limit")
    assert " free, it needs about " in res.stderr and "free space or choose another --out" in res.stderr
    assert (out / "meta.json").read_text() == meta and _leftovers(out) == []
    assert before["train_tokens"] == len(TokenDataset(out))


def test_a_read_only_destination_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    res = _wse("data", str(_docs(tmp_path / "a", "alpha")), "--out", str(ro / "ds"), TESTFAULT_READ_ONLY=str(ro))
    assert res.returncode == 2, res.stderr
    _one_error_line(res.stderr, f"error: writing the dataset '{ro / 'ds'}' failed: it is on a read-only file system; "
                                "choose a writable --out")
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("code", ["ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES"])
def test_each_storage_failure_is_recognised_from_the_os_or_tensorstore(tmp_path, code):
    import errno

    from runtime.platform.storage import storage_error

    number = getattr(errno, code)
    err = storage_error(OSError(number, os.strerror(number)), tmp_path, 10**6)
    as_tensorstore = ValueError(f"OUT_OF_RANGE: Failed writing: \"{tmp_path}/x\": {os.strerror(number)} "
                                f"[os_error_code='{number}']")
    assert err is not None and str(err) == str(storage_error(as_tensorstore, tmp_path, 10**6))
    assert storage_error(ValueError("something else"), tmp_path) is None

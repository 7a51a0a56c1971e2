"""Where a decode step's time goes, read off a jax.profiler trace: the device's own work against everything else.

Method. One generate call runs under ``jax.profiler``; model/generate.py marks its decode loop with a host-side trace
annotation (``DECODE_TRACE``), from the call to the last token. Inside that span, the union of the intervals of the
device's operations is ``busy``: on a GPU the kernels on its streams (planes ``/device:GPU:*``, lines ``Stream*``),
on XLA:CPU the thunks its executor runs on the host's worker threads (lines ``tf_XLA*``, without the executor's own
markers and the ``while`` thunk, which spans its whole body). Per decode step, ``busy_s`` is that union over the
steps and ``overhead_s`` the rest of the span: launches, host-driven loop control and conditionals, waits. On a
machine shared with other work an operation that loses its core stays "busy", so the split there says how much of a
step is the program's own control, not how fast its operations ran; ``fastest_step_s``, the shortest single step
(``fastest_step``), is the step as it runs when nothing else takes its cores.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

# XLA:CPU executor events that are not operations (scheduling markers) or that span other operations.
_CPU_MARKERS = ("ThreadpoolListener", "SlinkyThreadPool", "ThunkExecutor", "end: ", "while", "call", "conditional")


def profile_split(run, steps_of) -> dict:
    """{"step_s", "busy_s", "overhead_s", "busy_fraction", "source", "fastest_step_s"} per decode step of one traced
    call of ``run`` (a function of no arguments returning a model.generate.Generation; ``steps_of`` reads its decode
    step count), or {"error"} when the trace holds no decode span or no device operations."""
    import jax

    from model.generate import DECODE_TRACE

    folder = tempfile.mkdtemp(prefix="wse-decode-trace-")
    try:
        jax.profiler.start_trace(folder)
        try:
            result = run()
        finally:
            jax.profiler.stop_trace()
        files = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)
        if not files:
            return {"error": "the profiler wrote no trace"}
        return split(jax.profiler.ProfileData.from_file(max(files, key=os.path.getmtime)), DECODE_TRACE,
                     steps_of(result))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def split(profile, span_name: str, steps: int) -> dict:
    """The busy/overhead split (see profile_split) of a ``jax.profiler.ProfileData`` over the last event named
    ``span_name`` on the host, divided among ``steps`` decode steps."""
    spans = [(e.start_ns, e.start_ns + e.duration_ns) for plane in profile.planes if plane.name.startswith("/host")
             for line in plane.lines for e in line.events if e.name == span_name]
    if not spans or steps < 1:
        return {"error": f"no '{span_name}' span or no decode step in the trace"}
    start, end = max(spans)
    ops, source = device_ops(profile)
    inside = [(name, max(a, start), min(b, end)) for name, a, b in ops if b > start and a < end]
    if not inside:
        return {"error": "no device operations inside the decode span"}
    busy = union_length([(a, b) for _, a, b in inside])
    wall = end - start
    out = {"step_s": wall / steps / 1e9, "busy_s": busy / steps / 1e9, "overhead_s": (wall - busy) / steps / 1e9,
           "busy_fraction": busy / wall, "source": source}
    fastest = fastest_step(inside, steps)
    if fastest:
        out["fastest_step_s"] = fastest / 1e9
    return out


def fastest_step(ops, steps: int) -> int | None:
    """The shortest interval (ns) between the starts of consecutive runs of the step's marker: the operation that runs
    exactly once per decode step and takes the longest in all (the head's matrix product, as a rule); None if no
    operation runs exactly ``steps`` times. A step's own time, undisturbed by the ones around it: on a shared machine
    the fastest is the one that ran with the fewest interruptions."""
    starts, total = {}, {}
    for name, a, b in ops:
        starts.setdefault(name, []).append(a)
        total[name] = total.get(name, 0) + b - a
    marks = [n for n, s in starts.items() if len(s) == steps]
    if not marks or steps < 2:
        return None
    s = sorted(starts[max(marks, key=total.get)])
    return min(b - a for a, b in zip(s, s[1:]))


def device_ops(profile) -> tuple[list[tuple[str, int, int]], str]:
    """([(name, start_ns, end_ns)] of every device operation in the trace, what they are): GPU kernels when the trace
    has a GPU plane, else XLA:CPU thunks."""
    gpu = [(e.name, e.start_ns, e.start_ns + e.duration_ns) for plane in profile.planes
           if plane.name.startswith("/device:GPU") for line in plane.lines if line.name.startswith("Stream")
           for e in line.events]
    if gpu:
        return gpu, "GPU kernels on the device's streams"
    cpu = [(e.name, e.start_ns, e.start_ns + e.duration_ns) for plane in profile.planes if plane.name.startswith("/host")
           for line in plane.lines if line.name.startswith("tf_XLA") for e in line.events
           if not e.name.startswith(_CPU_MARKERS)]
    return cpu, "XLA:CPU thunks on the host's worker threads"


def union_length(intervals) -> int:
    """Total length covered by a list of (start, end) intervals (overlaps counted once)."""
    total, cur_start, cur_end = 0, None, None
    for a, b in sorted(intervals):
        if cur_end is None or a > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = a, b
        else:
            cur_end = max(cur_end, b)
    return total + (cur_end - cur_start if cur_end is not None else 0)

"""The training section of `wse bench`: every mode of every model, and each model's PyTorch baseline, as rows.

A model's runs (its modes, and ``torch`` for the in-process CPU baseline) are all compiled first and then stepped
round by round, one step of each per round, so that load drifting over the minutes of a run hits them alike. When
they would not fit in memory together (``fits_together``), or without interleaving, each is compiled, stepped and
freed in turn. A run that fails keeps its row, with its ``error``.

The GPU baseline (eager and torch.compile) runs in child processes (``gpu_baseline_rows``); suite.py measures it
before JAX takes the device memory, and its rows are joined to our data-mode rows here.
"""

from __future__ import annotations

import os
import traceback

from benchmarks.sizes import Sizes
from model.errors import describe_error

# Bytes one training run of a model holds, for deciding whether a model's runs fit in memory at once: 24 per parameter
# (float32 weights, gradients, two Adam moments, and one more copy for the host side of streaming or the baseline's
# model) plus 16 per logit (the float32 [tokens, vocab] logits, their gradient and the softmax temporaries).
RUN_BYTES_PER_PARAM = 24
RUN_BYTES_PER_LOGIT = 16
# Fraction of the available memory a model's runs may take together (the rest is XLA's workspace and other work).
TOGETHER_FRACTION = 0.5
# Steps `--profile` traces, after the row's timed steps (untimed: the profiler costs the measurement nothing).
PROFILE_STEPS = 2


def training_rows(sizes: Sizes, modes, n_devices: int, platform: str, dtype: str, remat: str, ceilings: dict,
                  peak: float, log, *, baseline: bool = True, interleave: bool = True,
                  torch_gpu: dict | None = None, attention: str = "auto", profile=None,
                  probe=None, probes: list | None = None) -> tuple[list[dict], dict]:
    """(rows, baseline): every mode of every model, and the PyTorch baseline of each model.

    On platform gpu the baseline is one row per variant (eager, compile) from child processes: ``torch_gpu``
    ({model: rows}, measured by ``gpu_baseline_rows`` before JAX took the device) or, for a model it lacks, measured
    here after that model's runs are freed; either way each row gets our data-mode tokens/s and the ratio.

    With ``interleave`` a model's runs (its modes and its baseline) are all compiled first and then stepped round
    by round, one step of each per round, so that load drifting over the minutes of a run hits them alike; without
    it, or when they would not fit in memory together (``fits_together``), each run is compiled, stepped and freed
    in turn. ``profile``: (model, mode, folder) of the row whose steps are traced (``ModelRuns.trace_steps``).
    ``probe``: a function measuring the matmul rate, called after every timed round (or a lone run's timed step),
    its readings appended to ``probes``: the device's rate under the load the timed steps ran in (suite.py scales
    the ceilings to it)."""
    from benchmarks.baseline_torch import torch_available

    gpu_torch = baseline and platform == "gpu"
    has_torch = baseline and not gpu_torch and torch_available()  # in-process PyTorch: the CPU baseline
    rows, base_rows = [], []
    for model in sizes.models:
        runs = ModelRuns(model, sizes, n_devices, platform, dtype, remat, attention, log)
        runs.probe, runs.probes = probe, probes if probes is not None else []
        if profile and profile[0] == model:
            runs.profile = (profile[1], profile[2])
        its_modes = sizes.model_modes(model, modes)
        runs.run(its_modes + (["torch"] if has_torch else []), interleave, peak)
        model_rows = [runs.mode_row(mode, ceilings, peak) for mode in its_modes]
        data_row = compare_with_data(model_rows)
        if has_torch:
            base_rows.append(runs.torch_row(data_row))
        if gpu_torch:
            measured = (torch_gpu or {}).get(model) or gpu_baseline_rows(model, runs.batch, runs.seq_len, sizes,
                                                                          dtype, log)
            base_rows += [runs.gpu_baseline_row(dict(b), data_row) for b in measured]
        rows += model_rows
    return rows, baseline_summary(base_rows, baseline=baseline, gpu_torch=gpu_torch, has_torch=has_torch,
                                  interleave=interleave)


class ModelRuns:
    """The training runs of one model at one shape (``batch`` x ``seq_len`` tokens a step): its modes, and ``torch``
    for the in-process PyTorch baseline. ``runs`` holds (name, run) for each run still alive, in start order;
    ``failed`` the error of each that failed (``{"error": text}``); ``profile`` (mode, folder) of the run to trace,
    and ``traces`` the trace folder of each traced run."""

    def __init__(self, model: str, sizes: Sizes, n_devices: int, platform: str, dtype: str, remat: str,
                 attention: str, log):
        from model.config import get_config

        self.model, self.cfg, self.sizes, self.log = model, get_config(model), sizes, log
        self.batch, self.seq_len = sizes.batch_size[model], min(sizes.seq_len[model], self.cfg.max_seq_len)
        self.n_devices, self.platform, self.dtype, self.remat, self.attention = (n_devices, platform, dtype, remat,
                                                                                 attention)
        self.runs: list[tuple[str, object]] = []
        self.failed: dict[str, dict] = {}
        self.profile: tuple[str, object] | None = None
        self.traces: dict[str, str] = {}
        self.probe, self.probes = None, []  # the matmul probe between timed steps, and its readings

    def take_probe(self) -> None:
        """One reading of ``probe`` (if any) into ``probes``: the device's rate right after timed steps."""
        if self.probe is not None:
            self.probes.append(self.probe())

    def make(self, name: str):
        """A compiled run: ``TorchRun`` for ``torch``, else a ``TrainingRun`` of the mode on its mesh."""
        from benchmarks.baseline_torch import TorchRun
        from benchmarks.training import TrainingRun, mode_axes
        from runtime.execution.placement import device_memory_bytes
        from runtime.platform import build_mesh

        if name == "torch":
            return TorchRun(self.cfg, batch_size=self.batch, seq_len=self.seq_len)
        mesh = build_mesh(self.platform, self.n_devices, mode_axes(name, self.n_devices, self.cfg.n_layers))
        run = TrainingRun(self.model, name, mesh, batch_size=self.batch, seq_len=self.seq_len, dtype=self.dtype,
                          remat=self.remat, attention=self.attention,
                          total_steps=self.sizes.warmup + self.sizes.steps + 1)
        run.info["device_memory_bytes"] = device_memory_bytes(mesh)
        return run

    def attempt(self, name: str, fn, *args, **kw) -> bool:
        """Call ``fn(*args, **kw)``; on an exception record it as ``name``'s error, log it and return False."""
        try:
            fn(*args, **kw)
            return True
        except Exception as err:  # noqa: BLE001 - keep the row and say why it is missing
            self.failed[name] = {"error": describe_error(err)}
            self.log(f"  {self.model} {name}: FAILED {self.failed[name]['error']}")
            if os.environ.get("WSE_BENCH_DEBUG"):
                traceback.print_exc()
            return False

    def start(self, name: str) -> None:
        self.runs.append((name, self.make(name)))

    def run(self, names: list[str], interleave: bool, peak: float) -> None:
        """Start and step every run in ``names``: interleaved when asked and they fit in memory together, else in
        turn."""
        together = interleave and fits_together(self.cfg, self.batch, self.seq_len, len(names), self.platform)
        if interleave and not together:
            self.log(f"  {self.model}: {len(names)} runs at once would not fit in memory; running them one after "
                     "another")
        if together:
            self.step_together(names)
        else:
            self.step_in_turn(names, peak)

    def step_together(self, names: list[str]) -> None:
        """Start every run, then step them round by round (warm-up rounds untimed); a run that fails drops out."""
        for name in names:
            self.attempt(name, self.start, name)
        for _ in range(self.sizes.warmup):
            self.runs = [(m, r) for m, r in self.runs if self.attempt(m, r.step, timed=False)]
        for _ in range(self.sizes.steps):
            self.runs = [(m, r) for m, r in self.runs if self.attempt(m, r.step)]
            self.take_probe()
        for m, r in self.runs:
            self.attempt(m, self.trace_steps, m, r)

    def trace_steps(self, name: str, run) -> None:
        """When ``profile`` names this run: PROFILE_STEPS more steps of it, untimed, under a jax.profiler trace
        (runtime.train.profiling.Trace); the trace's folder goes to ``traces``."""
        if self.profile is None or self.profile[0] != name:
            return
        from runtime.train.profiling import Trace

        with Trace(self.profile[1]) as trace:
            for _ in range(PROFILE_STEPS):
                run.step(timed=False)
        self.traces[name] = str(trace.folder)
        self.log(f"  {self.model} {name}: {PROFILE_STEPS} steps traced in {trace.folder}")

    def step_in_turn(self, names: list[str], peak: float) -> None:
        """Start and step each run alone; a mode's run is then freed and only its summary row kept (the next run
        needs the memory), the CPU baseline is kept as it is."""
        for name in names:
            if not self.attempt(name, self.start, name):
                continue
            run = self.runs[-1][1]
            if not self.attempt(name, self.step_alone, run):
                self.runs.pop()
            elif name != "torch":
                self.attempt(name, self.trace_steps, name, run)  # a trace that fails leaves the row as measured
                summary = run.row(peak)
                run.close()
                self.runs[-1] = (name, _Done(summary))

    def step_alone(self, run) -> None:
        """The warm-up steps (untimed), then the timed steps, of one run."""
        for i in range(self.sizes.warmup + self.sizes.steps):
            run.step(timed=i >= self.sizes.warmup)
            if i >= self.sizes.warmup:
                self.take_probe()

    def mode_row(self, mode: str, ceilings: dict, peak: float) -> dict:
        """The row of ``mode``: its run's summary with MFU and prediction (the run is freed), or its error."""
        from benchmarks.training import mode_axes

        run = dict(self.runs).get(mode)
        if run is None:
            return {"model": self.model, "mode": mode, "mesh": mode_axes(mode, self.n_devices, self.cfg.n_layers),
                    "devices": self.n_devices, "batch_size": self.batch, "seq_len": self.seq_len,
                    "tokens_per_s": None, "mfu": None, "step_time_s": None, "predicted_step_time_s": None,
                    "memory": None, "error": self.failed.get(mode, {}).get("error", "not run")}
        row = run.row(peak)
        run.close()
        predict_row(row, ceilings, peak)
        if self.profile and self.profile[0] == mode:
            row["profile"] = self.traces.get(mode)  # None when the trace failed: ``profile_error`` says why
            if mode not in self.traces:
                row["profile_error"] = self.failed.get(mode, {}).get("error")
        # provisional: MFU and the prediction are recomputed against the mean of the two ceiling readings
        self.log(f"  {self.model:>5} {mode:<9} step {row['step_time_s']:.3f}s  {row['tokens_per_s']:,.0f} tok/s  "
                 f"compile {row['compile_s']:.1f}s  (provisional, vs the first ceiling reading: MFU {row['mfu']:.1%}, "
                 f"predicted/measured {row['predicted_over_measured']:.2f})")
        return row

    def torch_row(self, data_row: dict | None) -> dict:
        """The CPU baseline's row joined to our data-mode row (the run is freed), or its error."""
        run = dict(self.runs).get("torch")
        if run is None:
            return {"model": self.model, "batch_size": self.batch, "seq_len": self.seq_len,
                    "error": self.failed.get("torch", {}).get("error")}
        b = run.row()
        run.close()
        self.join_data_mode(b, data_row)
        self.log(f"  {self.model:>5} torch     {b['tokens_per_s']:,.0f} tok/s  ours (data) / torch "
                 f"{b['ratio'] if b['ratio'] is not None else float('nan'):.2f}")
        return b

    def gpu_baseline_row(self, b: dict, data_row: dict | None) -> dict:
        """A GPU baseline row (one variant, from a child process) joined to our data-mode row if it measured
        anything."""
        if b.get("tokens_per_s"):
            self.join_data_mode(b, data_row)
            self.log(f"  {self.model:>5} torch {b['variant']:<7} {b['tokens_per_s']:,.0f} tok/s  ours (data) / torch "
                     f"{b['ratio'] if b['ratio'] is not None else float('nan'):.2f}")
        return b

    def join_data_mode(self, b: dict, data_row: dict | None) -> None:
        """Put on baseline row ``b`` our data mode's tokens/s (batch x seq_len / step time), its ratio to the
        baseline's and its peak device memory estimate (bytes); None where data mode has no measured row."""
        ours = data_row and self.batch * self.seq_len / data_row["step_time_s"]
        b["ours_data_tokens_per_s"] = ours or None
        b["ratio"] = ours / b["tokens_per_s"] if ours else None
        b["ours_data_peak_memory_bytes"] = ((data_row or {}).get("memory") or {}).get("peak_estimate")


def compare_with_data(model_rows: list[dict]) -> dict | None:
    """Add ``vs_data`` (step time over data mode's, the overhead share, the predicted bubble and the allowed
    overhead, bubble + 0.2) to each measured pipelined or streaming row of one model; returns its measured data-mode
    row, or None."""
    data_row = next((r for r in model_rows if r["mode"] == "data" and r.get("step_time_s")), None)
    if data_row is None:
        return None
    data_step = data_row["step_time_s"]
    for row in model_rows:
        if row["mode"] != "data" and row.get("step_time_s"):
            bubble = (row.get("plan") or {}).get("bubble_fraction") or 0.0
            row["vs_data"] = {
                "step_time_ratio": row["step_time_s"] / data_step,
                "overhead_fraction": 1.0 - data_step / row["step_time_s"],
                "predicted_bubble": bubble,
                "allowed_overhead": bubble + 0.2,
            }
    return data_row


def baseline_summary(base_rows: list[dict], *, baseline: bool, gpu_torch: bool, has_torch: bool,
                     interleave: bool) -> dict:
    """The ``baseline`` section of the result: its rows, whether it ran and how, or why not."""
    if gpu_torch:
        ok = [b for b in base_rows if b.get("tokens_per_s")]
        result = {"available": bool(ok), "interleaved": False, "subprocess": True, "rows": base_rows}
        if not ok:
            result["reason"] = next((b["error"] for b in base_rows if b.get("error")), "no baseline row")
        return result
    if has_torch:
        return {"available": True, "interleaved": interleave, "rows": base_rows}
    if baseline:
        return {"available": False, "reason": "torch/transformers not installed", "rows": []}
    return {"available": False, "reason": "skipped (--no-baseline)", "rows": []}


def gpu_baseline_rows(model: str, batch: int, seq_len: int, sizes: Sizes, dtype: str, log) -> list[dict]:
    """The GPU PyTorch baseline of ``model`` at ``batch`` x ``seq_len``: one row per variant (eager, compile), each
    measured in its own child process, one after the other (baseline_torch.run_in_subprocess)."""
    from benchmarks.baseline_torch import VARIANTS, run_in_subprocess

    rows = []
    for variant in VARIANTS:
        row = run_in_subprocess(model, batch_size=batch, seq_len=seq_len, steps=sizes.steps, warmup=sizes.warmup,
                                dtype=dtype, variant=variant)
        if row.get("error"):
            log(f"  {model:>5} torch {variant:<7} FAILED {row['error']}")
        else:
            compile_s = f", compile {row['compile_s']:.1f}s" if row.get("compile_s") is not None else ""
            log(f"  {model:>5} torch {variant:<7} {row['tokens_per_s']:,.0f} tok/s  peak device memory "
                f"{row['peak_memory_bytes'] / 1e9:.1f} GB{compile_s}")
        rows.append(row)
    return rows


def available_memory_bytes(platform: str) -> int:
    """Memory free for the runs: MemAvailable on CPU, the first device's limit minus use on an accelerator."""
    if platform == "cpu":
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    import jax

    stats = jax.devices(platform)[0].memory_stats() or {}
    return int(stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0))


def fits_together(cfg, batch: int, seq_len: int, n_runs: int, platform: str) -> bool:
    """Whether ``n_runs`` training runs of ``cfg`` fit in memory at the same time (see RUN_BYTES_PER_*)."""
    per_run = RUN_BYTES_PER_PARAM * cfg.parameters + RUN_BYTES_PER_LOGIT * batch * seq_len * cfg.vocab_size
    return n_runs * per_run <= TOGETHER_FRACTION * available_memory_bytes(platform)


class _Done:
    """A finished run whose summary is all that is kept (sequential mode)."""

    def __init__(self, summary: dict):
        self.summary = summary

    def row(self, peak: float) -> dict:
        return dict(self.summary)

    def close(self) -> None:
        pass


def predict_row(row: dict, ceilings: dict, peak: float) -> None:
    """(Re)compute a row's MFU against ``peak`` (FLOP/s), its predicted step time from ``ceilings`` and the bytes it
    moves over the host link per step (``link_bytes_per_step``: {to_device, to_host}), in place."""
    from benchmarks.predict import predict

    row["mfu"] = row["model_flops_6n"] / peak
    row["mfu_algorithmic"] = row["model_flops_algorithmic"] / peak
    pred = predict(row, ceilings, row["device_memory_bytes"])
    row["predicted_step_time_s"] = pred["predicted_step_time_s"]
    row["predicted_over_measured"] = pred["ratio"]
    row["link_bytes_per_step"] = pred["link_bytes"]
    row["prediction"] = pred

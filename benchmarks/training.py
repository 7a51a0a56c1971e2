"""One training row: a preset trained in one execution mode on one mesh, timed the way a user's run would go.

What is measured, and how:
- compile time: ``lower().compile()`` of the real training step (AdamW with clipping, state donated), timed once;
  the compiled executable is then the one that runs, so nothing compiles twice.
- step time: the median of ``steps`` timed steps after ``warmup`` untimed ones; each step waits for its loss (the
  result a training loop needs every step).
- tokens/s = batch x sequence / step time; model FLOP/s by the 6N rule and by the algorithmic count (attention at the
  run's sequence length and the logit matmul; model/config.py); MFU = model FLOP/s (6N) / the measured matmul ceiling
  at the compute dtype, which on CPU is the whole host's (emulated devices share its cores).
- memory: XLA's ``memory_analysis()`` of the compiled step (bytes per device), and the process's peak resident set
  (the kernel's high-water mark since the process started, so it is monotone over the rows of one run).

Token ids are drawn at random (seeded): a step's time does not depend on their values, and a corpus would only add
loading time to what is being measured.
"""

from __future__ import annotations

import resource
import statistics
import time

import numpy as np

MEMORY_FIELDS = ("generated_code_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
                 "alias_size_in_bytes", "temp_size_in_bytes", "host_argument_size_in_bytes",
                 "host_output_size_in_bytes", "host_temp_size_in_bytes", "peak_memory_in_bytes")


def mode_axes(mode: str, n_devices: int, n_layers: int) -> dict[str, int]:
    """The mesh a mode runs on, given the devices: ``data`` and ``streaming`` put every device on the ``data`` axis
    (for streaming that axis is SwarmX's: each device is one system streaming the same layer); ``pipelined`` puts as
    many as it can on ``stage`` (the largest divisor of the device count not above the layer count) and the rest on
    ``data``."""
    if mode != "pipelined":
        return {"data": n_devices, "stage": 1, "model": 1}
    stages = max(s for s in range(1, min(n_devices, n_layers) + 1) if n_devices % s == 0)
    return {"data": n_devices // stages, "stage": stages, "model": 1}


def memory_figures(compiled) -> dict:
    """XLA's memory analysis of a compiled step (bytes per device) and an argument + output + temp - alias estimate."""
    stats = compiled.memory_analysis()
    out = {f.removesuffix("_in_bytes"): int(getattr(stats, f)) for f in MEMORY_FIELDS if hasattr(stats, f)}
    if {"argument_size", "output_size", "temp_size", "alias_size"} <= out.keys():
        out["peak_estimate"] = out["argument_size"] + out["output_size"] + out["temp_size"] - out["alias_size"]
    return out


def peak_rss_bytes() -> int:
    """The process's peak resident set size (Linux reports kilobytes)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def random_batch(vocab: int, batch: int, seq_len: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(batch, seq_len + 1), dtype=np.int32)
    return ids[:, :-1], ids[:, 1:]


class TrainingRun:
    """One preset in one mode on one mesh, compiled and ready: ``step()`` runs and times one training step,
    ``row(peak_flops)`` summarises the timed steps. Separate from the loop so that the suite can interleave the
    steps of several runs (every mode of a model and its PyTorch baseline, round by round): on a shared machine the
    load drifts over minutes, and interleaving gives every run the same conditions."""

    def __init__(self, model: str, mode: str, mesh, *, batch_size: int, seq_len: int, dtype: str = "float32",
                 remat="auto", attention: str = "auto", seed: int = 0, total_steps: int = 100,
                 layer_loop: str = "auto"):
        import jax.numpy as jnp

        from model import gpt
        from model.config import get_config
        from runtime.execution import build_executor
        from runtime.execution.optim import build_optimizer
        from runtime.platform import mesh_shape

        cfg = self.cfg = get_config(model)
        seq_len = min(seq_len, cfg.max_seq_len)
        ex = build_executor(mode, cfg, mesh, dtype=jnp.dtype(dtype), remat=remat, attention=attention,
                            batch_size=batch_size, seq_len=seq_len, layer_loop=layer_loop)
        self.device = mesh.devices.flat[0]
        optimizer = build_optimizer(cfg, total_steps=total_steps)
        self.state = ex.init_state(gpt.initial_params(cfg, seed), optimizer)
        tokens_np, targets_np = random_batch(cfg.vocab_size, batch_size, seq_len, seed)
        self.tokens, self.targets = ex.put_batch(tokens_np), ex.put_batch(targets_np)
        t0 = time.perf_counter()
        self.compiled = ex.make_train_step(optimizer).lower(self.state, self.tokens, self.targets).compile()
        self.compile_s = time.perf_counter() - t0
        self.memory = memory_figures(self.compiled)
        self.info = {
            "model": model, "mode": ex.mode, "mesh": mesh_shape(mesh), "devices": int(mesh.devices.size),
            "parameters": cfg.parameters, "batch_size": batch_size, "seq_len": seq_len,
            "tokens_per_step": batch_size * seq_len, "dtype": dtype, "remat": ex.plan["remat"],
            "remat_requested": ex.plan["requested_remat"], "remat_reason": ex.plan["remat_reason"],
            "attention": ex.plan["attention"], "attention_reason": ex.plan["attention_reason"],
            "layer_loop": ex.plan["layer_loop"], "layer_loop_reason": ex.plan["layer_loop_reason"],
            "xla_gpu_flags": len(ex.plan["xla_gpu_flags"]["added"]),
            "plan": {k: v for k, v in ex.plan.items() if k in ("mode", "stages", "layers_per_stage", "microbatches",
                                                                "bubble_fraction", "host_memory_kind", "remat",
                                                                "remat_reason", "activation_bytes", "attention",
                                                                "host_update", "link_bytes_per_step")},
        }
        self.times: list[float] = []
        self.losses: list[float] = []

    def step(self, timed: bool = True) -> float:
        """One optimizer step, ending when its loss is on the host; returns (and with ``timed`` records) its time."""
        t0 = time.perf_counter()
        self.state, metrics = self.compiled(self.state, self.tokens, self.targets)
        self.losses.append(float(metrics["loss"]))
        dt = time.perf_counter() - t0
        if timed:
            self.times.append(dt)
        return dt

    def close(self) -> None:
        """Free the training state (the next run needs the memory)."""
        import jax

        jax.block_until_ready(self.state)
        self.state = self.compiled = self.tokens = self.targets = None

    def row(self, peak_flops: float) -> dict:
        step_time = statistics.median(self.times)
        tps = self.info["tokens_per_step"] / step_time
        flops_6n = self.cfg.flops_per_token_6n() * tps
        flops_alg = self.cfg.flops_per_token_algorithmic(self.info["seq_len"]) * tps
        memory = dict(self.memory, process_peak_rss=peak_rss_bytes(), **device_peak(self.device))
        return {
            **self.info, "compile_s": self.compile_s, "step_time_s": step_time, "step_times_s": list(self.times),
            "tokens_per_s": tps, "model_flops_6n": flops_6n, "model_flops_algorithmic": flops_alg,
            "mfu": flops_6n / peak_flops, "mfu_algorithmic": flops_alg / peak_flops,
            "losses": list(self.losses), "memory": memory,
        }


def device_peak(device) -> dict:
    """{"device_peak_bytes_in_use": the allocator's high-water mark on ``device`` since the process started} where the
    backend reports one (GPU, TPU; not CPU), else {}. Process-wide: it covers every run made in this process so far."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory stats
        stats = {}
    return {"device_peak_bytes_in_use": int(stats["peak_bytes_in_use"])} if "peak_bytes_in_use" in stats else {}


def measure_training(model: str, mode: str, mesh, *, batch_size: int, seq_len: int, steps: int, warmup: int = 1,
                     dtype: str = "float32", remat="auto", peak_flops: float, seed: int = 0) -> dict:
    """Train ``model`` in ``mode`` on ``mesh`` for warmup + steps steps and return the row (see module docstring)."""
    run = TrainingRun(model, mode, mesh, batch_size=batch_size, seq_len=seq_len, dtype=dtype, remat=remat, seed=seed,
                      total_steps=warmup + steps + 1)
    for i in range(warmup + steps):
        run.step(timed=i >= warmup)
    row = run.row(peak_flops)
    run.close()
    return row

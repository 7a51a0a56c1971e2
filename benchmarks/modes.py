"""Step time of every execution mode relative to data parallelism on one device, measured side by side in one run.

    python -m benchmarks.modes [--presets tiny small] [--devices 8] [--seq-len 128] [--batch 16] [--steps 5]

On the CPU the devices are emulated: all of them share the host's cores and "communication" is memory copies, so
these ratios measure the overhead each mode's program adds (pipeline bubble and ticks, per-layer transfers and
scans, collectives), not the speed-up real devices would give. The same script on a GPU/TPU host (``--platform``)
measures the real thing. All configurations of a preset are compiled first, then timed in interleaved rounds (one
step of each per round; medians), so a host load that drifts during the run affects them alike. Every configuration
also reports its first loss (all must agree: same weights, same batch) and XLA's memory analysis of the compiled step
(bytes per device; on CPU host-memory arguments count as device memory).

The last stdout line is one JSON object with every row.
"""

from __future__ import annotations

import argparse
import json
import time

# (label, mode, mesh axes); the first is the baseline the others are divided by.
CONFIGS = [
    ("data x1", "data", {"data": 1}, 1),
    ("data x8", "data", {"data": 8}, 8),
    ("data 2 x model 4", "data", {"data": 2, "model": 4}, 8),
    ("pipelined stage 8", "pipelined", {"stage": 8}, 8),
    ("pipelined data 2 x stage 4", "pipelined", {"data": 2, "stage": 4}, 8),
    ("streaming data 8", "streaming", {"data": 8}, 8),
    ("streaming data 2 x model 4", "streaming", {"data": 2, "model": 4}, 8),
]


class Config:
    """One (preset, mode, mesh) set up and compiled, ready to time step by step."""

    def __init__(self, preset: str, label: str, mode: str, axes: dict, n: int, args):
        import jax
        import numpy as np

        from model import gpt
        from model.config import get_config
        from runtime.execution import build_executor
        from runtime.execution.base import memory_figures
        from runtime.execution.optim import build_optimizer
        from runtime.platform import make_mesh

        cfg = get_config(preset)
        self.preset, self.label = preset, label
        self.ex = build_executor(mode, cfg, make_mesh(axes, jax.devices()[:n]), seq_len=args.seq_len)
        params = gpt.initial_params(cfg, 0)
        tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (args.batch, args.seq_len + 1), dtype=np.int32)
        self.tok, self.tgt = self.ex.put_batch(tokens[:, :-1]), self.ex.put_batch(tokens[:, 1:])
        opt = build_optimizer(cfg, total_steps=args.steps + 2, warmup_steps=0)
        self.state = self.ex.init_state(params, opt)
        t0 = time.perf_counter()
        self.step = self.ex.make_train_step(opt).lower(self.state, self.tok, self.tgt).compile()
        self.memory = memory_figures(self.step)
        self.first_loss = float(self.run())  # warm-up
        self.compile_s = time.perf_counter() - t0
        self.times: list[float] = []

    def run(self):
        self.state, metrics = self.step(self.state, self.tok, self.tgt)
        return metrics["loss"]

    def timed_step(self) -> None:
        import jax

        t0 = time.perf_counter()
        jax.block_until_ready(self.run())
        self.times.append(time.perf_counter() - t0)

    def row(self, args) -> dict:
        import statistics

        step_s = statistics.median(self.times)
        return {"preset": self.preset, "config": self.label, "mode": self.ex.mode, "mesh": self.ex.plan["mesh"],
                "step_s": step_s, "step_s_all": self.times, "tokens_per_s": args.batch * args.seq_len / step_s,
                "first_loss": self.first_loss, "compile_and_first_step_s": self.compile_s,
                "peak_estimate_bytes": self.memory["peak_estimate"], "temp_bytes": self.memory["temp_size"],
                "argument_bytes": self.memory["argument_size"], "microbatches": self.ex.plan.get("microbatches"),
                "bubble_fraction": self.ex.plan.get("bubble_fraction")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--platform", default="cpu")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration (interleaved rounds)")
    parser.add_argument("--only", nargs="*", default=None, help="config labels to run (default: all)")
    args = parser.parse_args(argv)

    from runtime.platform import build_mesh

    build_mesh(args.platform, args.devices, {})  # sets the emulated device count before JAX starts
    rows = []
    for preset in args.presets:
        configs = [Config(preset, label, mode, axes, n, args) for label, mode, axes, n in CONFIGS
                   if n <= args.devices and (not args.only or label in args.only or label == CONFIGS[0][0])]
        # Interleaved rounds, one step of each configuration per round, medians compared: a load that drifts
        # during the run (other processes on the host) then affects every configuration alike.
        for _ in range(args.steps):
            for c in configs:
                c.timed_step()
        base = configs[0].row(args)["step_s"]
        for c in configs:
            row = c.row(args)
            row["relative_to_data_x1"] = row["step_s"] / base
            rows.append(row)
            print(f"{preset:6s} {c.label:28s} step {row['step_s']:8.3f} s  x{row['relative_to_data_x1']:5.2f}  "
                  f"loss {row['first_loss']:.5f}  peak/device {row['peak_estimate_bytes'] / 2**20:8.1f} MiB",
                  flush=True)
        del configs
    result = {"seq_len": args.seq_len, "batch": args.batch, "steps": args.steps, "platform": args.platform,
              "devices": args.devices, "rows": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

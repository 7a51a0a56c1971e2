"""A few training steps of a tiny GPT, runnable as one process or as one of several processes forming one mesh.

tests/multidevice/test_multihost.py runs it as 2 processes x 4 CPU devices on 127.0.0.1 and compares the losses with one
process x 8 devices: the same mesh shape over the same number of devices must give the same numbers, whether or not
a process boundary cuts through it.

    python tests/multidevice/multihost_worker.py --process-id 0 --num-processes 2 --coordinator 127.0.0.1:PORT \
        --devices 8 --out losses.json
"""

from __future__ import annotations

import argparse
import json

# (mode, mesh axes): an 8-stage pipeline whose activations cross the process boundary between stages 3 and 4 (and
# back in the backward pass), and whose replicated embedding's gradient is all-reduced over all 8 devices, across
# both processes.
CASES = (("pipelined", {"stage": 8}),)
STEPS = 3


def tiny_config():
    from model.config import get_config

    return get_config("tiny").replace(n_layers=8, d_model=32, n_heads=4, d_head=8, d_ffn=128, vocab_size=256,
                                      max_seq_len=16)


def run_case(mode: str, axes: dict, mesh, steps: int = STEPS) -> list[float]:
    """Losses of ``steps`` AdamW steps on a fixed batch; every process builds the same weights and batch."""
    import functools

    import jax
    import numpy as np

    from model import gpt
    from runtime.execution import FAST_COMPILE, build_executor
    from runtime.execution.optim import build_optimizer

    cfg = tiny_config()
    ex = build_executor(mode, cfg, mesh, compiler_options=FAST_COMPILE)
    # jitted (one compile instead of one per eager op), fast-compiled: the check is about execution, not init
    init = jax.jit(functools.partial(gpt.init_params, cfg), compiler_options=FAST_COMPILE)
    params = jax.tree.map(np.asarray, init(jax.random.key(0)))
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, cfg.vocab_size, (16, 16), dtype=np.int32)
    targets = np.roll(tokens, -1, axis=1)
    opt = build_optimizer(cfg, total_steps=steps, lr=1e-2, warmup_steps=0)
    state = ex.init_state(params, opt)
    step = ex.make_train_step(opt)
    losses = []
    for _ in range(steps):
        state, metrics = step(state, ex.put_batch(tokens), ex.put_batch(targets))
        losses.append(float(np.asarray(metrics["loss"].addressable_data(0))))
    return losses


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--devices", type=int, default=8, help="global device count")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    from runtime.platform import build_mesh

    results = {}
    for mode, axes in CASES:
        mesh = build_mesh("cpu", args.devices, axes, coordinator=args.coordinator,
                          num_processes=args.num_processes, process_id=args.process_id)
        results[mode] = run_case(mode, axes, mesh)
    import jax

    results["process_count"] = jax.process_count()
    results["local_devices"] = len(jax.local_devices())
    text = json.dumps(results)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()

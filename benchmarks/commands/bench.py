"""`wse bench`: measured throughput, memory, prediction error, the PyTorch baseline, generation and planner speed.

Progress goes to stderr; the result (also written as bench.json, report.md and PNG plots in ``--out``) is the return
value, so ``--json`` prints it as the last stdout line. JAX is imported inside ``run`` only, after the emulated CPU
device count has been set.
"""

from __future__ import annotations

HELP = "benchmark training, generation and the planner on this machine; compare with PyTorch and the simulator"


def add_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (tiny and small presets, batch 8 x 128, 2 steps): under 3 minutes on 2 cores")
    parser.add_argument("--out", metavar="DIR", help="output folder (default bench-out/<timestamp>); written when the "
                                                     "bench is complete, never over an earlier result (see --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier bench result in --out")
    parser.add_argument("--scaling", action="store_true",
                        help="add the scaling study: simulated CS-2/CS-3 clusters and measured 1/2/4/8 CPU devices")
    parser.add_argument("--platform", default="auto", choices=("auto", "cpu", "gpu", "tpu"),
                        help="device platform (auto: the accelerator if there is one, else emulated CPU devices)")
    parser.add_argument("--devices", type=int, metavar="N",
                        help="devices in the mesh (default: one emulated device per CPU core, 2 to 8; all on an accelerator)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), help="compute dtype (default: float32 on CPU, bfloat16 elsewhere)")
    parser.add_argument("--models", metavar="LIST", help="comma-separated presets (default: tiny,small,111M; quick: tiny,small)")
    parser.add_argument("--modes", metavar="LIST", default="data,pipelined,streaming", help="comma-separated execution modes")
    parser.add_argument("--batch-size", type=int, metavar="SEQS", help="global sequences per step for every model")
    parser.add_argument("--seq-len", type=int, metavar="T", help="tokens per sequence for every model")
    parser.add_argument("--steps", type=int, metavar="N", help="timed steps per row (after one warm-up step)")
    parser.add_argument("--gen-model", metavar="LIST",
                        help="comma-separated presets for the generation benchmark (default: small,111M; with --quick: "
                             "small)")
    parser.add_argument("--remat", choices=("auto", "none", "dots", "full"), default="auto",
                        help="remat policy for the backward pass: auto (default, as `wse train`: the cheapest that fits "
                             "a device; each row records the plan's decision), none, dots (keep the weight matmuls' "
                             "outputs) or full (recompute whole blocks)")
    parser.add_argument("--attention", choices=("auto", "xla", "cudnn"), default="auto",
                        help="attention kernel: auto (default: cuDNN flash attention on NVIDIA GPUs in bf16/fp16, "
                             "else XLA), xla or cudnn")
    parser.add_argument("--sequential", action="store_true",
                        help="run each mode to completion in turn instead of interleaving their steps (less memory)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the PyTorch + transformers baselines")
    parser.add_argument("--no-generation", action="store_true", help="skip the generation benchmark")
    parser.add_argument("--no-training", action="store_true",
                        help="skip the training rows and their baseline (ceilings, generation and planner only)")
    parser.add_argument("--profile", metavar="MODEL:MODE",
                        help="trace one row with jax.profiler, e.g. tiny:data: after its timed steps, two more "
                             "(untimed) steps of it into OUT/profile (TensorBoard's profile plugin, or Perfetto)")


def _list(text: str | None, valid=None, what: str = "") -> list[str] | None:
    if not text:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if valid is not None:
        from runtime.errors import UserError

        for x in items:
            if x not in valid:
                raise UserError(f"unknown {what} '{x}' in --{what}s; give a comma-separated list of {', '.join(valid)}")
    return items


def _profile_row(text: str | None, models: list[str] | None, modes: list[str], quick: bool, out):
    """``--profile MODEL:MODE`` -> (model, mode, folder for the trace), checked against the rows this bench runs
    (UserError, one line, otherwise); None without the flag."""
    if not text:
        return None
    from benchmarks.sizes import FULL, QUICK
    from runtime.errors import UserError

    model, sep, mode = text.rpartition(":")
    rows = models or list((QUICK if quick else FULL).models)
    if not sep or model not in rows or mode not in modes:
        raise UserError(f"--profile {text} names no row of this bench; give MODEL:MODE with a model of "
                        f"{', '.join(rows)} and a mode of {', '.join(modes)}, e.g. --profile {rows[0]}:{modes[0]}")
    return model, mode, out / "profile"


def run(args) -> dict:
    import sys
    from datetime import datetime
    from pathlib import Path

    from model.config import get_config
    from runtime.errors import UserError

    models, gen_models = _list(args.models), _list(args.gen_model)
    for m in (models or []) + (gen_models or []):
        get_config(m)  # unknown preset: one-line error before JAX starts
    modes = _list(args.modes, ("data", "pipelined", "streaming"), "mode")
    for name in ("devices", "batch_size", "seq_len", "steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    out = Path(args.out or f"bench-out/{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    _check_out(out, args.overwrite)  # before minutes of benchmarking
    from benchmarks.report import write
    from benchmarks.suite import run_bench
    from runtime.platform.storage import install, writing

    import time

    start = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {line}", file=sys.stderr, flush=True)

    tmp = _stage(out)  # results, plots and the profile are written here, then renamed into place
    try:
        profile = _profile_row(args.profile, models, modes, args.quick, tmp.path)
        result = run_bench(quick=args.quick, devices=args.devices, platform=args.platform, dtype=args.dtype,
                           remat=args.remat, attention=args.attention, models=models, modes=tuple(modes),
                           batch_size=args.batch_size, seq_len=args.seq_len, steps=args.steps, scaling=args.scaling,
                           baseline=not args.no_baseline, generation=not args.no_generation, gen_models=gen_models,
                           training=not args.no_training, interleave=not args.sequential, profile=profile, log=log)
        with writing(out, what="writing the bench results", fix="free space or choose another --out",
                     readonly_fix="choose a writable --out"):
            result = _relocate(result, str(tmp.path), str(out.absolute()))
            result["files"] = write(result, tmp.path, final=out)
            install(tmp.path, out, overwrite=args.overwrite)
    finally:
        tmp.__exit__(None, None, None)
    return result


def _check_out(out, overwrite: bool) -> None:
    """--out must be new, empty, or (with --overwrite) an earlier bench result; no other process may be writing it."""
    from runtime.errors import UserError
    from runtime.platform.storage import live_writer

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "bench.json").is_file():
            raise UserError(f"--out {out} holds other files; give a new or empty folder")
        if not overwrite:
            raise UserError(f"--out {out} holds an earlier bench result; pass --overwrite to replace it or choose "
                            "another folder")
    if live_writer(out):
        raise UserError(f"--out {out} is being written by another `wse bench`; wait for it or choose another folder")


def _stage(out):
    """A held hidden sibling of ``out`` to write into (runtime.platform.storage.Temporary), entered."""
    from runtime.platform.storage import Temporary, clean_stale, writing

    with writing(out, what="writing the bench results", readonly_fix="choose a writable --out"):
        out.absolute().parent.mkdir(parents=True, exist_ok=True)
        clean_stale(out)
        return Temporary(out, directory=True).__enter__()


def _relocate(tree, old: str, new: str):
    """``tree`` with every string path under ``old`` moved under ``new``."""
    if isinstance(tree, dict):
        return {k: _relocate(v, old, new) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_relocate(v, old, new) for v in tree]
    return new + tree[len(old):] if isinstance(tree, str) and tree.startswith(old) else tree


def render(result: dict, console) -> None:
    from benchmarks.report import render as _render

    _render(result, console)

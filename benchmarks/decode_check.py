"""One decode measurement per process, for comparing builds of the decode step that differ in process-wide settings
(``XLA_FLAGS``: command buffers) as well as in its own options (layer loop, head layout): benchmarks/gpu_check.sh
runs it once per variant.

``python -m benchmarks.decode_check --model 1.3B --dtype bfloat16 --layer-loop scan`` measures the device's memory
bandwidth (the bench's read and copy ceilings, quick sizes, and reads at the model's step size between the calls:
benchmarks/generation.py ``memory_bandwidth``), then benchmarks/generation.py's decode rows without the
transformers baseline (batch 1 and 8 by default: step time, roofline fraction, busy/overhead split, compile
seconds), and prints one JSON object as its last stdout line, with the variant's settings, ``XLA_FLAGS`` and the JAX
version. Compile seconds come from the persistent compilation cache when ``JAX_COMPILATION_CACHE_DIR`` names one that
already holds the programs (the check's second run of a variant: the cost of a later start).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="1.3B", help="preset (default 1.3B)")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--layer-loop", default="auto", choices=("auto", "unroll", "scan"))
    parser.add_argument("--transpose-head", default="auto", choices=("auto", "yes", "no"),
                        help="tied head stored [d, V] (auto: on CPU only)")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per batch after the compiling one")
    parser.add_argument("--no-profile", action="store_true", help="skip the traced call (busy/overhead split)")
    parser.add_argument("--label", default="", help="a name for this variant in the output")
    args = parser.parse_args(argv)

    import jax

    from benchmarks.ceilings import SIZES, copy_bandwidth, describe_device, read_bandwidth
    from benchmarks.generation import apply_roofline, measure_generation, memory_bandwidth
    from runtime.platform.compile_cache import use_compile_cache

    use_compile_cache()
    device = jax.devices()[0]
    nbytes = SIZES.get(device.platform, SIZES["gpu"])["quick"][1]
    ceilings = {"copy_bytes_per_s": copy_bandwidth(nbytes, device, 5),
                "read_bytes_per_s": read_bandwidth(nbytes, device, 5)}
    head = {"auto": None, "yes": True, "no": False}[args.transpose_head]
    out = {"label": args.label, "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
           "compile_cache": os.environ.get("JAX_COMPILATION_CACHE_DIR"), "ceilings": ceilings}
    try:
        out.update(measure_generation(args.model, prompt_len=args.prompt, new_tokens=args.new_tokens,
                                      batches=tuple(int(b) for b in args.batches.split(",")), repeats=args.repeats,
                                      with_baseline=False, dtype=args.dtype, profile=not args.no_profile,
                                      sample_bandwidth=True, layer_loop=args.layer_loop,
                                      transpose_head=head))
        out["bandwidth_bytes_per_s"] = memory_bandwidth(ceilings, out["bandwidth_samples"])
        apply_roofline(out["rows"], out["bandwidth_bytes_per_s"], ceilings["copy_bytes_per_s"])
    except Exception as err:  # noqa: BLE001 - the check goes on to its next variant; this one says why it failed
        from model.errors import describe_error

        out["error"] = describe_error(err)
    out["device"] = describe_device(device)
    print(json.dumps(out, default=float))
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main())

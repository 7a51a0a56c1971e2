"""The layer loop of a run (``execution.layer_loop``): whether the stacked blocks run in one ``lax.scan`` or unrolled,
layer by layer (model.gpt.run_blocks), and why. Pure Python: make_placement decides it where JAX must not be imported.

Why it matters on a GPU. A scanned stack compiles one block body and runs it as an XLA while loop: on XLA:GPU the
loop's condition goes back to the host every iteration, the scheduler cannot overlap one layer's tail with the next
layer's head, and the body's parameters are dynamic slices of the stacked arrays. Unrolled, the program is one
straight line that XLA fuses and schedules across layer boundaries, at the cost of compiling L copies of the block.
MaxText sets ``scan_layers: false`` in every GPU config (e.g. MaxText/configs/a3/llama_2_7b/1vm.sh) and keeps the
scan on TPU, where XLA:TPU runs loops on the device. On CPU the scan is kept: compile time dominates the tests and
the small runs a CPU trains, and XLA:CPU copies a layer's weights out of a stacked array scanned or not
(model.gpt.forward_cached), so unrolling buys nothing there.
"""

from __future__ import annotations

# execution.layer_loop's values (model.gpt.LAYER_LOOPS plus "auto"; spelled out: JAX must not be imported here).
LAYER_LOOP_CHOICES = ("auto", "scan", "unroll")
# auto unrolls on a GPU up to this many layers. Compile time grows linearly with the unrolled depth: unrolling
# 1.3B's 24-layer decode loop took its compile from 5.6 s to 33.8 s on an H200 (issue 29), so twice that depth is
# about a minute of compiling per program, paid once per shape with the persistent cache. 48 covers every
# Cerebras-GPT preset (13B: 40 layers) and Llama-2 7B/13B (32/40); deeper stacks keep the scan.
# Source: this project's choice, from issue 29's measurement; not a published figure.
UNROLL_MAX_LAYERS = 48


def resolve_layer_loop(requested: str, *, n_layers: int, platform: str, mode: str) -> tuple[str, str]:
    """(loop, reason): the layer loop the run's mode executes for ``requested`` (LAYER_LOOP_CHOICES; a value outside
    them raises ValueError, which the schema and make_placement turn into a one-line error).

    ``scan``/``unroll`` are honoured in the data and pipelined modes (the pipeline unrolls the slot loop inside each
    stage; its tick loop is the schedule, not the layer loop). Weight streaming always scans: its loop prefetches
    layer i + 1 while layer i runs, and unrolled, XLA's scheduler may start every layer's host-to-device copy early
    and hold all the weights on the device, which is what the mode exists to avoid. ``auto``: unroll on a GPU up to
    UNROLL_MAX_LAYERS layers, scan otherwise (see the module docstring)."""
    if requested not in LAYER_LOOP_CHOICES:
        raise ValueError(f"unknown execution.layer_loop '{requested}'; use one of {', '.join(LAYER_LOOP_CHOICES)}")
    if mode == "streaming":
        return "scan", ("weight streaming fetches one layer at a time inside its scan; unrolled, the copies of "
                        "every layer could be scheduled at once")
    if requested != "auto":
        return requested, "asked for"
    if platform != "gpu":
        return "scan", f"{platform}: one compiled block body (XLA:{platform.upper()} gains nothing from unrolling)"
    if n_layers > UNROLL_MAX_LAYERS:
        return "scan", f"{n_layers} layers > {UNROLL_MAX_LAYERS}: an unrolled program would take minutes to compile"
    return "unroll", (f"GPU with {n_layers} layers <= {UNROLL_MAX_LAYERS}: no host-driven loop, XLA schedules "
                      "across layers (MaxText's scan_layers: false)")

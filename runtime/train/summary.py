"""What a run says about itself: before its first step, a summary of what it is about to do (model, parameters, data,
tokens, steps, epochs, mesh, mode, where it writes); at the end, each setting's value beside where it came from.

A fine-tuning run counts its epochs as passes over its packed example windows, a pre-training run over the windows
of its training split (runtime.data.loader): ``epochs = steps x batch size / windows``.
"""

from __future__ import annotations

# The train settings the text output shows with their value and source (`--json`: every setting, ``config`` and
# ``config_sources``).
SHOWN_SETTINGS = ("batch_size", "seq_len", "lr", "warmup_steps", "decay_steps", "steps")
_LOOP_WORDS = {"scan": "scanned", "unroll": "unrolled"}  # the plan's layer_loop in the summary's words


def data_facts(run_config, train_loader, val_loader) -> dict:
    """What the run trains on, from its loaders: ``source`` (a dataset directory, ``builtin``, or a fine-tuning
    examples file), ``windows`` (training windows of seq_len + 1 tokens), ``tokens`` (training tokens), and the
    validation windows (0 without a validation split)."""
    windows = train_loader.windows
    tokens = len(windows.dataset) if hasattr(windows, "dataset") else int(windows.packed.tokens.shape[0] * windows.seq_len)
    return {"source": run_config.data, "kind": windows.kind, "windows": train_loader.n_windows, "tokens": tokens,
            "val_windows": val_loader.n_windows if val_loader is not None else 0}


def epochs(steps: int, batch_size: int, windows: int) -> float:
    """Passes over the training windows that ``steps`` steps of ``batch_size`` sequences make."""
    return steps * batch_size / max(windows, 1)


def start_lines(ctx) -> list[str]:
    """The summary a run prints before its first step (``ctx``: runtime.train.observers.RunContext)."""
    t, gpt, data = ctx.run_config.train, ctx.gpt, ctx.data
    devices = list(ctx.executor.mesh.devices.flat)
    mesh = " x ".join(f"{k} {v}" for k, v in zip(ctx.executor.mesh.axis_names, ctx.executor.mesh.devices.shape))
    fresh = f"{t.steps} steps from the given weights" if ctx.from_weights else f"{t.steps} steps from scratch"
    verb = f"resuming at step {ctx.start} of {t.steps}" if ctx.start else fresh
    what = "example windows" if data.get("kind") == "packed-examples" else "training windows"
    lines = [f"training {gpt.name} ({gpt.parameters:,} parameters): {verb}, run dir {ctx.run_dir}"]
    if data:
        source = "the built-in python-docs corpus" if data["source"] == "builtin" else data["source"]
        lines.append(f"  data: {source}: {data['tokens']:,} training tokens in {data['windows']:,} {what} of "
                     f"{t.seq_len} + 1 tokens; {data['val_windows']:,} validation windows")
        lines.append(f"  {t.steps:,} steps x {t.batch_size} sequences x {t.seq_len} tokens = "
                     f"{t.steps * t.batch_size * t.seq_len:,} tokens: "
                     f"{epochs(t.steps, t.batch_size, data['windows']):.2f} epochs (passes over the {what})")
    lines.append(f"  mesh {mesh} on {len(devices)} {devices[0].platform.upper()} device{'s' if len(devices) > 1 else ''}, "
                 f"{ctx.executor.mode} mode, remat {ctx.executor.plan.get('remat') or 'none'}, {t.dtype}, "
                 f"layers {_LOOP_WORDS[ctx.executor.plan.get('layer_loop', 'scan')]} "
                 f"({ctx.executor.plan.get('layer_loop_reason', 'not planned')})")
    written = ["metrics.jsonl", "loss.png", "config.yaml"]
    written += [name + "/" for name, on in (("tensorboard", ctx.run_config.observe.tensorboard),
                                            ("wandb", ctx.run_config.observe.wandb != "off")) if on]
    lines.append(f"  writes {ctx.run_dir}: checkpoints/ every {t.checkpoint_every} steps and at the end (the last "
                 f"{t.keep} kept), {', '.join(written)}; validation every {t.eval_every} steps")
    return lines


def settings_line(config: dict, sources: dict, keys=SHOWN_SETTINGS) -> str:
    """``settings: batch_size 8 (given), lr 0.002 (preset tiny), ...``: each train setting's value and where it
    came from (``config``: dotted keys to values; ``sources``: dotted keys to layers, runtime.config.recipes)."""
    shown = []
    for key in keys:
        dotted = f"train.{key}"
        if dotted in config:
            value = config[dotted]
            value = f"{value:g}" if isinstance(value, float) else value
            shown.append(f"{key} {value} ({sources.get(dotted, 'default')})")
    return "settings: " + ", ".join(shown)

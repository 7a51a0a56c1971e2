"""`wse train [--config FILE] [KEY=VALUE ...]`: train a Cerebras-GPT model on a (possibly emulated) device mesh.

The run config (runtime.config) is parsed and checked before JAX is imported, so that a typo costs no start-up and
the emulated CPU device count (``mesh.devices``) can still be set. Starting again in a run dir that holds a
checkpoint resumes from it exactly.
"""

from __future__ import annotations

HELP = "train a model on a (possibly emulated) device mesh; resumes from the run dir's latest checkpoint"


def add_arguments(parser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML run config (sections model, data, mesh, execution, train)")
    parser.add_argument("--model", metavar="PRESET|FILE", help="the model: a preset or a model file (same as model=...)")
    parser.add_argument("--data", metavar="DIR|builtin",
                        help="a directory written by `wse data`, or builtin (same as data=...; default builtin)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. model=tiny data=builtin mesh.devices=8 mesh.axes.stage=4 "
                             "execution.mode=pipelined train.steps=200 train.run_dir=runs/demo")


def overrides(args) -> list[str]:
    """The KEY=VALUE overrides with --model and --data as the ``model=``/``data=`` overrides they stand for; both
    forms of one setting at once is refused (UserError)."""
    from runtime.errors import UserError

    items = list(args.overrides)
    for option in ("model", "data"):
        value = getattr(args, option, None)
        if value is None:
            continue
        if any(item.partition("=")[0].strip() == option for item in items):
            raise UserError(f"--{option} and {option}= both set the {option}; give one of them")
        items.insert(0, f"{option}={value}")
    return items


def run(args) -> dict:
    from runtime.config import load_config
    from runtime.errors import Diverged

    config = load_config(args.config, overrides(args))
    resolved = config.resolve()  # pure Python: errors before JAX starts
    if resolved.data != "builtin":
        from runtime.data import TokenDataset

        TokenDataset(resolved.data, "train")  # a directory that is not a `wse data` dataset is refused now too
    from runtime.train import Trainer

    try:
        # the unresolved config: when the run dir holds a checkpoint, settings left unset continue with its values
        return Trainer(config).run()  # progress bar on stderr when it is a terminal
    except Diverged as err:
        raise with_command(err, ["train", *(["--config", args.config] if args.config else [])], args.overrides) from None


def with_command(err, command: list[str], overrides: list[str]):
    """A Diverged run's line ending with the command that continues it (runtime.train.divergence)."""
    from runtime.errors import Diverged
    from runtime.train.divergence import continue_command

    if err.lr is None:
        return err
    return Diverged(f"{err}: {continue_command(err, command, overrides)}", step=err.step, checkpoint=err.checkpoint,
                    lr=err.lr, detail=err.detail)


def render(result: dict, console) -> None:
    from pathlib import Path

    mesh = " x ".join(f"{k} {v}" for k, v in result["mesh"].items())
    ran = len(result["losses"])
    what = (f"steps {result['start_step'] + 1}..{result['start_step'] + ran} of {result['steps']}" if ran else
            f"nothing to do: the run is at step {result['start_step']} of {result['steps']} (raise train.steps to go on)")
    from runtime.train.summary import settings_line

    lines = [f"trained [bold]{result['model']}[/bold] ({result['parameters']:,} parameters) in {result['mode']} mode "
             f"on mesh {mesh}: {what}, {result['epochs']:.2f} epochs of its data"]
    if result["start_step"] and ran:
        changed = "".join(f", {k} {old:g} -> {new:g}" if isinstance(new, float) else f", {k} {old} -> {new}"
                          for k, (old, new) in result.get("resume_changes", {}).items())
        lines.append(f"  resumed from the checkpoint at step {result['start_step']}{changed}")
    if result.get("config_sources"):
        lines.append("  " + settings_line(result["config"], result["config_sources"])
                     + " (`--json` lists every setting's value and source)")
    if result["final_loss"] is not None:
        lines.append(f"  final training loss {result['final_loss']:.4f}")
    if result["val_loss"] is not None:
        lines.append(f"  validation loss {result['val_loss']:.4f}, perplexity {result['val_perplexity']:.2f}, over "
                     f"{result['val_tokens']:,} tokens: {validation_coverage(result)}")
    else:
        lines.append("  no validation: train.eval_batches=0, or the data has no validation split of one window")
    if result["tokens_per_s"]:
        lines.append(f"  {result['tokens_per_s']:,.0f} tokens/s, MFU {100 * result['mfu']:.2f}% "
                     f"(6N FLOPs vs {result['mfu_peak_source']})")
    written = [name for name in ("metrics.jsonl", "loss.png", "config.yaml", "tensorboard", "wandb")
               if (Path(result["run_dir"]) / name).exists()]
    lines.append(f"  run dir {result['run_dir']}: checkpoints/ (latest step {result['checkpoint_step']}), "
                 + ", ".join(name if "." in name else name + "/" for name in written))
    for line in lines:
        console.print(line, highlight=False)


def validation_coverage(result: dict) -> str:
    """How much of the validation split a result's validation loss covers, in words."""
    if result["val_coverage"] >= 1:
        return "the whole validation split"
    covering = round(result["config"]["train.eval_batches"] / result["val_coverage"])
    return (f"the first {result['config']['train.eval_batches']} of {covering} batches of the validation split "
            f"(train.eval_batches={covering} takes it all)")

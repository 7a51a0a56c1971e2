"""`wse finetune (--from CKPT_DIR | --hf DIR) --data FILE.jsonl|builtin [KEY=VALUE ...]`: fine-tune a model.

JSONL lines are ``{"prompt", "completion"}`` (loss on the completion only) or ``{"text"}``; ``builtin`` is the task
set derived from the python-docs corpus. Writes a new run dir (default ``<source>-ft``) with the same layout as
`wse train`, and resumes there if it already holds this fine-tuning run. Defaults: runtime.config.recipes.finetune_recipe.
"""

from __future__ import annotations

HELP = "fine-tune a checkpoint or HuggingFace model on prompt/completion or text JSONL (writes a new run dir)"


def add_arguments(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="source", metavar="CKPT_DIR",
                     help="run or checkpoint directory written by `wse train`, `wse convert` or `wse finetune`")
    src.add_argument("--hf", metavar="DIR", help="local HuggingFace directory (config.json + model.safetensors) of "
                     "GPT-2, Llama, Mistral, Qwen2, Qwen3 or GPT-J; its tokenizer.json is used and kept in the run dir")
    parser.add_argument("--data", required=True, metavar="FILE.jsonl|builtin",
                        help='JSONL of {"prompt", "completion"} or {"text"} per line, or "builtin" (the python-docs task set)')
    parser.add_argument("--val", metavar="FILE.jsonl",
                        help="held-out examples for validation (default: every 10th example of --data, by hash, "
                             "when it has 20 or more; the built-in set has its own split)")
    parser.add_argument("--tokenizer", metavar="PATH", help="a tokenizer.json (or a directory holding one); default: the "
                        "model's own (an --hf directory's, or the one kept beside a --from checkpoint), else GPT-2 BPE")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="with --hf: allow reading a pickled pytorch_model.bin (only for files you trust)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="run config overrides, e.g. train.steps=50 train.lr=1e-4 train.run_dir=runs/my-ft "
                             "mesh.devices=8 execution.mode=data")


def run(args) -> dict:
    from runtime.commands.shared import quiet_libraries

    quiet_libraries()
    from runtime.commands.train import with_command
    from runtime.errors import Diverged
    from runtime.train.finetune import finetune

    try:
        return finetune(args.source, args.data, args.overrides, hf=args.hf, val=args.val, tokenizer=args.tokenizer,
                        allow_pickle=args.allow_pickle)
    except Diverged as err:
        command = ["finetune", *(["--from", args.source] if args.source else ["--hf", args.hf]), "--data", args.data]
        for flag, value in (("--val", args.val), ("--tokenizer", args.tokenizer)):
            command += [flag, value] if value else []
        raise with_command(err, command + (["--allow-pickle"] if args.allow_pickle else []), args.overrides) from None


def render(result: dict, console) -> None:
    from runtime.commands.train import render as render_train

    ex = result["train_examples"]
    extra = "".join(f", {ex[k]} {k}" for k in ("truncated", "dropped") if ex[k])
    console.print(f"fine-tuning [bold]{result['source']}[/bold] on {result['data']}: {ex['examples']} examples in "
                  f"{ex['windows']} windows ({ex['trained_tokens']:,} trained tokens, {ex['masked_tokens']:,} prompt "
                  f"tokens as context only{extra})", highlight=False)
    if result["defaults_applied"]:
        console.print("  fine-tuning defaults: " + ", ".join(f"train.{k}={v:.3g}" if isinstance(v, float) else f"train.{k}={v}"
                                                            for k, v in result["defaults_applied"].items()), highlight=False)
    render_train(result, console)

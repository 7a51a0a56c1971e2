"""`wse convert`: HuggingFace model directory <-> this project's Orbax checkpoint (mapping: model/hf.py), for GPT-2
(Cerebras-GPT), Llama, Mistral, Qwen2, Qwen3 and GPT-J. A model's own tokenizer travels with it: --from-hf keeps the
directory's tokenizer.json beside the checkpoint, --to-hf writes it into the export."""

from __future__ import annotations

HELP = ("convert a HuggingFace directory (GPT-2, Llama, Mistral, Qwen2, Qwen3, GPT-J) to a checkpoint (--from-hf) "
        "or back (--to-hf)")


def add_arguments(parser) -> None:
    way = parser.add_mutually_exclusive_group(required=True)
    way.add_argument("--from-hf", metavar="DIR",
                     help="HuggingFace directory (config.json + model.safetensors or sharded with its index) to import")
    way.add_argument("--to-hf", metavar="CKPT_DIR", help="checkpoint or run directory to export for transformers")
    parser.add_argument("--out", required=True, metavar="DIR", help="new (empty or absent) output directory")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="with --from-hf: allow reading a pickled pytorch_model.bin (only for files you trust)")
    parser.add_argument("--max-shard-size", default="5GB", metavar="SIZE",
                        help="with --to-hf: largest weights file (default 5GB, as transformers; e.g. 500MB, 2GiB); "
                             "above it the weights are sharded with model.safetensors.index.json")
    parser.add_argument("--tokenizer", metavar="PATH",
                        help="with --to-hf: the tokenizer.json the model was trained with (default: the one kept "
                             "beside the checkpoint, else GPT-2's BPE)")
    parser.add_argument("--architecture", metavar="NAME",
                        help="with --to-hf: the transformers class to export as: gpt2, gptj, llama, mistral, qwen2, "
                             "qwen3 (or its class name, e.g. MistralForCausalLM); default: the one the model's fields "
                             "describe (a Mistral-shaped model exports as Llama unless asked)")


def architecture_name(name: str | None) -> str | None:
    """The transformers class ``--architecture`` names (a model_type such as ``mistral``, or the class name itself,
    any case); None when not given. UserError naming the choices otherwise."""
    from model.hf_configs import EXPORTS
    from runtime.errors import UserError

    if name is None:
        return None
    by_name = {**{k.lower(): k for k in EXPORTS}, **{v: k for k, v in EXPORTS.items()}}
    if name.strip().lower() not in by_name:
        raise UserError(f"unknown --architecture '{name}'; choose one of {', '.join(EXPORTS.values())} "
                        f"(or a class name: {', '.join(EXPORTS)})")
    return by_name[name.strip().lower()]


def run(args) -> dict:
    from runtime.commands.shared import check_output_dir, quiet_libraries
    from runtime.errors import UserError

    # everything that needs no JAX first: a refusal returns in about a second
    if args.architecture is not None and not args.to_hf:
        raise UserError("--architecture chooses the class of an export; use it with --to-hf")
    architecture = architecture_name(args.architecture)
    check_output_dir(args.out)
    if args.from_hf:
        from model.hf_configs import read_hf_config

        read_hf_config(args.from_hf)
    else:
        from model.hf_files import parse_size
        from runtime.checkpoint import find_checkpoint

        parse_size(args.max_shard_size)
        find_checkpoint(args.to_hf)
    quiet_libraries()
    written = {}
    if args.from_hf:
        from model.hf import load_hf
        from model.hf_files import keep_tokenizer
        from runtime.checkpoint import save_model

        cfg, params = load_hf(args.from_hf, allow_pickle=args.allow_pickle)
        save_model(args.out, cfg, params)
        written = {"tokenizer_files": keep_tokenizer(args.from_hf, args.out, cfg.max_seq_len)}
        source, kind = args.from_hf, "hf->checkpoint"
    else:
        from model.hf import save_hf
        from model.hf_files import parse_size
        from model.tokenizer import model_tokenizer_dir
        from runtime.checkpoint import load_model

        parse_size(args.max_shard_size)  # a bad size is refused before the checkpoint is read
        cfg, params = load_model(args.to_hf)
        tokenizer = args.tokenizer or model_tokenizer_dir(args.to_hf)
        written = export(args.out, lambda tmp: save_hf(tmp, cfg, params, max_shard_size=args.max_shard_size,
                                                         tokenizer=tokenizer, architecture=architecture,
                                                         staged=False), 4 * cfg.parameters)
        source, kind = args.to_hf, "checkpoint->hf"
    return {"conversion": kind, "source": str(source), "out": str(args.out), "name": cfg.name,
            "parameters": cfg.parameters, "mup": cfg.mup, "vocab_size": cfg.vocab_size,
            "untied_mup_export": bool(cfg.mup and args.to_hf), **written}


def export(out: str, write, need: int) -> dict:
    """``write(folder)`` into a held hidden sibling of ``out``, then renamed into place (never over a finished
    result); a full or read-only destination is one line (runtime.platform.storage)."""
    from runtime.platform.storage import write_new_directory

    return write_new_directory(out, write, need, what="writing the export")


def render(result: dict, console) -> None:
    console.print(f"{result['conversion']}: {result['source']} -> {result['out']} ({result['name']}, "
                  f"{result['parameters']:,} parameters)", highlight=False)
    if result.get("tokenizer_files"):
        console.print(f"  kept the model's tokenizer beside the checkpoint: {', '.join(result['tokenizer_files'])}",
                      highlight=False)
    if "files" in result:
        console.print(f"  wrote {', '.join(result['files'])} ({result['architecture']})", highlight=False)
        if result["tokenizer"] is None:
            console.print(f"[yellow]no tokenizer files: the model's {result['vocab_size']}-id vocabulary is smaller "
                          "than GPT-2's 50257; pass --tokenizer with the tokenizer.json it was trained with[/yellow]")
    if result["untied_mup_export"]:
        console.print("[yellow]muP multipliers were folded into an untied GPT-2 export; keep the checkpoint to "
                      "re-import[/yellow]")

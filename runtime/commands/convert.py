"""`wse convert`: HuggingFace GPT-2 directory <-> this project's Orbax checkpoint (mapping: model/hf.py)."""

from __future__ import annotations

HELP = "convert a HuggingFace GPT-2 directory to a checkpoint (--from-hf) or back (--to-hf)"


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
                        help="with --to-hf: the tokenizer.json the model was trained with (default GPT-2's BPE)")


def run(args) -> dict:
    from runtime.commands.shared import check_output_dir, quiet_libraries

    # everything that needs no JAX first: a refusal returns in about a second
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
        from runtime.checkpoint import save_model

        cfg, params = load_hf(args.from_hf, allow_pickle=args.allow_pickle)
        save_model(args.out, cfg, params)
        source, kind = args.from_hf, "hf->checkpoint"
    else:
        from model.hf import save_hf
        from model.hf_files import parse_size
        from runtime.checkpoint import load_model

        parse_size(args.max_shard_size)  # a bad size is refused before the checkpoint is read
        cfg, params = load_model(args.to_hf)
        written = save_hf(args.out, cfg, params, max_shard_size=args.max_shard_size, tokenizer=args.tokenizer)
        source, kind = args.to_hf, "checkpoint->hf"
    return {"conversion": kind, "source": str(source), "out": str(args.out), "name": cfg.name,
            "parameters": cfg.parameters, "mup": cfg.mup, "vocab_size": cfg.vocab_size,
            "untied_mup_export": bool(cfg.mup and args.to_hf), **written}


def render(result: dict, console) -> None:
    console.print(f"{result['conversion']}: {result['source']} -> {result['out']} ({result['name']}, "
                  f"{result['parameters']:,} parameters)", highlight=False)
    if "files" in result:
        console.print(f"  wrote {', '.join(result['files'])}", highlight=False)
        if result["tokenizer"] is None:
            console.print(f"[yellow]no tokenizer files: the model's {result['vocab_size']}-id vocabulary is smaller "
                          "than GPT-2's 50257; pass --tokenizer with the tokenizer.json it was trained with[/yellow]")
    if result["untied_mup_export"]:
        console.print("[yellow]muP multipliers were folded into an untied GPT-2 export; keep the checkpoint to "
                      "re-import[/yellow]")

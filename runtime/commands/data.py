"""`wse data`: tokenise text files, directories, JSONL or the built-in corpus into a token dataset (see runtime.data)."""

from __future__ import annotations

HELP = ("tokenise text and source files, directories, JSONL, Parquet/Arrow, HF save_to_disk dirs or the built-in "
        "corpus into token shards (uint16, or uint32 for vocabularies above 65,535 ids)")


def add_arguments(parser) -> None:
    # runtime.data (NumPy) is imported only in run(), so `wse --help` stays fast; defaults live in build_dataset.
    from runtime.data.corpus import BUILTIN_CORPORA
    from runtime.data.inputs import kinds_help

    parser.add_argument("inputs", nargs="*", metavar="INPUT", help=kinds_help())
    parser.add_argument("--text-column", default="text", metavar="NAME",
                        help="the JSONL field / Parquet, Arrow or HF datasets column holding the documents (default text)")
    parser.add_argument("--out", required=True, help="dataset directory to create (refused if it holds other data; see --overwrite)")
    parser.add_argument("--builtin", choices=BUILTIN_CORPORA, help="add a built-in corpus (python-docs: CPython's help topics and stdlib docstrings)")
    parser.add_argument("--val-fraction", type=float,
                        help="fraction of documents held out for validation (default 0.05; at least one document); "
                             "one document (a single text file) is split by size instead: the last part of it, that "
                             "fraction of its characters, validates")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/validation split (default 0)")
    parser.add_argument("--tokenizer", help="a HuggingFace tokenizer.json instead of GPT-2: the file, or a model "
                        "directory holding it (its special tokens from the files beside it); a vocabulary above 65,535 "
                        "ids gets uint32 shards")
    parser.add_argument("--overwrite", action="store_true", help="replace a different dataset already in --out")
    parser.add_argument("--threads", type=int, help="tokeniser threads (default: all cores)")
    parser.add_argument("--shard-tokens", type=int, help="tokens per shard file (default 2^27, 256 MiB)")


def run(args) -> dict:
    import sys

    from runtime.data import build_dataset

    optional = {k: v for k, v in (("val_fraction", args.val_fraction), ("shard_tokens", args.shard_tokens)) if v is not None}
    result = build_dataset(args.inputs, args.out, builtin=args.builtin, seed=args.seed, tokenizer=args.tokenizer,
                           overwrite=args.overwrite, num_threads=args.threads, text_column=args.text_column,
                           progress=not args.json and sys.stderr.isatty(), **optional)
    for warning in result["warnings"]:  # diagnostics on stderr, the result on stdout
        print(f"warning: {warning}", file=sys.stderr)
    return result


def render(result: dict, console) -> None:
    verb = "already up to date" if result["reused"] else f"written in {result['seconds']:.1f} s (tokenised at {result['tokens_per_s'] / 1e6:.2f}M tokens/s)"
    lines = [f"dataset [bold]{result['out']}[/bold] ({result['tokenizer']}) {verb}",
             f"  train: {result['train_tokens']:,} tokens in {_documents(result['train_documents'])}",
             f"  val:   {result['val_tokens']:,} tokens in {_documents(result['val_documents'])}"]
    lines += [f"  note: {note}" for note in result["notes"]]
    for line in lines:
        console.print(line, highlight=False)


def _documents(n: int) -> str:
    return f"{n:,} document" + ("" if n == 1 else "s")

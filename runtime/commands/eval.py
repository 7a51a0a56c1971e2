"""`wse eval`: mean next-token cross-entropy and perplexity of a model on a text file (definition: runtime/train/evaluate.py)."""

from __future__ import annotations

HELP = "loss and perplexity of a checkpoint or HuggingFace model on a text file"


def add_arguments(parser) -> None:
    from runtime.commands.shared import add_model_source

    add_model_source(parser, presets=False)
    parser.add_argument("--text", required=True, metavar="FILE", help="UTF-8 text file to score")
    parser.add_argument("--seq-len", type=int, metavar="N", help="window length in tokens (default: the model context)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="B", help="windows per forward pass")


def run(args) -> dict:
    from pathlib import Path

    from runtime.commands.shared import (check_model_source, compute_dtype, load_model_from_args, load_tokenizer,
                                         start_ids)
    from runtime.errors import UserError
    from runtime.train.evaluate import check_request, evaluate_tokens

    path = Path(args.text)
    if not path.is_file():
        raise UserError(f"text file '{path}' does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"text file '{path}' is not UTF-8 ({err.reason} at byte {err.start})") from None
    if not text:
        raise UserError(f"text file '{path}' is empty; give a file with at least two tokens of text")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    tok = load_tokenizer(args)
    tokens = start_ids(tok) + tok.encode(text)
    known = check_model_source(args)  # everything that needs no JAX first: a refusal returns in about a second
    if known is not None:
        load_tokenizer(args, known)  # the tokenizer's ids must fit the model's vocabulary
        check_request(known, tokens, args.seq_len)
    cfg, params, source = load_model_from_args(args)
    load_tokenizer(args, cfg)  # the tokenizer's ids must fit the model's vocabulary
    if max(tokens) >= cfg.vocab_size:
        raise UserError(f"token id {max(tokens)} is outside the model vocabulary (size {cfg.vocab_size}); "
                        "give the tokenizer the model was trained with (--tokenizer)")
    result = evaluate_tokens(cfg, params, tokens, args.seq_len, batch_size=args.batch_size, dtype=compute_dtype(args))
    return {**result.to_dict(), "model": source, "text": str(path)}


def render(result: dict, console) -> None:
    console.print(f"loss {result['loss']:.4f} nats/token, perplexity {result['perplexity']:.2f} over "
                  f"{result['predictions']:,} predictions ({result['tokens']:,} tokens, {result['windows']} windows of "
                  f"{result['seq_len']}); {result['model']}")

"""`wse generate`: continue a prompt with a converted, trained or freshly initialised model (KV-cache decoding)."""

from __future__ import annotations

HELP = "generate text from a checkpoint, a HuggingFace directory or a fresh preset (KV-cache decoding)"


def add_arguments(parser) -> None:
    from runtime.commands.shared import add_model_source

    add_model_source(parser)
    parser.add_argument("--prompt", required=True, help="text to continue (empty: start after <|endoftext|>)")
    parser.add_argument("--max-new-tokens", type=int, default=64, metavar="N")
    parser.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default)")
    parser.add_argument("--top-k", type=int, default=0, metavar="K", help="keep the K most likely tokens (0 = off)")
    parser.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling mass (1 = off)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R",
                        help="divide the logits of tokens already in the prompt or output by R (1 = off; 1.2-1.5 keeps "
                             "a small model from repeating newlines and indentation)")
    parser.add_argument("--min-new-tokens", type=int, default=0, metavar="N",
                        help="no <|endoftext|> before N new tokens (default 0)")
    parser.add_argument("--seed", type=int, default=0, metavar="S")


def run(args) -> dict:
    from model.sampling import GenerationError, check_length, check_settings
    from model.tokenizer import TokenizerError
    from runtime.commands.shared import check_model_source, compute_dtype, load_model_from_args, load_tokenizer
    from runtime.errors import UserError

    # everything that needs no JAX first: a refusal returns in about a second
    try:
        check_settings(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.repetition_penalty,
                       args.min_new_tokens)
    except GenerationError as err:
        raise UserError(str(err)) from None
    tok = load_tokenizer(args)
    prompt_ids = tok.encode(args.prompt) or [tok.eot_id]  # GPT-2 convention: an empty prompt starts after EOT
    known = check_model_source(args)
    try:
        if known is not None:
            tok.check_model_vocab(known.vocab_size, f"model '{known.name}'")
            check_length(len(prompt_ids), args.max_new_tokens, known.max_seq_len)
    except (GenerationError, TokenizerError) as err:
        raise UserError(str(err)) from None

    from model.generate import generate

    cfg, params, source = load_model_from_args(args)
    try:
        tok.check_model_vocab(cfg.vocab_size, f"model '{cfg.name}'")
        result = generate(cfg, params, [prompt_ids], args.max_new_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, seed=args.seed, eot_id=tok.eot_id,
                          dtype=compute_dtype(args), vocab_limit=tok.vocab_size,
                          repetition_penalty=args.repetition_penalty, min_new_tokens=args.min_new_tokens)
    except (GenerationError, TokenizerError) as err:
        raise UserError(str(err)) from None
    ids = result.tokens[0]
    return {
        "prompt": args.prompt,
        "completion": tok.decode(ids),
        "tokens": ids,
        "tokens_per_s": result.tokens_per_s,
        "prompt_tokens": len(prompt_ids),
        "finish_reason": result.finish_reasons[0],
        "seconds": result.seconds,
        "compile_seconds": result.compile_seconds,
        "model": source,
    }


def render(result: dict, console) -> None:
    """The text on stdout (the result); the statistics on stderr (a diagnostic), so `> out.txt` keeps only text."""
    from rich.console import Console
    from rich.text import Text

    console.print(Text(result["prompt"], style="bold") + Text(result["completion"]))
    Console(stderr=True, soft_wrap=True).print(
        f"[dim]{len(result['tokens'])} tokens ({result['finish_reason']}), {result['tokens_per_s']:.1f} tokens/s "
        f"after {result['compile_seconds']:.1f} s compile; {result['model']}[/dim]")

"""`wse generate`: continue a prompt with a converted, trained or freshly initialised model (KV-cache decoding).

Its defaults are the tutorial's sampling (runtime.workflow.SAMPLING: temperature 0.8, top-k 40, top-p 0.95, a
repetition penalty of 1.3, at least 48 new tokens, seed 0), measured there to give words rather than blank lines
from a small model trained for minutes; ``--temperature 0`` is greedy."""

from __future__ import annotations

HELP = "generate text from a checkpoint, a HuggingFace directory or a fresh preset (KV-cache decoding)"


def add_arguments(parser) -> None:
    from runtime.commands.shared import add_model_source
    from runtime.workflow import GENERATE_TOKENS, SAMPLING

    add_model_source(parser)
    s = SAMPLING  # the tutorial's sampling, measured to give words from a small model (runtime/workflow.py)
    parser.add_argument("--prompt", required=True, help="text to continue (empty: start after <|endoftext|>)")
    parser.add_argument("--max-new-tokens", type=int, default=GENERATE_TOKENS, metavar="N",
                        help=f"new tokens at most (default {GENERATE_TOKENS})")
    parser.add_argument("--temperature", type=float, default=s["temperature"], metavar="T",
                        help=f"sampling temperature (default {s['temperature']}); 0 = greedy: the most likely token "
                             "every time (a small model's is often a newline or a space)")
    parser.add_argument("--top-k", type=int, default=s["top_k"], metavar="K",
                        help=f"keep the K most likely tokens (default {s['top_k']}; 0 = off)")
    parser.add_argument("--top-p", type=float, default=s["top_p"], metavar="P",
                        help=f"nucleus sampling mass (default {s['top_p']}; 1 = off)")
    parser.add_argument("--repetition-penalty", type=float, default=s["repetition_penalty"], metavar="R",
                        help=f"divide the logits of tokens already in the prompt or output by R (default "
                             f"{s['repetition_penalty']}, which keeps a small model from repeating newlines and "
                             "indentation; 1 = off)")
    parser.add_argument("--min-new-tokens", type=int, default=None, metavar="N",
                        help=f"no <|endoftext|> before N new tokens (default {s['min_new_tokens']}, or "
                             "--max-new-tokens when that is smaller)")
    parser.add_argument("--seed", type=int, default=s["seed"], metavar="S",
                        help=f"sampling seed (default {s['seed']}): the same seed and settings give the same text")


def run(args) -> dict:
    from model.generation_checks import GenerationError, check_length
    from model.tokenizer import TokenizerError
    from runtime.commands.shared import (check_model_source, compute_dtype, load_model_from_args, load_tokenizer,
                                         start_ids)
    from runtime.errors import UserError
    from runtime.platform.compile_cache import use_compile_cache
    from runtime.config.sampling import sampling_settings

    if args.min_new_tokens is None:
        from runtime.workflow import SAMPLING

        args.min_new_tokens = min(SAMPLING["min_new_tokens"], max(args.max_new_tokens, 0))
    # everything that needs no JAX first: a refusal returns in about a second
    sampling = sampling_settings(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                                 top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                                 min_new_tokens=args.min_new_tokens, seed=args.seed, cli=True)
    load_tokenizer(args)  # a bad --tokenizer is refused before the model is read
    known = check_model_source(args)
    if known is not None:
        tok = load_tokenizer(args, known)  # its ids must fit the model's vocabulary
        try:
            check_length(len(start_ids(tok) + tok.encode(args.prompt)) or 1, args.max_new_tokens, known.max_seq_len)
        except GenerationError as err:
            raise UserError(str(err)) from None

    from model.generate import generate

    use_compile_cache()  # the decode programs compile once per machine (issue 29), not once per command
    cfg, params, source = load_model_from_args(args)
    tok = load_tokenizer(args, cfg)
    # A Llama-style tokenizer starts every sequence with its begin-of-sequence id; GPT-2's convention for an empty
    # prompt is to start after <|endoftext|>.
    prompt_ids = start_ids(tok) + tok.encode(args.prompt)
    prompt_ids = prompt_ids or [tok.eot_id]
    try:
        result = generate(cfg, params, [prompt_ids], args.max_new_tokens, eot_id=tok.eot_id, dtype=compute_dtype(args),
                          vocab_limit=tok.vocab_size, **sampling)
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

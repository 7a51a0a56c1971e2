"""`wse generate`: continue a prompt with a converted, trained or freshly initialised model (KV-cache decoding)."""

from __future__ import annotations

HELP = "generate text from a checkpoint, a HuggingFace directory or a fresh preset (KV-cache decoding)"


def add_model_source(parser, presets: bool = True) -> None:
    """The model options shared by `wse generate` and `wse eval`: exactly one of --checkpoint / --hf (/ --model)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT_DIR", help="checkpoint or run directory (`wse convert`, `wse train`)")
    src.add_argument("--hf", metavar="DIR", help="local HuggingFace GPT-2 directory (config.json + model.safetensors)")
    if presets:
        src.add_argument("--model", metavar="PRESET", help="preset or model file, freshly initialised (seed 0)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="with --hf: allow reading a pickled pytorch_model.bin (only for files you trust)")
    parser.add_argument("--tokenizer", metavar="PATH", help="a tokenizer.json (or a directory holding one); default GPT-2 BPE")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="compute dtype (weights stay float32)")


def quiet_libraries() -> None:
    """Keep stderr to our own messages: Orbax logs absl warnings (e.g. 'Given directory is read only') on every
    read-only restore, which would break the one-line `error:` contract and clutter normal output."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)


def load_source(args):
    """(GPTConfig, params, description) for the model the options name."""
    quiet_libraries()
    if args.checkpoint:
        from runtime.checkpoint import load_model

        cfg, params = load_model(args.checkpoint)
        return cfg, params, f"checkpoint {args.checkpoint}"
    if args.hf:
        from model.hf import load_hf

        cfg, params = load_hf(args.hf, allow_pickle=args.allow_pickle)
        return cfg, params, f"hf {args.hf}"
    import jax

    from model.config import get_config
    from model.gpt import init_params

    cfg = get_config(args.model)
    params = jax.jit(init_params, static_argnums=0)(cfg, jax.random.key(0))  # one compile, not one per tensor
    return cfg, params, f"preset {cfg.name} (untrained, seed 0)"


def load_tokenizer(args):
    from model.tokenizer import TokenizerError, get_tokenizer
    from runtime.errors import UserError

    try:
        return get_tokenizer(args.tokenizer)
    except TokenizerError as err:
        raise UserError(str(err)) from None


def compute_dtype(args):
    import jax.numpy as jnp

    return jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32


def add_arguments(parser) -> None:
    add_model_source(parser)
    parser.add_argument("--prompt", required=True, help="text to continue (empty: start after <|endoftext|>)")
    parser.add_argument("--max-new-tokens", type=int, default=64, metavar="N")
    parser.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default)")
    parser.add_argument("--top-k", type=int, default=0, metavar="K", help="keep the K most likely tokens (0 = off)")
    parser.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling mass (1 = off)")
    parser.add_argument("--seed", type=int, default=0, metavar="S")


def run(args) -> dict:
    from model.generate import GenerationError, generate
    from runtime.errors import UserError

    from model.tokenizer import TokenizerError

    tok = load_tokenizer(args)
    cfg, params, source = load_source(args)
    prompt_ids = tok.encode(args.prompt) or [tok.eot_id]  # GPT-2 convention: an empty prompt starts after EOT
    try:
        tok.check_model_vocab(cfg.vocab_size, f"model '{cfg.name}'")
        result = generate(cfg, params, [prompt_ids], args.max_new_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, seed=args.seed, eot_id=tok.eot_id,
                          dtype=compute_dtype(args), vocab_limit=tok.vocab_size)
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

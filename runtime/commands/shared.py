"""What several commands share: the model-source options (`wse generate`, `wse eval`), checking and loading the
model they name, the tokenizer option, the compute dtype, and keeping libraries' log noise off stderr.

Every check that needs no JAX runs before JAX is imported (``check_model_source``, ``check_output_dir``), so a
refusal (a missing checkpoint, a bad setting) returns in about a second; tests/runtime/test_refusals.py holds that."""

from __future__ import annotations


def add_model_source(parser, presets: bool = True) -> None:
    """The model options shared by `wse generate` and `wse eval`: exactly one of --checkpoint / --hf (/ --model)."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT_DIR", help="checkpoint or run directory (`wse convert`, `wse train`, "
                     "`wse finetune`)")
    src.add_argument("--hf", metavar="DIR", help="local HuggingFace directory (config.json + model.safetensors) of "
                     "GPT-2, Llama, Mistral, Qwen2, Qwen3 or GPT-J")
    if presets:
        src.add_argument("--model", metavar="PRESET", help="preset or model file, freshly initialised (seed 0)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="with --hf: allow reading a pickled pytorch_model.bin (only for files you trust)")
    parser.add_argument("--tokenizer", metavar="PATH", help="a tokenizer.json (or a directory holding one); default: the "
                        "model's own tokenizer.json (an --hf directory's, or the one `wse convert`/`wse finetune` kept "
                        "beside a checkpoint), else GPT-2 BPE")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="compute dtype (weights stay float32)")


def quiet_libraries() -> None:
    """Keep stderr to our own messages: Orbax logs absl warnings (e.g. 'Given directory is read only') on every
    read-only restore, which would break the one-line `error:` contract and clutter normal output."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)


def check_model_source(args):
    """The model the options name, checked without JAX or reading weights: a checkpoint directory holding a complete
    step, a HuggingFace directory with a config.json we can run, or a known preset. Returns its GPTConfig when that
    is known this cheaply (None for a checkpoint whose model record is unreadable: loading it says what is wrong)."""
    if getattr(args, "checkpoint", None):
        from runtime.checkpoint import find_checkpoint

        return find_checkpoint(args.checkpoint)[1]
    if getattr(args, "hf", None):
        from model.hf_configs import read_hf_config

        return read_hf_config(args.hf)[0]
    from model.config import get_config

    return get_config(args.model)


def check_output_dir(path) -> None:
    """Refuse (UserError) an output directory that exists and is not empty: commands never write over results."""
    from pathlib import Path

    from runtime.errors import UserError

    out = Path(path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"output directory '{out}' is not empty; choose a new --out directory")


def load_model_from_args(args):
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
    from model.config import get_config
    from model.gpt import initial_params

    cfg = get_config(args.model)
    params = initial_params(cfg, 0)
    return cfg, params, f"preset {cfg.name} (untrained, seed 0)"


def load_tokenizer(args, cfg=None):
    """The tokenizer for the model the options name (model.tokenizer.tokenizer_for_model): ``--tokenizer``, else the
    model's own tokenizer.json, else GPT-2's. UserError when ``--tokenizer`` is not the one the model came with, or
    (given the model's ``cfg``) when its ids do not fit the model's vocabulary."""
    from model.tokenizer import TokenizerError, tokenizer_for_model
    from runtime.errors import UserError

    path = getattr(args, "hf", None) or getattr(args, "checkpoint", None)
    try:
        return tokenizer_for_model(args.tokenizer, path, None if cfg is None else cfg.vocab_size,
                                   "the model" if cfg is None else f"model '{cfg.name}'")
    except TokenizerError as err:
        raise UserError(str(err)) from None


def start_ids(tok) -> list[int]:
    """The ids a sequence begins with: what the tokenizer puts first (Llama's begin-of-sequence id; none for GPT-2)."""
    return list(tok.start_ids)


def compute_dtype(args):
    import jax.numpy as jnp

    return jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32

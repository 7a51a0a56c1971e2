"""`wse info`: the shape, parameter count and FLOP budget of a model, from its config alone (no JAX)."""

from __future__ import annotations

HELP = "show a model's shape, parameters, FLOPs per token (three conventions) and Chinchilla budget"

# What each FLOP figure counts (per token of training, at the model's context; backward = 2 x forward).
CONVENTIONS = {
    "6n": "6 x parameters: every parameter once forward (2) and twice backward (4); no attention scores, the "
          "embedding table counted as a dense layer",
    "algorithmic": "ours (Megatron's model FLOPs): dense matmuls, full-square QK^T and attention-times-V, the logit "
                   "matmul; the embedding lookup is free; what `wse plan` reports as utilisation",
    "paper": "the Cerebras-GPT paper's 'algorithmic FLOPs' (arXiv 2304.03208, Appendix F): ours plus the attention "
             "matmuls a second time and the token embedding as a matmul in the forward and weight-gradient passes; "
             "reproduces the paper's published training FLOPs within their rounding",
}


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="any model `wse plan` takes: a preset (tiny, small, demo, "
                        "111M ... 13B, 111M-mup ..., llama-tiny, mistral-tiny, qwen3-tiny, gptj-tiny, llama3.1-8b/70b/"
                        "405b, llama2-7b, llama-7b, mistral-7b, qwen3-32b, gptj-6b), a planning-only published shape "
                        "(llama3-8b, qwen2-72b, gpt2-small, gpt3-20b, gpt-1t, gpt-24t), a YAML/JSON model file "
                        "(ModelZoo configs included) or a HuggingFace model directory (its config.json)")


def run(args) -> dict:
    from runtime.planning import load_model
    from wse.validation.published import CEREBRAS_GPT_CARD, TRAINING_FLOPS

    cfg, _ = load_model(args.model)
    out = cfg.summary()
    out["flops_per_token_paper"] = cfg.flops_per_token_paper()
    out["train_flops_paper"] = cfg.flops_per_token_paper() * cfg.chinchilla_tokens
    published = TRAINING_FLOPS.get(cfg.name.removesuffix("-mup")) if cfg.max_seq_len == 2048 else None
    if published is not None:
        out["train_flops_published"] = published
        out["train_flops_published_source"] = CEREBRAS_GPT_CARD
    out["flop_conventions"] = {f"flops_per_token_{k}": v for k, v in CONVENTIONS.items()}
    return out


def render(result: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"model {result['name']}", show_header=False)
    for key, value in result.items():
        if key == "flop_conventions":
            continue
        table.add_row(key, f"{value:,.4g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    console.print(table)
    notes = Table(title="FLOP conventions (per token of training)", show_header=False)
    notes.add_column(overflow="fold")
    notes.add_column(overflow="fold")
    for key, text in result["flop_conventions"].items():
        notes.add_row(key.removeprefix("flops_per_token_"), text)
    console.print(notes)

"""The catalog of named model shapes: data only (plain dicts of GPTConfig fields), no reader and no schema.

``PRESETS`` is the Cerebras-GPT family (cerebras-gpt.md: the seven published sizes, their muP variants) and the CPU
shapes built on it; ``FAMILY_PRESETS`` the other families the model runs (Llama, Mistral, Qwen3, GPT-J): a small CPU
shape of each and the published shapes, each with its source. ``get_config`` (model/config.py) looks names up in
both (``ALL_PRESETS``); `wse info`, `wse plan` and `wse train` take every name of both, and the planner reads the
families' fields (wse/shape.py) with the same counts (tests/wse/test_costs.py).

The family CPU presets keep GPT-2's 50257-token vocabulary: the built-in GPT-2 tokenizer and corpus then train them
with no tokenizer file, like ``tiny``. A family's own vocabulary (Llama 3's 128256, Qwen's 151936) would need its
tokenizer.json, which is not shipped offline, and at width 128 would make the embedding 16-19M of the parameters.
"""

from __future__ import annotations

GPT2_VOCAB_SIZE = 50257
EOT_TOKEN = 50256

# Architecture fields whose defaults ``matching_preset`` assumes when a preset leaves them out; equal to GPTConfig's
# defaults (tests/model/test_families.py checks that).
SHAPE_DEFAULTS = {"vocab_size": GPT2_VOCAB_SIZE, "max_seq_len": 2048, "positions": "learned", "norm": "layernorm",
                  "ffn_gated": False, "n_kv_heads": None, "mup": False, "tied_embeddings": True, "qk_norm": False,
                  "parallel_residual": False}
_MATCH_KEYS = ("vocab_size", "max_seq_len", "n_layers", "d_model", "n_heads", "d_head", "d_ffn", "positions", "norm",
               "ffn_gated", "n_kv_heads", "mup", "tied_embeddings", "qk_norm", "parallel_residual")


def _published(name, n_layers, d_model, n_heads, d_head, batch_size, lr, decay, eps=1e-8) -> dict:
    return dict(
        name=name, n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_head, d_ffn=4 * d_model,
        batch_size=batch_size, learning_rate=lr, lr_decay=decay, adam_eps=eps,
    )


# The seven published sizes (cerebras-gpt.md architecture table). 13B's batch ramps 720 -> 1080; 720 is the start.
_SP = [
    _published("111M", 10, 768, 12, 64, 120, 6.0e-4, "linear"),
    _published("256M", 14, 1088, 17, 64, 264, 6.0e-4, "linear"),
    _published("590M", 18, 1536, 12, 128, 264, 2.0e-4, "linear"),
    _published("1.3B", 24, 2048, 16, 128, 528, 2.0e-4, "cosine"),
    _published("2.7B", 32, 2560, 32, 80, 528, 2.0e-4, "cosine"),
    _published("6.7B", 32, 4096, 32, 128, 1040, 1.2e-4, "linear", 1e-9),
    _published("13B", 40, 5120, 40, 128, 720, 1.2e-4, "cosine", 1e-9),
]

# muP variants: same shapes; base LR 6e-3 and base init std 0.08 (scaled per tensor in the model and optimizer).
_MUP = [
    {**p, "name": p["name"] + "-mup", "mup": True, "learning_rate": 6.0e-3, "init_std": 0.08}
    for p in _SP
    if p["name"] in ("111M", "256M", "590M", "1.3B", "2.7B")
]

# Small shapes for CPU work. Same architecture and vocabulary (so the real GPT-2 tokenizer applies); shorter context.
_CPU = [
    # ~8.0M parameters (6.4M of them the tied embedding): 8 layers so that it can fill an 8-stage pipeline.
    dict(name="tiny", n_layers=8, d_model=128, n_heads=4, d_head=32, d_ffn=512, max_seq_len=256,
         batch_size=16, learning_rate=1e-3),
    # ~5.7M parameters (4.8M of them the tied embedding): the shape `wse demo` trains. The 50257-way output layer
    # costs in proportion to the width, and on 2 cores this width learns the most per CPU-second: measured on the
    # 2-core Xeon, one device, 4 x 128-token steps at LR 2e-3, seed 0 (2026-11-30): 1,000 steps reach validation loss
    # 5.41 in 189 s, where tiny needs 1,000 steps and 283-300 s for 5.40 (900: 5.47 in 251 s); 8 x 64 wide, 900 steps:
    # 5.56 in 138 s; tiny's width with 4 layers, 900 steps: 5.63 in 183 s.
    dict(name="demo", n_layers=8, d_model=96, n_heads=3, d_head=32, d_ffn=384, max_seq_len=256,
         batch_size=16, learning_rate=1e-3),
    # ~19.3M parameters: the benchmark and scaling-study shape.
    dict(name="small", n_layers=8, d_model=256, n_heads=4, d_head=64, d_ffn=1024, max_seq_len=512,
         batch_size=16, learning_rate=6e-4),
]

PRESETS: dict[str, dict] = {p["name"]: p for p in _CPU + _SP + _MUP}
PUBLISHED_PRESETS = [p["name"] for p in _SP] + [p["name"] for p in _MUP]

# ---------------------------------------------------------------------------------------------------------------
# Other families. Architecture fields per family, then shapes.

LLAMA = dict(positions="rotary", rope_theta=10000.0, rope_style="half", norm="rmsnorm", layer_norm_eps=1e-5,
             activation="silu", ffn_gated=True, tied_embeddings=False, qkv_bias=False, attn_out_bias=False,
             mlp_bias=False)
LLAMA3 = {**LLAMA, "rope_theta": 500000.0, "vocab_size": 128256, "max_seq_len": 131072, "rope_scaling": "llama3",
          "rope_scaling_factor": 8.0, "rope_low_freq_factor": 1.0, "rope_high_freq_factor": 4.0,
          "rope_original_max_seq_len": 8192}
QWEN3 = {**LLAMA, "rope_theta": 1000000.0, "layer_norm_eps": 1e-6, "qk_norm": True}
# GPT-J: rotary on the first 64 of each head's 256 dims in interleaved pairs, one LayerNorm read by attention and MLP
# side by side (parallel residual), tanh GELU, biases on the MLP only, an untied LM head with a bias.
GPTJ = dict(positions="rotary", rope_theta=10000.0, rope_style="interleaved", activation="gelu_tanh",
            tied_embeddings=False, lm_head_bias=True, parallel_residual=True, qkv_bias=False, attn_out_bias=False,
            mlp_bias=True)

_FAMILY_CPU = [
    # ~8M parameters each (6.4M the GPT-2-vocabulary embedding), the width and depth of `tiny`. Each keeps its
    # family's distinguishing choices at small scale: Llama 3.2 1B/3B and Qwen3-0.6B tie their embeddings, Mistral 7B
    # and GPT-J do not (their tiny shapes then hold a second 6.4M table); the query:KV head ratios are the published
    # ones (Llama 3 and Mistral 4:1, Qwen3-0.6B 2:1); qwen3-tiny's heads are wider than d_model / n_heads, as
    # Qwen3-32B's are; gptj-tiny rotates a quarter of each head, as GPT-J's 64 of 256.
    {**LLAMA, "name": "llama-tiny", "rope_theta": 500000.0, "tied_embeddings": True, "n_layers": 8, "d_model": 128,
     "n_heads": 4, "n_kv_heads": 1, "d_head": 32, "d_ffn": 384, "max_seq_len": 256, "batch_size": 16,
     "learning_rate": 1e-3},
    {**LLAMA, "name": "mistral-tiny", "rope_theta": 1000000.0, "n_layers": 8, "d_model": 128, "n_heads": 4,
     "n_kv_heads": 1, "d_head": 32, "d_ffn": 384, "max_seq_len": 256, "batch_size": 16, "learning_rate": 1e-3},
    {**QWEN3, "name": "qwen3-tiny", "tied_embeddings": True, "n_layers": 8, "d_model": 128, "n_heads": 4,
     "n_kv_heads": 2, "d_head": 48, "d_ffn": 384, "max_seq_len": 256, "batch_size": 16, "learning_rate": 1e-3},
    {**GPTJ, "name": "gptj-tiny", "rotary_dim": 8, "n_layers": 8, "d_model": 128, "n_heads": 4, "d_head": 32,
     "d_ffn": 512, "max_seq_len": 256, "batch_size": 16, "learning_rate": 1e-3},
]

# Published shapes. Sources: the models' HuggingFace config.json files (meta-llama/Llama-3.1-8B, -70B, -405B;
# meta-llama/Llama-2-7b-hf; huggyllama/llama-7b; mistralai/Mistral-7B-v0.3; Qwen/Qwen3-32B; EleutherAI/gpt-j-6b) and
# papers: Llama 3 (arXiv 2407.21783, Table 3), Llama 2 (arXiv 2307.09288, section 2.2: AdamW 0.9/0.95, eps 1e-5,
# cosine to 10%, peak 3e-4 for 7B, 4M-token batches = 1024 x 4096), LLaMA (arXiv 2302.13971, Table 2: 7B at 3e-4,
# 4M-token batches = 2048 x 2048), Qwen3 (arXiv 2505.09388, Table 1). Where no training recipe is published, the
# recipe fields keep GPTConfig's defaults (they seed the runtime's run config, nothing else).
_FAMILY_PUBLISHED = [
    {**LLAMA3, "name": "llama3.1-8b", "n_layers": 32, "d_model": 4096, "n_heads": 32, "n_kv_heads": 8,
     "d_head": 128, "d_ffn": 14336},
    {**LLAMA3, "name": "llama3.1-70b", "n_layers": 80, "d_model": 8192, "n_heads": 64, "n_kv_heads": 8,
     "d_head": 128, "d_ffn": 28672},
    # 405B: peak LR 8e-5, cosine decay (Llama 3 paper, section 3.4.1).
    {**LLAMA3, "name": "llama3.1-405b", "n_layers": 126, "d_model": 16384, "n_heads": 128, "n_kv_heads": 8,
     "d_head": 128, "d_ffn": 53248, "learning_rate": 8e-5, "lr_decay": "cosine"},
    {**LLAMA, "name": "llama2-7b", "vocab_size": 32000, "max_seq_len": 4096, "n_layers": 32, "d_model": 4096,
     "n_heads": 32, "d_head": 128, "d_ffn": 11008, "batch_size": 1024, "learning_rate": 3e-4, "lr_decay": "cosine",
     "adam_eps": 1e-5},
    # LLaMA (1) 7B: Llama 2 7B's shape with a 2048 context and RMSNorm eps 1e-6.
    {**LLAMA, "name": "llama-7b", "vocab_size": 32000, "max_seq_len": 2048, "layer_norm_eps": 1e-6, "n_layers": 32,
     "d_model": 4096, "n_heads": 32, "d_head": 128, "d_ffn": 11008, "batch_size": 2048, "learning_rate": 3e-4,
     "lr_decay": "cosine"},
    # Mistral 7B v0.3: v0.1's shape (32 x 4096, 8 KV heads, FFN 14336) without its 4096-token sliding window,
    # RoPE base 1e6, vocabulary 32768.
    {**LLAMA, "name": "mistral-7b", "vocab_size": 32768, "max_seq_len": 32768, "rope_theta": 1000000.0,
     "n_layers": 32, "d_model": 4096, "n_heads": 32, "n_kv_heads": 8, "d_head": 128, "d_ffn": 14336},
    # Qwen3-32B: 64 query heads of 128 (8192 wide) on a 5120-wide model.
    {**QWEN3, "name": "qwen3-32b", "vocab_size": 151936, "max_seq_len": 40960, "n_layers": 64, "d_model": 5120,
     "n_heads": 64, "n_kv_heads": 8, "d_head": 128, "d_ffn": 25600},
    {**GPTJ, "name": "gptj-6b", "vocab_size": 50400, "max_seq_len": 2048, "rotary_dim": 64, "n_layers": 28,
     "d_model": 4096, "n_heads": 16, "d_head": 256, "d_ffn": 16384},
]

FAMILY_PRESETS: dict[str, dict] = {p["name"]: p for p in _FAMILY_CPU + _FAMILY_PUBLISHED}
PUBLISHED_FAMILY_PRESETS = [p["name"] for p in _FAMILY_PUBLISHED]
ALL_PRESETS: dict[str, dict] = {**PRESETS, **FAMILY_PRESETS}


def matching_preset(fields: dict) -> str | None:
    """The preset whose network shape (vocabulary, context, layers, widths, heads, FFN, positions, norm, FFN kind,
    tying, muP or not) ``fields`` has, or None. Importers (HF, ModelZoo) use it to keep a published shape's training
    recipe as defaults."""
    def shape(f: dict) -> tuple:
        values = {k: f.get(k, SHAPE_DEFAULTS.get(k)) for k in _MATCH_KEYS}
        values["n_kv_heads"] = values["n_kv_heads"] or values["n_heads"]  # None means one K/V head per query head
        return tuple(values.values())

    want = shape(fields)
    return next((name for name, p in ALL_PRESETS.items() if shape(p) == want), None)

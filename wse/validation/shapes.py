"""The shapes of published models the simulator plans: the models of measured Cerebras runs and of Cerebras'
inference service, as planning shapes (wse.shape.PlanShape), each with its source.

``PLANNING_SHAPES`` are the models the validation tables hold the simulator to (GPT-J, LLaMA-7B, Llama 2 and 3,
Llama 3.1, Qwen2, GPT-3 20B) and two GPT-2-style giants. `wse plan --model` and `wse info` read model/'s presets
first (runtime/planning.py): where a preset describes the same model (llama-7b, llama2-7b, llama3.1-8b/70b/405b) it
is the one source `wse plan` reads and tests/wse/test_validation.py holds this copy equal to it (wse does not import
model/); the other names here (llama3-8b, qwen2-72b, gpt2-small, gpt3-20b, gpt-1t, gpt-24t) are the planning-only
names the command line adds. gptj-6b here is the shape of the measured ModelZoo runs (vocabulary 50257, biases
counted on every projection), not the Hugging Face GPT-J of model/'s ``gptj-6b`` preset (vocabulary 50400, biases on
the FFN only): 0.1% apart in parameters, kept as the calibration was fitted. ``CEREBRAS_GPT`` repeats the
Cerebras-GPT presets' shapes (a test holds them equal to model.config's) so that the calibration and its fit
(wse.validation.fit) need nothing outside wse; ``PROXIES`` stand in, for planning only, for non-GPT models of measured
runs (encoders and a protein model, decoder-shaped with their widths, depths, vocabularies and sequence lengths).
"""

from __future__ import annotations

from wse.shape import PlanShape

_LLAMA = dict(ffn_gated=True, tied_embeddings=False, learned_positions=False, norm="rmsnorm", qkv_bias=False,
              attn_out_bias=False, mlp_bias=False)
_HF = "V: the model's Hugging Face config.json"

PLANNING_SHAPES: dict[str, tuple[PlanShape, str]] = {
    # GPT-J 6B: parallel residual (one LayerNorm per block), rotary on 64 of 256 dims, untied head with a bias, no
    # biases on Q/K/V and the attention output (counted with biases here: 0.1% of its parameters)
    "gptj-6b": (PlanShape("gptj-6b", 28, 4096, 16, 256, 16384, 50257, 2048, n_kv_heads=16, tied_embeddings=False,
                          learned_positions=False, parallel_residual=True, head_bias=True),
                "V: EleutherAI GPT-J-6B config; Cerebras ModelZoo gptj config (vocab 50257)"),
    "llama-7b": (PlanShape("llama-7b", 32, 4096, 32, 128, 11008, 32000, 2048, n_kv_heads=32, **_LLAMA),
                 "P: Touvron et al. 2023 (LLaMA), Table 2; Cerebras ModelZoo llama 7B config"),
    "llama2-7b": (PlanShape("llama2-7b", 32, 4096, 32, 128, 11008, 32000, 4096, n_kv_heads=32, **_LLAMA),
                  "P/V: Touvron et al. 2023 (Llama 2); Meta's config.json"),
    "llama3-8b": (PlanShape("llama3-8b", 32, 4096, 32, 128, 14336, 128256, 8192, n_kv_heads=8, **_LLAMA),
                  "V: Meta Llama 3 8B config.json"),
    "llama3.1-8b": (PlanShape("llama3.1-8b", 32, 4096, 32, 128, 14336, 128256, 131072, n_kv_heads=8, **_LLAMA),
                    "V: Meta Llama 3.1 model card / config.json"),
    "llama3.1-70b": (PlanShape("llama3.1-70b", 80, 8192, 64, 128, 28672, 128256, 131072, n_kv_heads=8, **_LLAMA),
                     "V: Meta Llama 3.1 model card / config.json"),
    "llama3.1-405b": (PlanShape("llama3.1-405b", 126, 16384, 128, 128, 53248, 128256, 131072, n_kv_heads=8, **_LLAMA),
                      "V: Meta Llama 3.1 model card / config.json"),
    # Qwen2-72B: Llama's architecture with biases on Q, K and V
    "qwen2-72b": (PlanShape("qwen2-72b", 80, 8192, 64, 128, 29568, 152064, 32768, n_kv_heads=8,
                            **{**_LLAMA, "qkv_bias": True}), _HF),
    "gpt2-small": (PlanShape("gpt2-small", 12, 768, 12, 64, 3072, 50257, 2048, n_kv_heads=12),
                   "V: Cerebras ModelZoo gpt2 small config (12 x 768, context 2048)"),
    "gpt3-20b": (PlanShape("gpt3-20b", 44, 6144, 64, 96, 24576, 50257, 2048, n_kv_heads=64),
                 "P: Zhang et al. 2024 (HPEC, arXiv 2409.00287): 20B, 44 layers x 6,144, 64 heads; GPT-3 style"),
    # GPT-2-style giants without a published shape: 128 x d 25,600 = 1.008T, 256 x d 88,064 = 23.8T parameters; no
    # batch, so a plan takes the published rule's (wse.costs.published_batch)
    "gpt-1t": (PlanShape("gpt-1t", 128, 25600, 200, 128, 102400, 50257, 2048, n_kv_heads=200),
               "U: a GPT-2-style shape of 1T parameters (Sandia's shape is unpublished)"),
    "gpt-24t": (PlanShape("gpt-24t", 256, 88064, 688, 128, 352256, 50257, 2048, n_kv_heads=688),
                "U: a GPT-2-style shape of 24T parameters (the MemoryX pairing)"),
}

_CARD = "P/V: Cerebras-GPT paper (arXiv 2304.03208) and the ModelZoo configs (shared/reference/cerebras-gpt.md)"
CEREBRAS_GPT: dict[str, PlanShape] = {
    name: PlanShape(f"cerebras-gpt-{name}", L, d, h, dh, 4 * d, 50257, 2048, n_kv_heads=h, batch_size=b)
    for name, (L, d, h, dh, b) in {"111M": (10, 768, 12, 64, 120), "256M": (14, 1088, 17, 64, 264),
                                   "590M": (18, 1536, 12, 128, 264), "1.3B": (24, 2048, 16, 128, 528),
                                   "2.7B": (32, 2560, 32, 80, 528), "6.7B": (32, 4096, 32, 128, 1040),
                                   "13B": (40, 5120, 40, 128, 720)}.items()
}

PROXIES: dict[str, tuple[PlanShape, str]] = {
    "bert-large": (PlanShape("bert-large (decoder-shaped proxy)", 24, 1024, 16, 64, 4096, 30522, 512, n_kv_heads=16),
                   "P: Devlin et al. 2019 (BERT-large: 24 x 1024, 16 heads, vocabulary 30,522)"),
    "bert-base": (PlanShape("bert-base (decoder-shaped proxy)", 12, 768, 12, 64, 3072, 30522, 512, n_kv_heads=12),
                  "P: Devlin et al. 2019 (BERT-base: 12 x 768, 12 heads)"),
    "esm2-35m": (PlanShape("esm2-35m (decoder-shaped proxy)", 12, 480, 20, 24, 1920, 33, 1026, n_kv_heads=20,
                           learned_positions=False),
                 "P: Lin et al. 2023 (ESM-2 35M: 12 x 480, 20 heads, 33 tokens, rotary)"),
}


def shape(name: str) -> PlanShape:
    """A published shape by name: PLANNING_SHAPES, ``cerebras-gpt-<size>`` (CEREBRAS_GPT) or a proxy."""
    if name in PLANNING_SHAPES:
        return PLANNING_SHAPES[name][0]
    if name in PROXIES:
        return PROXIES[name][0]
    return CEREBRAS_GPT[name.removeprefix("cerebras-gpt-")]

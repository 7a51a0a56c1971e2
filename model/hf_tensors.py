"""HuggingFace tensor names and layouts <-> this project's stacked parameters, one rule table per architecture.

A rule says: HF tensor ``name`` (``{i}`` = layer index) is the slice ``index`` of our tensor ``path`` (per layer for
block tensors, whose leading ``layers`` axis is dropped first), stored as

- ``vector``: the same values flattened (biases, norm scales);
- ``matrix``: the same values as [in, out], our slice split after ``split`` axes (embeddings; GPT-2's Conv1D keeps
  (in, out) as our kernels do);
- ``linear``: a torch ``nn.Linear`` weight [out, in], the transpose of ``matrix``;

and ``rope`` marks query/key tensors whose head dimension is permuted when the file's RoPE pairs differ from the
model's: Llama-style files pair (i, i + r/2), GPT-J files (2i, 2i + 1); a model trained with the other pairing (a
ModelZoo Llama, say) is exported with the first r dims of every Q/K head reordered (the permutation Meta's and the
ModelZoo's converters apply), which leaves every attention score unchanged. Import never permutes: the model takes the
file's pairing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.config import GPTConfig


@dataclass(frozen=True)
class Rule:
    name: str                  # HF tensor name, "{i}" for the layer
    path: tuple[str, ...]      # our tensor (under params["blocks"] when per_layer)
    index: tuple = ()          # slice of our (per-layer) tensor
    mode: str = "vector"       # "vector", "matrix" or "linear"
    split: int = 1             # matrix, linear: how many leading axes of our slice are the input
    rope: bool = False         # a query/key tensor (head dimension last)
    per_layer: bool = True


def _attention_rules(cfg: GPTConfig, q: str, k: str, v: str, weight: str, bias: str) -> list[Rule]:
    """Q, K, V projections as three HF Linear tensors (``{q}.{weight}`` ...) from our fused or grouped layout."""
    if cfg.kv_heads == cfg.n_heads:
        parts = [(q, ("attn", "c_attn"), 0, True), (k, ("attn", "c_attn"), 1, True), (v, ("attn", "c_attn"), 2, False)]
        w_index, b_index = (lambda j: (slice(None), j)), (lambda j: (j,))
    else:
        parts = [(q, ("attn", "c_q"), None, True), (k, ("attn", "c_kv"), 0, True), (v, ("attn", "c_kv"), 1, False)]
        w_index = lambda j: () if j is None else (slice(None), j)  # noqa: E731
        b_index = lambda j: () if j is None else (j,)  # noqa: E731
    rules = [Rule(f"{hf}.{weight}", path + ("kernel",), w_index(j), "linear", 1, rope) for hf, path, j, rope in parts]
    if cfg.qkv_bias:
        rules += [Rule(f"{hf}.{bias}", path + ("bias",), b_index(j), rope=rope) for hf, path, j, rope in parts]
    return rules


def _gpt2_rules(cfg: GPTConfig) -> list[Rule]:
    top = [Rule("wte.weight", ("wte",), mode="matrix", per_layer=False),
           Rule("wpe.weight", ("wpe",), mode="matrix", per_layer=False),
           Rule("ln_f.weight", ("ln_f", "scale"), per_layer=False), Rule("ln_f.bias", ("ln_f", "bias"), per_layer=False)]
    layer = [Rule(f"h.{{i}}.{hf}", path) for hf, path in [
        ("ln_1.weight", ("ln_1", "scale")), ("ln_1.bias", ("ln_1", "bias")), ("attn.c_attn.bias", ("attn", "c_attn", "bias")),
        ("attn.c_proj.bias", ("attn", "c_proj", "bias")), ("ln_2.weight", ("ln_2", "scale")),
        ("ln_2.bias", ("ln_2", "bias")), ("mlp.c_fc.bias", ("mlp", "c_fc", "bias")),
        ("mlp.c_proj.bias", ("mlp", "c_proj", "bias"))]]
    layer += [Rule(f"h.{{i}}.{hf}", path, mode="matrix", split=split) for hf, path, split in [
        ("attn.c_attn.weight", ("attn", "c_attn", "kernel"), 1), ("attn.c_proj.weight", ("attn", "c_proj", "kernel"), 2),
        ("mlp.c_fc.weight", ("mlp", "c_fc", "kernel"), 1), ("mlp.c_proj.weight", ("mlp", "c_proj", "kernel"), 1)]]
    return top + layer


def _gptj_rules(cfg: GPTConfig) -> list[Rule]:
    top = [Rule("wte.weight", ("wte",), mode="matrix", per_layer=False),
           Rule("ln_f.weight", ("ln_f", "scale"), per_layer=False), Rule("ln_f.bias", ("ln_f", "bias"), per_layer=False)]
    layer = [Rule("h.{i}.ln_1.weight", ("ln_1", "scale")), Rule("h.{i}.ln_1.bias", ("ln_1", "bias"))]
    layer += _attention_rules(cfg, "h.{i}.attn.q_proj", "h.{i}.attn.k_proj", "h.{i}.attn.v_proj", "weight", "bias")
    layer += [Rule("h.{i}.attn.out_proj.weight", ("attn", "c_proj", "kernel"), mode="linear", split=2),
              Rule("h.{i}.mlp.fc_in.weight", ("mlp", "c_fc", "kernel"), mode="linear"),
              Rule("h.{i}.mlp.fc_in.bias", ("mlp", "c_fc", "bias")),
              Rule("h.{i}.mlp.fc_out.weight", ("mlp", "c_proj", "kernel"), mode="linear"),
              Rule("h.{i}.mlp.fc_out.bias", ("mlp", "c_proj", "bias"))]
    return top + layer


def _llama_rules(cfg: GPTConfig) -> list[Rule]:
    """Llama, Mistral, Qwen2, Qwen3 (``model.`` names; biases and Q/K norms where the config has them)."""
    top = [Rule("embed_tokens.weight", ("wte",), mode="matrix", per_layer=False),
           Rule("norm.weight", ("ln_f", "scale"), per_layer=False)]
    a = "layers.{i}.self_attn."
    layer = [Rule("layers.{i}.input_layernorm.weight", ("ln_1", "scale")),
             Rule("layers.{i}.post_attention_layernorm.weight", ("ln_2", "scale"))]
    layer += _attention_rules(cfg, a + "q_proj", a + "k_proj", a + "v_proj", "weight", "bias")
    if cfg.qk_norm:
        layer += [Rule(a + "q_norm.weight", ("attn", "q_norm", "scale"), rope=True),
                  Rule(a + "k_norm.weight", ("attn", "k_norm", "scale"), rope=True)]
    layer.append(Rule(a + "o_proj.weight", ("attn", "c_proj", "kernel"), mode="linear", split=2))
    if cfg.attn_out_bias:
        layer.append(Rule(a + "o_proj.bias", ("attn", "c_proj", "bias")))
    m = "layers.{i}.mlp."
    layer += [Rule(m + "gate_proj.weight", ("mlp", "c_fc", "kernel"), (slice(None), 0), "linear"),
              Rule(m + "up_proj.weight", ("mlp", "c_fc", "kernel"), (slice(None), 1), "linear"),
              Rule(m + "down_proj.weight", ("mlp", "c_proj", "kernel"), mode="linear")]
    if cfg.mlp_bias:
        layer += [Rule(m + "gate_proj.bias", ("mlp", "c_fc", "bias"), (0,)),
                  Rule(m + "up_proj.bias", ("mlp", "c_fc", "bias"), (1,)),
                  Rule(m + "down_proj.bias", ("mlp", "c_proj", "bias"))]
    return top + layer


# model_type -> (rules, prefix of the body's names, the RoPE pairing the architecture computes)
FAMILIES = {"gpt2": (_gpt2_rules, "transformer.", None), "btlm": (_gpt2_rules, "transformer.", None),
            "gptj": (_gptj_rules, "transformer.", "interleaved"), "llama": (_llama_rules, "model.", "half"),
            "mistral": (_llama_rules, "model.", "half"), "qwen2": (_llama_rules, "model.", "half"),
            "qwen3": (_llama_rules, "model.", "half")}


def rules(cfg: GPTConfig, model_type: str) -> list[Rule]:
    """The rule table of ``model_type`` for this config: only the tensors the config has (no biases it lacks)."""
    from model.params import param_shapes  # here, not at the top: model.params imports JAX, and the PyTorch
    # baseline's child process maps weights with this module while leaving the device to PyTorch

    shapes = param_shapes(cfg)
    out = []
    for rule in FAMILIES[model_type][0](cfg):
        tree = shapes["blocks"] if rule.per_layer else shapes
        node = tree
        for key in rule.path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            out.append(rule)
    return out


def slice_shape(cfg: GPTConfig, rule: Rule) -> tuple[int, ...]:
    """Shape of our slice a rule reads (one layer's, for block tensors)."""
    from model.params import param_shapes

    node = param_shapes(cfg)["blocks"] if rule.per_layer else param_shapes(cfg)
    for key in rule.path:
        node = node[key]
    shape = tuple(node[1:] if rule.per_layer else node)
    # the index holds whole-axis slices and integers; an integer drops its axis
    return tuple(n for n, i in zip(shape, rule.index + (slice(None),) * len(shape)) if isinstance(i, slice))


def hf_shape(rule: Rule, ours: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the HF tensor of ``rule`` whose slice of ours has shape ``ours``."""
    if rule.mode == "vector":
        return (math.prod(ours),)
    rows, cols = math.prod(ours[:rule.split]), math.prod(ours[rule.split:])
    return (cols, rows) if rule.mode == "linear" else (rows, cols)


def rope_permutation(cfg: GPTConfig, file_style: str | None) -> np.ndarray | None:
    """Index array over a head's D dims taking our RoPE pairing to the file's (None when they agree)."""
    if file_style is None or file_style == cfg.rope_style or cfg.learned_positions:
        return None
    r, D = cfg.rotary_dims, cfg.d_head
    interleaved_to_half = np.concatenate([np.arange(0, r, 2), np.arange(1, r, 2), np.arange(r, D)])
    return interleaved_to_half if file_style == "half" else np.argsort(interleaved_to_half)


def to_hf(rule: Rule, ours: np.ndarray, perm: np.ndarray | None = None) -> np.ndarray:
    """Our slice -> the HF tensor (``perm``: rope_permutation, applied to query/key tensors)."""
    if rule.rope and perm is not None:
        ours = ours[..., perm]
    shape = hf_shape(rule, ours.shape)
    if rule.mode == "linear":
        return ours.reshape(shape[::-1]).T
    return ours.reshape(shape)


def to_ours(rule: Rule, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The HF tensor -> our slice of ``shape``."""
    if rule.mode == "linear":
        return value.T.reshape(shape)
    return value.reshape(shape)

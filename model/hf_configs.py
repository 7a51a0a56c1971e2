"""HuggingFace ``config.json`` <-> GPTConfig, for every architecture this project reads and writes:
GPT2LMHeadModel (Cerebras-GPT; Cerebras' muP checkpoints as ``model_type: btlm``), LlamaForCausalLM,
MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM and GPTJForCausalLM, as transformers 4.4x-5.x defines them.

Reading follows transformers' own defaults for a field a config.json leaves out (GPT-2's activation is ``gelu_new``;
Mistral's sliding window is 4096; Qwen3's head_dim is 128; Llama's head_dim is hidden_size / heads ...). RoPE
settings are read from ``rope_scaling`` (transformers 4) or ``rope_parameters`` (5), with ``rope_theta`` beside
them. A field whose value changes the math our model computes is refused with one error naming it: a sliding window
that can bite, RoPE types other than default/linear/llama3, a partial rotary factor outside GPT-J, GPT-J without
``rotary_dim``, an activation other than the family's, layer-index attention scaling, ALiBi... Mixture-of-experts
and other architectures have their own ``model_type`` and are refused by it. Dropout fields are read as 0 (they do
not change the logits; this project trains without dropout).

Sliding windows, as transformers applies them: Mistral uses ``sliding_window`` whenever it is set (default 4096);
Qwen2/Qwen3 only with ``use_sliding_window`` true, and then only in the layers ``layer_types`` (or
``max_window_layers``) marks ``sliding_attention``. A window the model applies is refused when it is shorter than
``max_position_embeddings``; one at least that long never hides a key and imports as full attention.
"""

from __future__ import annotations

import json
from pathlib import Path

from model.config import EOT_TOKEN, GPTConfig, build_config, matching_preset
from model.errors import HFFormatError, ModelConfigError
from model.presets import ALL_PRESETS

# HF architecture class -> model_type.
EXPORTS = {"GPT2LMHeadModel": "gpt2", "GPTJForCausalLM": "gptj", "LlamaForCausalLM": "llama",
           "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}
MODEL_TYPES = ("gpt2", "btlm", "llama", "mistral", "qwen2", "qwen3", "gptj")
_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# config.json fields of Cerebras' muP (BTLM) configs; model_type 'gpt2' ignores them, so they must not appear there.
MUP_FIELDS = ("mup_width_scale", "mup_embeddings_scale", "mup_output_alpha", "mup_scale_qk_dot_by_d")


def _need(hf: dict, field: str, ok, want: str) -> None:
    if field in hf and not ok(hf[field]):
        raise HFFormatError(f"config.json {field} is {hf[field]!r}; this model needs {want}")


def _positive(hf: dict, field: str, default=None) -> int:
    value = hf.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise HFFormatError(f"config.json {field} is {value!r}; a positive integer is required")
    return value


def read_hf_config(path: str | Path) -> tuple[GPTConfig, dict]:
    """(GPTConfig, the config.json dict) of a local HF model directory, without reading its weights or importing
    JAX (commands check a model's context against their arguments with it before JAX starts). Raises HFFormatError
    for a missing directory or config.json, invalid JSON, or a config our model cannot run."""
    path = Path(path)
    if not path.is_dir():
        raise HFFormatError(f"HuggingFace directory '{path}' does not exist; give a directory with config.json and model.safetensors")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise HFFormatError(f"'{path}' has no config.json; give a HuggingFace model directory")
    try:
        hf = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HFFormatError(f"{config_file} is not valid JSON ({err})") from None
    if not isinstance(hf, dict):
        raise HFFormatError(f"{config_file} must hold a JSON object")
    return config_from_hf(hf, name=path.resolve().name), hf


def config_from_hf(hf: dict, name: str = "hf") -> GPTConfig:
    """GPTConfig for a HF ``config.json`` dict of any supported ``model_type``; refuses what our model cannot run.
    A published shape keeps its preset's training recipe as defaults."""
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
        raise HFFormatError(f"config.json model_type is {model_type!r}; wse imports {', '.join(MODEL_TYPES)} "
                            "(btlm: Cerebras muP) checkpoints")
    if model_type in ("gpt2", "btlm"):
        fields = _gpt2_fields(hf)
    elif model_type == "gptj":
        fields = _gptj_fields(hf)
    else:
        fields = _llama_fields(hf, model_type)
    fields["name"] = name
    if "initializer_range" in hf:
        fields["init_std"] = hf["initializer_range"]
    preset = matching_preset(fields)
    if preset is not None:  # a published shape: keep its training recipe (batch, LR, decay) as defaults
        fields = {**ALL_PRESETS[preset], **fields, "name": name}
    try:
        return build_config(fields)
    except ModelConfigError as err:
        raise HFFormatError(f"config.json does not describe a valid model: {err}") from None


def _gpt2_fields(hf: dict) -> dict:
    # GPT2Config's default activation is gelu_new (tanh): a missing field means gelu_new.
    act = hf.get("activation_function", "gelu_new")
    if act != "gelu" and act not in _TANH:
        raise HFFormatError(f"config.json activation_function is {act!r}; wse supports 'gelu' (exact, Cerebras-GPT) "
                            "and 'gelu_new' (tanh, GPT-2)")
    _need(hf, "scale_attn_weights", lambda v: v is True, "true")
    _need(hf, "scale_attn_by_inverse_layer_idx", lambda v: not v, "false")
    _need(hf, "add_cross_attention", lambda v: not v, "false")
    _need(hf, "position_embedding_type", lambda v: v in (None, "learned"), "'learned' position embeddings")
    _need(hf, "use_alibi", lambda v: not v, "false")
    d, n_head = _positive(hf, "n_embd"), _positive(hf, "n_head")
    if d % n_head:
        raise HFFormatError(f"config.json n_head {n_head} does not divide n_embd {d}")
    fields = dict(
        vocab_size=hf.get("vocab_size", 50257), max_seq_len=hf.get("n_positions", hf.get("n_ctx", 1024)),
        n_layers=_positive(hf, "n_layer"), d_model=d, n_heads=n_head, d_head=d // n_head,
        d_ffn=hf.get("n_inner") or 4 * d, layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        activation="gelu" if act == "gelu" else "gelu_tanh", tied_embeddings=bool(hf.get("tie_word_embeddings", True)),
    )
    fields.update(_mup_fields(hf, d))
    return fields


def _mup_fields(hf: dict, d_model: int) -> dict:
    present = [f for f in MUP_FIELDS if f in hf]
    if hf["model_type"] == "gpt2":
        if present:
            raise HFFormatError(f"config.json has {present[0]} but model_type 'gpt2' ignores it; "
                                "a Cerebras muP checkpoint has model_type 'btlm'")
        return {}
    qk_by_d = bool(hf.get("mup_scale_qk_dot_by_d", False))
    emb = float(hf.get("mup_embeddings_scale", 1.0))
    out = float(hf.get("mup_output_alpha", 1.0)) * float(hf.get("mup_width_scale", 1.0))
    if not qk_by_d:
        if emb != 1.0 or out != 1.0:
            raise HFFormatError("config.json mup_scale_qk_dot_by_d is false with other muP multipliers set; "
                                "this model's muP always scales attention by 1/d_head")
        return {}
    # Our logits are multiplied by 1/m_w = base_width / d_model; the checkpoint's multiplier must be one of those.
    base = out * d_model
    if out <= 0 or abs(base - round(base)) > 1e-6 * max(1.0, base):
        raise HFFormatError(f"config.json mup_output_alpha * mup_width_scale = {out:g} is not base_width / n_embd "
                            f"for an integer base width (n_embd {d_model})")
    return dict(mup=True, mup_embedding_multiplier=emb, mup_base_width=int(round(base)))


def _gptj_fields(hf: dict) -> dict:
    act = hf.get("activation_function", "gelu_new")
    if act != "gelu" and act not in _TANH:
        raise HFFormatError(f"config.json activation_function is {act!r}; wse supports 'gelu_new' (GPT-J) and 'gelu'")
    d, n_head = _positive(hf, "n_embd", 4096), _positive(hf, "n_head", 16)
    if d % n_head:
        raise HFFormatError(f"config.json n_head {n_head} does not divide n_embd {d}")
    if hf.get("rotary_dim", 64) is None:
        raise HFFormatError("config.json rotary_dim is None; transformers' GPT-J then rotates by the model width, "
                            "which only works for one head: give rotary_dim")
    return dict(
        vocab_size=_positive(hf, "vocab_size", 50400), max_seq_len=_positive(hf, "n_positions", 2048),
        n_layers=_positive(hf, "n_layer", 28), d_model=d, n_heads=n_head, d_head=d // n_head,
        d_ffn=hf.get("n_inner") or 4 * d, layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        activation="gelu" if act == "gelu" else "gelu_tanh", positions="rotary", rope_style="interleaved",
        rotary_dim=_positive(hf, "rotary_dim", 64), rope_theta=10000.0, parallel_residual=True,
        tied_embeddings=bool(hf.get("tie_word_embeddings", False)), lm_head_bias=True, qkv_bias=False,
        attn_out_bias=False, mlp_bias=True,
    )


def _llama_fields(hf: dict, family: str) -> dict:
    """Llama, Mistral, Qwen2 and Qwen3: RMSNorm, SwiGLU, RoPE (half pairs), grouped K/V heads."""
    d, heads = _positive(hf, "hidden_size"), _positive(hf, "num_attention_heads")
    kv = hf.get("num_key_value_heads") or heads
    default_head = 128 if family == "qwen3" else d // heads  # Qwen3Config's head_dim defaults to 128
    act = hf.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise HFFormatError(f"config.json hidden_act is {act!r}; {family} models use 'silu' (SwiGLU)")
    L, ctx = _positive(hf, "num_hidden_layers"), _positive(hf, "max_position_embeddings", 2048)
    _check_sliding_window(hf, family, L, ctx)
    attention_bias = bool(hf.get("attention_bias", False))
    qkv_bias, out_bias, mlp_bias = {"llama": (attention_bias, attention_bias, bool(hf.get("mlp_bias", False))),
                                    "mistral": (False, False, False), "qwen2": (True, False, False),
                                    "qwen3": (attention_bias, attention_bias, False)}[family]
    return dict(
        vocab_size=_positive(hf, "vocab_size", 32000), max_seq_len=ctx, n_layers=L, d_model=d, n_heads=heads,
        n_kv_heads=None if kv == heads else kv, d_head=hf.get("head_dim") or default_head,
        d_ffn=_positive(hf, "intermediate_size"), layer_norm_eps=hf.get("rms_norm_eps", 1e-6), norm="rmsnorm",
        activation="silu", ffn_gated=True, qk_norm=family == "qwen3", qkv_bias=qkv_bias, attn_out_bias=out_bias,
        mlp_bias=mlp_bias, tied_embeddings=bool(hf.get("tie_word_embeddings", False)), **_rope_fields(hf, ctx),
    )


def _check_sliding_window(hf: dict, family: str, layers: int, context: int) -> None:
    window = hf.get("sliding_window", 4096 if family in ("mistral", "qwen2", "qwen3") else None)
    if family in ("qwen2", "qwen3"):
        window = window if hf.get("use_sliding_window", False) else None
        types = hf.get("layer_types") or ["sliding_attention" if window is not None and i >= hf.get(
            "max_window_layers", 28) else "full_attention" for i in range(layers)]
        applied = window is not None and "sliding_attention" in types
    else:
        applied = family == "mistral" and window is not None
    if applied and window < context:
        raise HFFormatError(f"config.json sliding_window is {window}, shorter than the {context}-token context "
                            "(max_position_embeddings); sliding-window attention is not supported")


_ROPE_TYPES = ("default", "linear", "llama3")


def _rope_fields(hf: dict, context: int) -> dict:
    """Rotary fields from ``rope_scaling`` (transformers 4; it wins, as in transformers 5's conversion) or
    ``rope_parameters`` (5), ``rope_theta`` from the dict or beside it (default 10000)."""
    rope = hf.get("rope_scaling") or hf.get("rope_parameters") or {}
    if not isinstance(rope, dict) or any(isinstance(v, dict) for v in rope.values()):
        raise HFFormatError("config.json rope_parameters differ per layer type; one RoPE for every layer is supported")
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind not in _ROPE_TYPES:
        raise HFFormatError(f"config.json rope_scaling type is {kind!r}; supported: {', '.join(_ROPE_TYPES)}")
    partial = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if partial not in (None, 1, 1.0):
        raise HFFormatError(f"config.json partial_rotary_factor is {partial!r}; this family rotates whole heads")
    out = dict(positions="rotary", rope_style="half", rope_theta=float(rope.get("rope_theta", hf.get("rope_theta",
                                                                                                   10000.0))))
    if kind == "linear":
        out.update(rope_scaling="linear", rope_scaling_factor=float(rope["factor"]))
    elif kind == "llama3":
        out.update(rope_scaling="llama3", rope_scaling_factor=float(rope["factor"]),
                   rope_low_freq_factor=float(rope["low_freq_factor"]),
                   rope_high_freq_factor=float(rope["high_freq_factor"]),
                   rope_original_max_seq_len=int(rope.get("original_max_position_embeddings", context)))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Export: which HF architecture can hold a model, and its config.json


def _requirements(cfg: GPTConfig, arch: str) -> list[tuple[str, object, object]]:
    """(field, the model's value, what ``arch`` needs) for every choice ``arch`` fixes."""
    gpt2_like = [("norm", cfg.norm, "layernorm"), ("ffn_gated", cfg.ffn_gated, False),
                 ("activation", cfg.activation, ("gelu", "gelu_tanh")), ("n_kv_heads", cfg.kv_heads, cfg.n_heads),
                 ("qk_norm", cfg.qk_norm, False), ("n_heads * d_head", cfg.n_heads * cfg.d_head, cfg.d_model)]
    llama_like = [("positions", cfg.positions, "rotary"), ("norm", cfg.norm, "rmsnorm"),
                  ("parallel_residual", cfg.parallel_residual, False), ("ffn_gated", cfg.ffn_gated, True),
                  ("activation", cfg.activation, "silu"), ("rotary_dim", cfg.rotary_dims, cfg.d_head),
                  ("lm_head_bias", cfg.lm_head_bias, False), ("mup", cfg.mup, False)]
    tied_qkv_out = ("attn_out_bias", cfg.attn_out_bias, cfg.qkv_bias)  # one attention_bias switch
    return {
        "GPT2LMHeadModel": [("positions", cfg.positions, "learned")] + gpt2_like + [
            ("parallel_residual", cfg.parallel_residual, False),
            ("qkv_bias", cfg.qkv_bias, True), ("attn_out_bias", cfg.attn_out_bias, True),
            ("mlp_bias", cfg.mlp_bias, True), ("lm_head_bias", cfg.lm_head_bias, False)],
        "GPTJForCausalLM": [("positions", cfg.positions, "rotary"), ("parallel_residual", cfg.parallel_residual, True)]
        + gpt2_like + [
            ("qkv_bias", cfg.qkv_bias, False), ("attn_out_bias", cfg.attn_out_bias, False),
            ("mlp_bias", cfg.mlp_bias, True), ("rope_theta", cfg.rope_theta, 10000.0),
            ("rope_scaling", cfg.rope_scaling, "none"), ("mup", cfg.mup, False)],
        "LlamaForCausalLM": llama_like + [tied_qkv_out, ("qk_norm", cfg.qk_norm, False)],
        "MistralForCausalLM": llama_like + [("qkv_bias", cfg.qkv_bias, False), ("attn_out_bias", cfg.attn_out_bias, False),
                                            ("mlp_bias", cfg.mlp_bias, False), ("qk_norm", cfg.qk_norm, False)],
        "Qwen2ForCausalLM": llama_like + [("qkv_bias", cfg.qkv_bias, True), ("attn_out_bias", cfg.attn_out_bias, False),
                                          ("mlp_bias", cfg.mlp_bias, False), ("qk_norm", cfg.qk_norm, False)],
        "Qwen3ForCausalLM": llama_like + [tied_qkv_out, ("mlp_bias", cfg.mlp_bias, False),
                                          ("qk_norm", cfg.qk_norm, True)],
    }[arch]


def export_architecture(cfg: GPTConfig, architecture: str | None = None) -> str:
    """The HF architecture class a model is exported as: ``architecture`` when given (one of EXPORTS), else the one
    its fields describe (learned positions: GPT-2; parallel block: GPT-J; Q/K norms: Qwen3; biases on Q/K/V only:
    Qwen2; otherwise Llama; Mistral only when asked, its config being Llama's without bias switches). Raises
    HFFormatError naming the first field that class cannot represent."""
    if architecture is None:
        architecture = ("GPT2LMHeadModel" if cfg.learned_positions else "GPTJForCausalLM" if cfg.parallel_residual
                        else "Qwen3ForCausalLM" if cfg.qk_norm
                        else "Qwen2ForCausalLM" if (cfg.qkv_bias, cfg.attn_out_bias, cfg.mlp_bias) == (True, False, False)
                        else "LlamaForCausalLM")
    if architecture not in EXPORTS:
        raise HFFormatError(f"unknown HF architecture {architecture!r}; choose one of {', '.join(EXPORTS)}")
    for field, value, need in _requirements(cfg, architecture):
        if not (value in need if isinstance(need, tuple) else value == need):
            raise HFFormatError(f"model {cfg.name} cannot be exported as {architecture}: its {field} is {value!r}, "
                                f"{architecture} needs {need!r}")
    return architecture


def config_to_hf(cfg: GPTConfig, tied: bool = True, architecture: str | None = None) -> dict:
    """The ``config.json`` of a model as ``architecture`` (default: export_architecture's choice): no dropout; tied
    embeddings when the model ties them and ``tied`` (False: the export writes an untied ``lm_head``, as a muP
    export folds 1/m_w into it). Raises HFFormatError when the architecture cannot hold the model."""
    arch = export_architecture(cfg, architecture)
    eos = EOT_TOKEN if EOT_TOKEN < cfg.vocab_size else None  # GPT-2 BPE's <|endoftext|>; save_hf sets the tokenizer's
    common = {"architectures": [arch], "model_type": EXPORTS[arch], "vocab_size": cfg.vocab_size,
              "tie_word_embeddings": cfg.tied_embeddings and tied, "initializer_range": cfg.init_std,
              "bos_token_id": eos, "eos_token_id": eos, "torch_dtype": "float32", "use_cache": True}
    if arch in ("GPT2LMHeadModel", "GPTJForCausalLM"):
        out = {**common, "n_positions": cfg.max_seq_len, "n_embd": cfg.d_model, "n_layer": cfg.n_layers,
               "n_head": cfg.n_heads, "n_inner": cfg.d_ffn,
               "activation_function": "gelu" if cfg.activation == "gelu" else "gelu_new",
               "layer_norm_epsilon": cfg.layer_norm_eps, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
        if arch == "GPTJForCausalLM":
            return {**out, "rotary_dim": cfg.rotary_dims}
        return {**out, "n_ctx": cfg.max_seq_len, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                "reorder_and_upcast_attn": False}
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling == "linear":
        rope.update(rope_type="linear", factor=cfg.rope_scaling_factor)
    elif cfg.rope_scaling == "llama3":
        rope.update(rope_type="llama3", factor=cfg.rope_scaling_factor, low_freq_factor=cfg.rope_low_freq_factor,
                    high_freq_factor=cfg.rope_high_freq_factor,
                    original_max_position_embeddings=cfg.rope_original_max_seq_len)
    out = {**common, "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ffn, "num_hidden_layers": cfg.n_layers,
           "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.d_head,
           "hidden_act": "silu", "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.layer_norm_eps,
           "attention_dropout": 0.0, "rope_theta": cfg.rope_theta,
           # transformers 4 reads rope_scaling (None for plain RoPE), 5 rope_parameters; both say the same
           "rope_scaling": None if cfg.rope_scaling == "none" else rope, "rope_parameters": rope}
    if arch in ("LlamaForCausalLM", "Qwen3ForCausalLM"):
        out["attention_bias"] = cfg.qkv_bias
    if arch == "LlamaForCausalLM":
        out["mlp_bias"] = cfg.mlp_bias
    if arch == "MistralForCausalLM":
        out["sliding_window"] = None
    if arch in ("Qwen2ForCausalLM", "Qwen3ForCausalLM"):
        out.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.n_layers)
    return out

"""HuggingFace interop: a local GPT-2-format directory <-> (GPTConfig, params) of this project.

Import reads ``config.json`` plus ``model.safetensors`` (or a sharded ``model.safetensors.index.json``), the format
the Cerebras-GPT repositories publish (``model_type: gpt2``). Cerebras' muP checkpoints (Cerebras-GPT-Intermediate
``*_muP``) use BTLM's config (``model_type: btlm``) on the same GPT-2 tensor names, with ``mup_embeddings_scale``
(embedding output multiplier), ``mup_scale_qk_dot_by_d`` (1/d_head attention) and ``mup_output_alpha *
mup_width_scale`` (logit multiplier, 1/m_w); those map onto this project's muP exactly and are imported too.

Everything our model cannot represent is refused with the field or tensor named, never approximated: GPT-2's tanh
``gelu_new`` (our model is exact-erf GELU, as Cerebras-GPT is), untied LM heads, attention scaled by layer index,
ALiBi, extra tensors (e.g. SwiGLU's ``c_fc2``). Pickled ``pytorch_model.bin`` files can run code when unpickled, so
they are read only when the caller passes ``allow_pickle=True`` (and then with ``torch.load(weights_only=True)``).

Export writes what ``transformers`` expects of a hub model: ``config.json``, ``model.safetensors`` (sharded with an
index above a size limit, as ``save_pretrained`` does), ``generation_config.json`` and the tokenizer files
(model/hf_files.py); ``AutoModelForCausalLM`` loads it with the same logits and ``AutoTokenizer`` with GPT-2's ids. A muP model has no GPT-2 equivalent with tied embeddings, so its multipliers are folded into the weights
(token/position embeddings x multiplier, query x 1/sqrt(d_head), an untied ``lm_head`` = wte / m_w); that export
loads in transformers with the same logits but cannot be imported back (untied head) — keep the Orbax checkpoint.

GPT-2's Conv1D stores weights (in, out), as our kernels are, so the mapping is reshapes and a stack over layers.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from model.config import EOT_TOKEN, PRESETS, GPTConfig, ModelConfigError, build_config, matching_preset
from model.errors import first_line
from model.hf_files import DEFAULT_MAX_SHARD_SIZE

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
PICKLE, PICKLE_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
# Non-parameter buffers older transformers versions saved (the causal mask); they carry no weights.
_BUFFERS = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)$")
# config.json fields of Cerebras' muP (BTLM) configs; model_type 'gpt2' ignores them, so they must not appear there.
_MUP_FIELDS = ("mup_width_scale", "mup_embeddings_scale", "mup_output_alpha", "mup_scale_qk_dot_by_d")


class HFFormatError(ModelConfigError):
    """A HuggingFace directory that cannot be imported as asked (missing file, wrong field or tensor)."""


# ----------------------------------------------------------------------------------------------------------------
# config.json <-> GPTConfig


def config_from_hf(hf: dict, name: str = "hf") -> GPTConfig:
    """GPTConfig for a HF GPT-2 (or Cerebras BTLM-muP) ``config.json`` dict; refuses what our model cannot run."""
    model_type = hf.get("model_type")
    if model_type not in ("gpt2", "btlm"):
        raise HFFormatError(f"config.json model_type is {model_type!r}; only 'gpt2' (and Cerebras muP 'btlm') checkpoints can be imported")

    def need(field, ok, want):
        if field in hf and not ok(hf[field]):
            raise HFFormatError(f"config.json {field} is {hf[field]!r}; this model needs {want}")

    # GPT2Config's default activation is gelu_new (tanh), so a missing field means gelu_new: refuse it too.
    act = hf.get("activation_function", "gelu_new")
    if act != "gelu":
        raise HFFormatError(f"config.json activation_function is {act!r}; only exact 'gelu' is supported "
                            "(Cerebras-GPT uses it; GPT-2's tanh 'gelu_new' would change the logits)")
    need("scale_attn_weights", lambda v: v is True, "true")
    need("scale_attn_by_inverse_layer_idx", lambda v: not v, "false")
    need("add_cross_attention", lambda v: not v, "false")
    need("tie_word_embeddings", lambda v: v is True, "true (tied input/output embeddings)")
    need("position_embedding_type", lambda v: v in (None, "learned"), "'learned' position embeddings")
    need("use_alibi", lambda v: not v, "false")
    for field in ("n_embd", "n_layer", "n_head"):
        if not isinstance(hf.get(field), int) or hf[field] <= 0:
            raise HFFormatError(f"config.json {field} is {hf.get(field)!r}; a positive integer is required")
    d, n_head = hf["n_embd"], hf["n_head"]
    if d % n_head:
        raise HFFormatError(f"config.json n_head {n_head} does not divide n_embd {d}")
    fields = dict(
        name=name, vocab_size=hf.get("vocab_size", 50257), max_seq_len=hf.get("n_positions", hf.get("n_ctx", 1024)),
        n_layers=hf["n_layer"], d_model=d, n_heads=n_head, d_head=d // n_head, d_ffn=hf.get("n_inner") or 4 * d,
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
    )
    fields.update(_mup_fields(hf, d))
    if "initializer_range" in hf:
        fields["init_std"] = hf["initializer_range"]
    preset = matching_preset(fields)
    if preset is not None:  # a published shape: keep its training recipe (batch, LR, decay) as defaults
        fields = {**PRESETS[preset], **fields, "name": name}
    try:
        return build_config(fields)
    except ModelConfigError as err:
        raise HFFormatError(f"config.json does not describe a valid model: {err}") from None


def _mup_fields(hf: dict, d_model: int) -> dict:
    present = [f for f in _MUP_FIELDS if f in hf]
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


def config_to_hf(cfg: GPTConfig, tied: bool = True) -> dict:
    """The GPT-2 ``config.json`` of a model: exact GELU, no dropout, tied embeddings unless muP is folded in."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_seq_len,
        "n_ctx": cfg.max_seq_len,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.d_ffn,
        "activation_function": "gelu",
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": tied,
        "initializer_range": cfg.init_std,
        "bos_token_id": EOT_TOKEN if EOT_TOKEN < cfg.vocab_size else None,  # GPT-2 BPE's <|endoftext|>
        "eos_token_id": EOT_TOKEN if EOT_TOKEN < cfg.vocab_size else None,
        "torch_dtype": "float32",
        "use_cache": True,
    }


# ----------------------------------------------------------------------------------------------------------------
# Tensor names: ours (stacked) <-> HF (per layer)


def _layer_map(cfg: GPTConfig) -> list[tuple[tuple[str, ...], str, tuple[int, ...]]]:
    """(our path inside params['blocks'], HF suffix after 'h.{i}.', HF shape) for every per-layer tensor."""
    d, f, H, D = cfg.d_model, cfg.d_ffn, cfg.n_heads, cfg.d_head
    return [
        (("ln_1", "scale"), "ln_1.weight", (d,)),
        (("ln_1", "bias"), "ln_1.bias", (d,)),
        (("attn", "c_attn", "kernel"), "attn.c_attn.weight", (d, 3 * d)),  # columns q | k | v, heads contiguous
        (("attn", "c_attn", "bias"), "attn.c_attn.bias", (3 * d,)),
        (("attn", "c_proj", "kernel"), "attn.c_proj.weight", (H * D, d)),  # rows = heads concatenated
        (("attn", "c_proj", "bias"), "attn.c_proj.bias", (d,)),
        (("ln_2", "scale"), "ln_2.weight", (d,)),
        (("ln_2", "bias"), "ln_2.bias", (d,)),
        (("mlp", "c_fc", "kernel"), "mlp.c_fc.weight", (d, f)),
        (("mlp", "c_fc", "bias"), "mlp.c_fc.bias", (f,)),
        (("mlp", "c_proj", "kernel"), "mlp.c_proj.weight", (f, d)),
        (("mlp", "c_proj", "bias"), "mlp.c_proj.bias", (d,)),
    ]


def _top_map(cfg: GPTConfig) -> list[tuple[tuple[str, ...], str, tuple[int, ...]]]:
    d = cfg.d_model
    return [
        (("wte",), "wte.weight", (cfg.vocab_size, d)),
        (("wpe",), "wpe.weight", (cfg.max_seq_len, d)),
        (("ln_f", "scale"), "ln_f.weight", (d,)),
        (("ln_f", "bias"), "ln_f.bias", (d,)),
    ]


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _get(tree: dict, path: tuple[str, ...]):
    for k in path:
        tree = tree[k]
    return tree


# ----------------------------------------------------------------------------------------------------------------
# Import


def load_hf(path: str | Path, allow_pickle: bool = False) -> tuple[GPTConfig, dict]:
    """(GPTConfig, float32 numpy params in our stacked layout) from a local HF GPT-2 directory."""
    path = Path(path)
    if not path.is_dir():
        raise HFFormatError(f"HuggingFace directory '{path}' does not exist; give a directory with config.json and model.safetensors")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise HFFormatError(f"'{path}' has no config.json; give a HuggingFace GPT-2 model directory")
    try:
        hf = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HFFormatError(f"{config_file} is not valid JSON ({err})") from None
    if not isinstance(hf, dict):
        raise HFFormatError(f"{config_file} must hold a JSON object")
    cfg = config_from_hf(hf, name=path.resolve().name)
    tensors = read_tensors(path, allow_pickle)
    return cfg, params_from_hf(cfg, tensors)


def params_from_hf(cfg: GPTConfig, tensors: dict[str, np.ndarray]) -> dict:
    """Map HF tensor names to our stacked params; every tensor must be used, present and of the right shape."""
    from model.gpt import check_params

    prefix = "transformer." if "transformer.wte.weight" in tensors else ""
    if prefix + "wte.weight" not in tensors:
        raise HFFormatError("tensor 'transformer.wte.weight' is missing; is this a GPT-2 checkpoint?")
    used = set()

    def take(name: str, shape: tuple[int, ...]) -> np.ndarray:
        full = prefix + name
        if full not in tensors:
            raise HFFormatError(f"tensor '{full}' is missing")
        value = tensors[full]
        if tuple(value.shape) != shape:
            raise HFFormatError(f"tensor '{full}' has shape {tuple(value.shape)}, config.json implies {shape}")
        used.add(full)
        return np.asarray(value, dtype=np.float32)

    L, d, H, D = cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head
    ours = {("attn", "c_attn", "kernel"): (d, 3, H, D), ("attn", "c_attn", "bias"): (3, H, D),
            ("attn", "c_proj", "kernel"): (H, D, d)}
    params: dict = {}
    for our, hf_name, hf_shape in _top_map(cfg):
        _set(params, our, take(hf_name, hf_shape))
    for our, suffix, hf_shape in _layer_map(cfg):
        layers = [take(f"h.{i}.{suffix}", hf_shape) for i in range(L)]
        stacked = np.stack(layers)
        _set(params, ("blocks",) + our, stacked.reshape((L,) + ours.get(our, hf_shape)))
    for name, value in tensors.items():
        if name in used or _BUFFERS.search(name):
            continue
        if name == "lm_head.weight":
            if value.shape != params["wte"].shape or not np.array_equal(np.asarray(value, np.float32), params["wte"]):
                raise HFFormatError("tensor 'lm_head.weight' differs from the token embedding; this model needs tied embeddings")
            continue
        layer = re.match(rf"{re.escape(prefix)}h\.(\d+)\.", name)
        if layer and int(layer.group(1)) >= L:
            raise HFFormatError(f"tensor '{name}' is beyond config.json n_layer {L}")
        raise HFFormatError(f"unexpected tensor '{name}'; this model has no such parameter")
    try:
        check_params(cfg, params)
    except ValueError as err:  # defensive: the mapping above should already have caught it
        raise HFFormatError(str(err)) from None
    return params


def read_tensors(path: Path, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """All tensors of a HF directory (single or sharded safetensors; pickled .bin only with ``allow_pickle``)."""
    if (path / SAFETENSORS).is_file():
        return _read_safetensors(path / SAFETENSORS)
    if (path / SAFETENSORS_INDEX).is_file():
        out = {}
        for shard in _shards(path / SAFETENSORS_INDEX):
            out.update(_read_safetensors(path / shard))
        return out
    pickled = [p for p in (path / PICKLE, path / PICKLE_INDEX) if p.is_file()]
    if pickled and not allow_pickle:
        raise HFFormatError(f"'{path}' holds only pickled {pickled[0].name}, which can run code when loaded; pass "
                            "--allow-pickle (allow_pickle=True) if you trust it, or convert it to model.safetensors")
    if (path / PICKLE).is_file():
        return _read_pickle(path / PICKLE)
    if (path / PICKLE_INDEX).is_file():
        out = {}
        for shard in _shards(path / PICKLE_INDEX):
            out.update(_read_pickle(path / shard))
        return out
    raise HFFormatError(f"'{path}' has no {SAFETENSORS}; give a HuggingFace directory with its weights")


def _shards(index: Path) -> list[str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return sorted(set(weight_map.values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise HFFormatError(f"{index} is not a valid shard index ({type(err).__name__}: {err})") from None


def _read_safetensors(file: Path) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    if not file.is_file():
        raise HFFormatError(f"weights file '{file}' is missing")
    try:
        with safe_open(str(file), framework="numpy") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # noqa: BLE001 - any failure here means a corrupt or foreign file
        first = first_line(err)
        raise HFFormatError(f"'{file}' is not a valid safetensors file ({first}); re-download or re-export it") from None


def _read_pickle(file: Path) -> dict[str, np.ndarray]:
    import torch  # only when the user explicitly allowed pickle; weights_only still refuses arbitrary objects

    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        first = first_line(err)
        raise HFFormatError(f"'{file}' could not be read as a PyTorch state dict ({first})") from None
    return {k: v.detach().float().numpy() for k, v in state.items() if hasattr(v, "detach")}


# ----------------------------------------------------------------------------------------------------------------
# Export


def params_to_hf(cfg: GPTConfig, params: dict) -> dict[str, np.ndarray]:
    """Our params -> HF GPT-2 tensor dict (``transformer.*``; ``lm_head.weight`` only when muP is folded in)."""
    L = cfg.n_layers
    get = lambda path: np.asarray(_get(params, path), dtype=np.float32)  # noqa: E731
    out = {}
    for our, hf_name, hf_shape in _top_map(cfg):
        out["transformer." + hf_name] = get(our).reshape(hf_shape)
    for our, suffix, hf_shape in _layer_map(cfg):
        stacked = get(("blocks",) + our)
        for i in range(L):
            out[f"transformer.h.{i}.{suffix}"] = stacked[i].reshape(hf_shape)
    if cfg.mup:
        # Fold the muP multipliers into weights GPT-2 understands (see module docstring).
        wte = out["transformer.wte.weight"]
        out["lm_head.weight"] = wte / cfg.width_multiplier
        out["transformer.wte.weight"] = wte * cfg.mup_embedding_multiplier
        out["transformer.wpe.weight"] = out["transformer.wpe.weight"] * cfg.mup_embedding_multiplier
        q_fold = 1.0 / math.sqrt(cfg.d_head)  # GPT-2 divides by sqrt(d_head); muP wants d_head
        d = cfg.d_model
        for i in range(L):
            w, b = out[f"transformer.h.{i}.attn.c_attn.weight"].copy(), out[f"transformer.h.{i}.attn.c_attn.bias"].copy()
            w[:, :d] *= q_fold
            b[:d] *= q_fold
            out[f"transformer.h.{i}.attn.c_attn.weight"], out[f"transformer.h.{i}.attn.c_attn.bias"] = w, b
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def save_hf(directory: str | Path, cfg: GPTConfig, params: dict, *, max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
            tokenizer: str | Path | None = None) -> dict:
    """Write a directory ``transformers`` loads as it loads the hub's Cerebras-GPT: ``config.json``, float32 weights
    (``model.safetensors``, or shards of at most ``max_shard_size`` -- "5GB", "500MB", bytes -- with
    ``model.safetensors.index.json``), ``generation_config.json`` and the tokenizer files: ``tokenizer`` (a
    tokenizer.json file or a directory holding one) or, by default, GPT-2's when the vocabulary holds its 50257 ids
    (a smaller vocabulary gets no tokenizer files). Written into a hidden sibling and renamed into place, so a failure
    leaves nothing behind. Returns ``{"files": [...], "shards": n, "tokenizer": "gpt2" | path | None}``.

    Raises HFFormatError for a non-empty ``directory``, ModelConfigError for a bad size, TokenizerError for a
    tokenizer without ``<|endoftext|>`` or with more ids than the model."""
    import shutil
    import uuid

    from model import hf_files
    from model.tokenizer import GPT2_VOCAB_SIZE, get_tokenizer, tokenizer_json_path

    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise HFFormatError(f"output directory '{directory}' is not empty; choose a new --out directory")
    max_bytes = hf_files.parse_size(max_shard_size)
    tok = None
    if tokenizer is not None or cfg.vocab_size >= GPT2_VOCAB_SIZE:
        tok = get_tokenizer(tokenizer)
        tok.check_model_vocab(cfg.vocab_size, f"model {cfg.name}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = hf_files.write_weights(tmp, params_to_hf(cfg, params), max_bytes)
        hf = config_to_hf(cfg, tied=not cfg.mup)
        if tok is not None:
            hf["bos_token_id"] = hf["eos_token_id"] = tok.eot_id
            source = None if tokenizer is None else tokenizer_json_path(tokenizer)
            files += hf_files.write_tokenizer(tmp, cfg.max_seq_len, source)
        files.append(hf_files.write_generation_config(tmp, hf["eos_token_id"]))
        (tmp / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
        if directory.is_dir():
            directory.rmdir()
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shards = sum(f.endswith(".safetensors") for f in files)
    return {"files": ["config.json"] + files, "shards": shards,
            "tokenizer": None if tok is None else ("gpt2" if tokenizer is None else str(tokenizer))}

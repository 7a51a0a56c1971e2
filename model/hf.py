"""HuggingFace interop: a local HF model directory <-> (GPTConfig, params) of this project, for GPT2LMHeadModel
(Cerebras-GPT), LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM and GPTJForCausalLM.

Import reads ``config.json`` (model/hf_configs.py: which fields map where, and what is refused) plus the weights
(model/hf_files.py: ``model.safetensors``, sharded safetensors, bfloat16 included; pickled ``pytorch_model.bin`` only
with ``allow_pickle=True``), and maps every tensor by its architecture's rule table (model/hf_tensors.py); every
tensor must be used, present and of the right shape. Cerebras' muP checkpoints (Cerebras-GPT-Intermediate ``*_muP``)
use BTLM's config (``model_type: btlm``) on GPT-2's tensor names, with ``mup_embeddings_scale``,
``mup_scale_qk_dot_by_d`` and ``mup_output_alpha * mup_width_scale`` (1/m_w); those map onto this project's muP exactly.

Export writes what ``transformers`` expects of a hub model: ``config.json``, ``model.safetensors`` (sharded with an
index above a size limit, as ``save_pretrained`` does), ``generation_config.json`` and the tokenizer files;
``AutoModelForCausalLM`` loads it with the same logits. The architecture is the one the model's fields describe
(hf_configs.export_architecture), or the one asked for when it can hold the model. A muP model has no GPT-2
equivalent with tied embeddings, so its multipliers are folded into the weights (token/position embeddings x
multiplier, query x 1/sqrt(d_head), an untied ``lm_head`` = wte / m_w); that export loads in transformers with the
same logits and imports back as an untied standard-parametrisation model (keep the Orbax checkpoint to resume muP).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from model.config import GPTConfig
from model.errors import HFFormatError
from model.hf_configs import EXPORTS, config_from_hf, config_to_hf, export_architecture, read_hf_config
from model.hf_files import DEFAULT_MAX_SHARD_SIZE, read_tensors
from model.hf_tensors import FAMILIES, hf_shape, rope_permutation, rules, slice_shape, to_hf, to_ours

__all__ = ["HFFormatError", "config_from_hf", "config_to_hf", "export_architecture", "load_hf", "params_from_hf",
           "params_to_hf", "read_tensors", "save_hf"]

# Non-parameter buffers older transformers versions saved (causal masks, RoPE frequencies); they carry no weights.
_BUFFERS = re.compile(r"(?:h|layers)\.\d+\.(?:attn|self_attn)\.(?:bias|masked_bias|rotary_emb\.inv_freq)$")


def load_hf(path: str | Path, allow_pickle: bool = False) -> tuple[GPTConfig, dict]:
    """(GPTConfig, float32 numpy params in our stacked layout) from a local HF directory of a supported
    architecture. Raises HFFormatError naming the file, field or tensor that cannot be imported."""
    path = Path(path)
    cfg, hf = read_hf_config(path)
    return cfg, params_from_hf(cfg, read_tensors(path, allow_pickle), hf["model_type"])


def _node(tree: dict, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def params_from_hf(cfg: GPTConfig, tensors: dict[str, np.ndarray], model_type: str = "gpt2") -> dict:
    """Map HF tensor names of ``model_type`` to our stacked params; every tensor must be used, present and of the
    right shape (HFFormatError names the first that is not)."""
    from model.params import check_params, param_shapes

    _, body, _ = FAMILIES[model_type]
    table = rules(cfg, model_type)
    first = table[0].name  # the token embedding
    prefix = body if body + first in tensors else ""  # base-model checkpoints (GPT2Model, LlamaModel) have none
    if prefix + first not in tensors:
        raise HFFormatError(f"tensor '{body + first}' is missing; is this a {model_type} checkpoint?")
    params = _zeros(param_shapes(cfg))
    used: set[str] = set()

    def take(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in tensors:
            raise HFFormatError(f"tensor '{name}' is missing")
        value = tensors[name]
        if tuple(value.shape) != shape:
            raise HFFormatError(f"tensor '{name}' has shape {tuple(value.shape)}, config.json implies {shape}")
        used.add(name)
        return np.asarray(value, dtype=np.float32)

    for rule in table:
        ours, target = slice_shape(cfg, rule), _node(params["blocks"] if rule.per_layer else params, rule.path)
        for i in range(cfg.n_layers) if rule.per_layer else (None,):
            index = ((i,) if rule.per_layer else ()) + rule.index
            target[index] = to_ours(rule, take(prefix + rule.name.format(i=i), hf_shape(rule, ours)), ours)
    _take_head(cfg, params, tensors, take)
    for name in tensors:
        if name not in used and not _BUFFERS.search(name):
            layer = re.match(rf"{re.escape(prefix)}(?:h|layers)\.(\d+)\.", name)
            if layer and int(layer.group(1)) >= cfg.n_layers:
                raise HFFormatError(f"tensor '{name}' is beyond config.json n_layer/num_hidden_layers ({cfg.n_layers})")
            raise HFFormatError(f"unexpected tensor '{name}'; this model has no such parameter")
    try:
        check_params(cfg, params)
    except ValueError as err:  # defensive: the mapping above should already have caught it
        raise HFFormatError(str(err)) from None
    return params


def _zeros(shapes):
    if isinstance(shapes, dict):
        return {k: _zeros(v) for k, v in shapes.items()}
    return np.zeros(shapes, np.float32)


def _take_head(cfg: GPTConfig, params: dict, tensors: dict, take) -> None:
    """The LM head: an untied ``lm_head.weight``, a tied one equal to the embedding (or absent), its bias."""
    V, d = cfg.vocab_size, cfg.d_model
    if not cfg.tied_embeddings:
        if "lm_head.weight" not in tensors:
            raise HFFormatError("tensor 'lm_head.weight' is missing; config.json tie_word_embeddings is false, so the "
                                "head is its own matrix")
        params["lm_head"]["weight"] = take("lm_head.weight", (V, d))
    elif "lm_head.weight" in tensors:
        value = tensors["lm_head.weight"]
        if value.shape != params["wte"].shape or not np.array_equal(np.asarray(value, np.float32), params["wte"]):
            raise HFFormatError("tensor 'lm_head.weight' differs from the token embedding, but config.json "
                                "tie_word_embeddings is true (tied input/output embeddings)")
        take("lm_head.weight", (V, d))
    if cfg.lm_head_bias:
        params["lm_head"]["bias"] = take("lm_head.bias", (V,))


# ----------------------------------------------------------------------------------------------------------------
# Export


def params_to_hf(cfg: GPTConfig, params: dict, architecture: str | None = None) -> dict[str, np.ndarray]:
    """Our params -> the HF tensor dict of ``architecture`` (default: export_architecture's choice), float32.
    Raises HFFormatError when the architecture cannot hold the model."""
    arch = export_architecture(cfg, architecture)
    model_type = EXPORTS[arch]
    _, prefix, style = FAMILIES[model_type]
    perm = rope_permutation(cfg, style)
    out, cache = {}, {}
    for rule in rules(cfg, model_type):
        src = params["blocks"] if rule.per_layer else params
        key = (rule.per_layer,) + rule.path
        if key not in cache:
            cache[key] = np.asarray(_node(src, rule.path), dtype=np.float32)
        full = cache[key]
        for i in range(cfg.n_layers) if rule.per_layer else (None,):
            index = ((i,) if rule.per_layer else ()) + rule.index
            out[prefix + rule.name.format(i=i)] = to_hf(rule, full[index] if index else full, perm)
    if not cfg.tied_embeddings:
        out["lm_head.weight"] = np.asarray(params["lm_head"]["weight"], np.float32)
    if cfg.lm_head_bias:
        out["lm_head.bias"] = np.asarray(params["lm_head"]["bias"], np.float32)
    elif arch == "GPTJForCausalLM":  # transformers' GPT-J head always has a bias
        out["lm_head.bias"] = np.zeros(cfg.vocab_size, np.float32)
    if cfg.mup:
        _fold_mup(cfg, out)
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _fold_mup(cfg: GPTConfig, out: dict) -> None:
    """Fold the muP multipliers into weights GPT-2 understands (see module docstring)."""
    wte = out["transformer.wte.weight"]
    out["lm_head.weight"] = wte / cfg.width_multiplier
    out["transformer.wte.weight"] = wte * cfg.mup_embedding_multiplier
    out["transformer.wpe.weight"] = out["transformer.wpe.weight"] * cfg.mup_embedding_multiplier
    q_fold = 1.0 / math.sqrt(cfg.d_head)  # GPT-2 divides by sqrt(d_head); muP wants d_head
    d = cfg.d_model
    for i in range(cfg.n_layers):
        w, b = out[f"transformer.h.{i}.attn.c_attn.weight"].copy(), out[f"transformer.h.{i}.attn.c_attn.bias"].copy()
        w[:, :d] *= q_fold
        b[:d] *= q_fold
        out[f"transformer.h.{i}.attn.c_attn.weight"], out[f"transformer.h.{i}.attn.c_attn.bias"] = w, b


def save_hf(directory: str | Path, cfg: GPTConfig, params: dict, *, max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
            tokenizer: str | Path | None = None, architecture: str | None = None, staged: bool = True) -> dict:
    """Write a directory ``transformers`` loads as it loads the hub's models: ``config.json`` of ``architecture``
    (default: the one the model's fields describe, see export_architecture), float32 weights (``model.safetensors``,
    or shards of at most ``max_shard_size`` -- "5GB", "500MB", bytes -- with ``model.safetensors.index.json``),
    ``generation_config.json`` and the tokenizer files: ``tokenizer`` (a tokenizer.json file or a directory holding
    one, copied with its tokenizer_config.json) or, by default, GPT-2's when the vocabulary holds its 50257 ids (a
    smaller vocabulary gets no tokenizer files). Written into a hidden sibling and renamed into place, so a failure
    leaves nothing behind (``staged=False``: straight into ``directory``, for a caller that stages it itself, e.g.
    `wse convert`, which holds the destination: runtime.platform.storage). Returns ``{"files": [...], "shards": n, "tokenizer": "gpt2" | path | None,
    "architecture": name}``.

    Raises HFFormatError for a non-empty ``directory`` or an architecture that cannot hold the model,
    ModelConfigError for a bad size, TokenizerError for a tokenizer without an end-of-text token or with more ids
    than the model."""
    import shutil
    import uuid

    from model import hf_files
    from model.tokenizer import GPT2_VOCAB_SIZE, get_tokenizer, tokenizer_json_path

    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise HFFormatError(f"output directory '{directory}' is not empty; choose a new --out directory")
    max_bytes = hf_files.parse_size(max_shard_size)
    hf = config_to_hf(cfg, tied=not cfg.mup, architecture=architecture)  # refuses before anything is written
    tok = None
    if tokenizer is not None or cfg.vocab_size >= GPT2_VOCAB_SIZE:
        tok = get_tokenizer(tokenizer)
        tok.check_model_vocab(cfg.vocab_size, f"model {cfg.name}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}" if staged else directory
    tmp.mkdir(exist_ok=not staged)
    try:
        files = hf_files.write_weights(tmp, params_to_hf(cfg, params, hf["architectures"][0]), max_bytes)
        if tok is not None:
            hf["eos_token_id"] = tok.eot_id
            hf["bos_token_id"] = tok.eot_id if tok.bos_id is None else tok.bos_id
            source = None if tokenizer is None else tokenizer_json_path(tokenizer)
            files += hf_files.write_tokenizer(tmp, cfg.max_seq_len, source, tok)
        files.append(hf_files.write_generation_config(tmp, hf["eos_token_id"], hf["bos_token_id"]))
        (tmp / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
        if staged:
            if directory.is_dir():
                directory.rmdir()
            tmp.rename(directory)
    except BaseException:
        if staged:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    shards = sum(f.endswith(".safetensors") for f in files)
    return {"files": ["config.json"] + files, "shards": shards, "architecture": hf["architectures"][0],
            "tokenizer": None if tok is None else ("gpt2" if tokenizer is None else str(tokenizer))}

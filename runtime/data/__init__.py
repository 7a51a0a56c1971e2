"""Training data: token datasets for pre-training, examples for fine-tuning, and the one loader both train with.

- ``inputs``: files checked and read (UTF-8 text, JSONL), one ``error:`` line for each bad input;
- ``tokenise``: text to token shards, in parallel;
- ``datasets``: ``build_dataset`` (`wse data`), the cached built-in corpus (``prepare_builtin``), ``TokenDataset``;
- ``examples``: fine-tuning examples (prompt/completion or text JSONL), tokenised and packed with their loss mask;
- ``loader``: ``Loader``, seeded batches whose position is derived from the training step;
- ``corpus``: the built-in python-docs corpus and task set, read from CPython's own files.

The names below are the package's public API; import them from ``runtime.data``.
"""

from runtime.data.datasets import (DEFAULT_SHARD_TOKENS, DEFAULT_VAL_FRACTION, FORMAT, FORMAT_VERSION, MIN_VAL_TOKENS,
                                   TokenDataset, build_dataset, cache_dir, prepare_builtin, unigram_entropy_nats)
from runtime.data.examples import (BUILTIN, Packed, builtin_task_files, holdout, pack, read_examples,
                                   resolve_examples, tokenize)
from runtime.data.inputs import InputFile, decode_text, jsonl_records, read_text
from runtime.data.loader import Loader
from runtime.data.tokenise import DTYPE, split_for_tokenization

__all__ = ["BUILTIN", "DEFAULT_SHARD_TOKENS", "DEFAULT_VAL_FRACTION", "DTYPE", "FORMAT", "FORMAT_VERSION", "InputFile",
           "Loader", "MIN_VAL_TOKENS", "Packed", "TokenDataset", "build_dataset", "builtin_task_files", "cache_dir",
           "decode_text", "holdout", "jsonl_records", "pack", "prepare_builtin", "read_examples", "read_text",
           "resolve_examples", "split_for_tokenization", "tokenize", "unigram_entropy_nats"]

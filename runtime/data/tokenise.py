"""Text to token shards: the parallel tokeniser and the shard writer behind `wse data` (runtime.data.datasets).

Tokenisation uses all cores (tiktoken's batch encoder releases the GIL): big files are cut where GPT-2's
pre-tokeniser would cut anyway, so the pieces' ids concatenate to the whole file's ids.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from runtime.data.inputs import InputFile, Inputs
from runtime.errors import UserError

DTYPE = np.uint16  # GPT-2's 50257 ids fit; half the bytes of int32
# Shard dtypes by vocabulary: up to 65,536 ids in uint16, larger vocabularies (Llama 3's 128,256, Qwen's 151,665) in
# uint32 (model.tokenizer.Tokenizer.token_dtype decides).
DTYPES = ("uint16", "uint32")
# Tokenisation work units: a batch of ~4M characters split into pieces of at most 256K characters, so both cores
# stay busy even on one big file, and memory stays bounded.
BATCH_CHARS = 4 << 20
PIECE_CHARS = 256 << 10


# A newline between an ASCII non-space character and an ASCII letter or digit: GPT-2's pre-tokeniser makes that
# newline a token of its own in every case, so encoding the text cut right after it gives the same ids as encoding
# it whole (the tests check this). Lets one big file be tokenised in parallel pieces.
_SAFE_CUT = re.compile(r"(?<=[!-~])\n(?=[A-Za-z0-9])")


def split_for_tokenization(text: str, max_chars: int = PIECE_CHARS) -> list[str]:
    """Cut ``text`` into pieces of about ``max_chars`` whose token ids, concatenated, equal those of the whole."""
    pieces, start = [], 0
    while len(text) - start > max_chars:
        cut = None
        for m in _SAFE_CUT.finditer(text, start + max_chars // 2, start + max_chars):
            cut = m.end()
        if cut is None:
            m = _SAFE_CUT.search(text, start + max_chars)
            if m is None:
                break
            cut = m.end()
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


class ShardWriter:
    """Appends one split's tokens to shard files of at most ``shard_tokens`` tokens, hashing as it goes."""

    def __init__(self, directory: Path, split: str, shard_tokens: int, dtype=DTYPE):
        self.directory, self.split, self.shard_tokens = directory, split, shard_tokens
        self.dtype = np.dtype(dtype)
        self.shards: list[dict] = []
        self.tokens = 0
        self.documents = 0
        self._file = None

    def _open(self):
        name = f"{self.split}_{len(self.shards):05d}.bin"
        self._file = open(self.directory / name, "wb")
        self._hash = hashlib.sha256()
        self.shards.append({"file": name, "tokens": 0, "sha256": ""})

    def write(self, ids: np.ndarray) -> None:
        while ids.size:
            if self._file is None or self.shards[-1]["tokens"] == self.shard_tokens:
                self.close()
                self._open()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            part, ids = ids[:room], ids[room:]
            raw = part.astype(self.dtype, copy=False).tobytes()
            self._file.write(raw)
            self._hash.update(raw)
            self.shards[-1]["tokens"] += int(part.size)
            self.tokens += int(part.size)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self.shards[-1]["sha256"] = self._hash.hexdigest()
            self._file = None


def val_documents(n_docs: int, val_fraction: float, seed: int) -> set[int]:
    """Indices of the validation documents: round(f * n) of them (at least one when f > 0), chosen by a seeded hash
    of each index, so the choice never depends on a library's random-number stream."""
    if val_fraction <= 0:
        return set()
    if n_docs < 2:  # one document is cut in two by size before this (build_dataset, runtime.data.datasets)
        raise UserError(f"a validation split needs at least 2 documents, the inputs hold {n_docs}; add documents or pass --val-fraction 0")
    n_val = min(max(1, round(val_fraction * n_docs)), n_docs - 1)
    ranked = sorted(range(n_docs), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
    return set(ranked[:n_val])


def progress_bar(total_chars: int, enabled: bool):
    """A rich progress bar on stderr (characters done, tokens so far, tokens/s), or a no-op."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class TokensPerSecond(ProgressColumn):
        def render(self, task):
            tokens = task.fields.get("tokens", 0)
            rate = tokens / task.elapsed if task.elapsed else 0.0
            return Text(f"{tokens:,} tokens  {rate / 1e6:.2f}M tok/s")

    progress = Progress(TextColumn("tokenising"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TokensPerSecond(),
                        TimeElapsedColumn(), console=Console(stderr=True), transient=False)
    progress.add_task("tokenise", total=max(total_chars, 1), tokens=0)
    return progress


def tokenise_into(tmp: Path, inputs: Inputs, scanned: list[InputFile], tokenizer, val_docs: set[int], shard_tokens: int,
                   num_threads: int | None, progress) -> dict[str, ShardWriter]:
    """Every document's ids into train/val shards of the tokenizer's dtype: the ids the tokenizer puts first
    (``start_ids``: Llama's begin-of-sequence id), then the document, then the end-of-text id. Long documents are cut into pieces
    tokenised in parallel only under GPT-2's vocabulary, whose pre-tokeniser makes the cut points safe
    (split_for_tokenization); another tokenizer (a SentencePiece one prepends a space marker to every piece) sees
    each document whole."""
    dtype = np.dtype(tokenizer.token_dtype)
    writers = {split: ShardWriter(tmp, split, shard_tokens, dtype) for split in ("train", "val")}
    eot = np.array([tokenizer.eot_id], dtype=dtype)
    bos = np.array(tokenizer.start_ids, dtype=dtype) if tokenizer.start_ids else None
    cut = split_for_tokenization if tokenizer.name == "gpt2" else (lambda doc: [doc])
    batch: list[tuple[str, str, bool, bool]] = []  # (split, piece, starts a document, ends a document)
    batch_chars = 0

    def flush():
        nonlocal batch, batch_chars
        ids = tokenizer.encode_batch([piece for _, piece, _, _ in batch], num_threads=num_threads)
        for (split, piece, first, last), piece_ids in zip(batch, ids):
            if first and bos is not None:
                writers[split].write(bos)
            writers[split].write(np.asarray(piece_ids, dtype=dtype))
            if last:
                writers[split].write(eot)
                writers[split].documents += 1
        if progress is not None:
            task = progress.tasks[0]
            progress.update(task.id, advance=batch_chars, tokens=writers["train"].tokens + writers["val"].tokens)
        batch, batch_chars = [], 0

    index = 0
    for (source, docs), expected in zip(inputs.read(), scanned):
        if source.sha256 != expected.sha256:
            raise UserError(f"{source.name} changed while it was being tokenised; run wse data again")
        for doc in docs:
            split = "val" if index in val_docs else "train"
            pieces = cut(doc)
            for k, piece in enumerate(pieces):
                batch.append((split, piece, k == 0, k == len(pieces) - 1))
                batch_chars += len(piece)
            index += 1
            if batch_chars >= BATCH_CHARS:
                flush()
    if batch:
        flush()
    for w in writers.values():
        w.close()
    return writers

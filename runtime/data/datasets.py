"""Token datasets: `wse data` builds them, ``TokenDataset`` reads them.

A dataset is a directory::

    meta.json            tokenizer, dtype, token and document counts per split, sources with sha256, shards
    train_00000.bin ...  raw uint16 tokens (uint32 for vocabularies above 65,536 ids; np.memmap-able): each
    val_00000.bin ...    document's tokens followed by its end-of-text id (and preceded by the ids the
                         tokenizer puts first, its ``start_ids``: Llama's begin-of-sequence id)

Building (``build_dataset``, ``wse data``) validates every input before writing anything (runtime.data.inputs),
tokenises with all cores (runtime.data.tokenise), writes into a hidden sibling directory and renames it into place
(runtime.platform.storage), so a failure never leaves half a dataset and never touches an existing one. Output
policy: a missing or empty ``--out`` is created; one that already holds this very dataset (same tokenizer, inputs,
split) is reused untouched; one holding a different dataset is refused unless ``overwrite=True``; a non-empty
directory that is not a dataset is always refused. The hidden sibling is held while its writer lives: a second
``wse data`` on the same ``--out`` is refused at once (or waits, for the built-in corpus cache), one that finishes
second never replaces the first's dataset without ``overwrite``, a temporary a killed writer left is removed by the
next run, and a full or read-only disk is one line naming ``--out``, the free space and the size needed.

Reading: ``TokenDataset`` maps one split's shards as one token stream (runtime.data.loader cuts it into windows).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from runtime.data.inputs import InputFile, Inputs
from runtime.platform.storage import (Finished, Temporary, clean_stale, install, live_writer, wait_for_writers,
                                      writing)
from runtime.data.tables import DEFAULT_TEXT_COLUMN
from runtime.data.tokenise import DTYPES, progress_bar, tokenise_into, val_documents
from runtime.errors import UserError

FORMAT = "wse-tokens"
FORMAT_VERSION = 1
DEFAULT_VAL_FRACTION = 0.05
# A validation split below this many tokens earns a warning: it cannot fill one batch of 8 x 2048 (the published
# Cerebras-GPT context), so `wse train` at such a shape skips evaluation, and a loss over fewer tokens is noisy.
MIN_VAL_TOKENS = 8 * 2048 + 1
# 2^27 tokens = 256 MiB per shard: few files for large corpora, small enough to copy or checksum one at a time.
DEFAULT_SHARD_TOKENS = 1 << 27

# -------------------------------------------------------------------------------------------------------- building

def _fingerprint(tokenizer_name: str, sources: list[InputFile], val_fraction: float, seed: int, shard_tokens: int,
                 text_column: str = DEFAULT_TEXT_COLUMN) -> str:
    """Identity of a dataset: equal fingerprints mean byte-identical shards."""
    key = {"format": [FORMAT, FORMAT_VERSION], "tokenizer": tokenizer_name, "sources": [s.sha256 for s in sources],
           "val_fraction": val_fraction, "seed": seed, "shard_tokens": shard_tokens}
    if text_column != DEFAULT_TEXT_COLUMN:  # the default stays out, so datasets built before the option keep theirs
        key["text_column"] = text_column
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _read_meta(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _intact(directory: Path, meta: dict | None) -> bool:
    """Whether every shard that meta.json lists exists with the recorded size (cheap; checksums are in meta)."""
    if not meta or meta.get("format") != FORMAT:
        return False
    try:
        for split in meta["splits"].values():
            for shard in split["shards"]:
                if (directory / shard["file"]).stat().st_size != shard["tokens"] * np.dtype(meta["dtype"]).itemsize:
                    return False
    except (OSError, KeyError, TypeError):
        return False
    return True


def _check_out(out: Path) -> None:
    """Refuse outputs that would lose somebody's data, before any work is done."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory path for the dataset")
    if out.is_dir() and any(out.iterdir()) and not (out / "meta.json").is_file():
        raise UserError(f"--out {out} is a non-empty directory that is not a token dataset; give a new or empty directory")


def build_dataset(inputs: list[str], out: str | os.PathLike, *, builtin: str | None = None,
                  val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0, tokenizer: str | None = None,
                  overwrite: bool = False, shard_tokens: int = DEFAULT_SHARD_TOKENS, num_threads: int | None = None,
                  progress: bool = False, text_column: str = DEFAULT_TEXT_COLUMN, wait: bool = False) -> dict:
    """Tokenise ``inputs`` (files, directories, Parquet/Arrow files, save_to_disk directories, and/or a built-in
    corpus) into a dataset at ``out``; ``text_column`` names the documents' field in JSONL and tables. See module doc.
    ``wait``: when another process is writing ``out``, wait for it (then reuse its dataset if it is this one) instead
    of refusing.

    Returns a summary: token and document counts per split, throughput, and ``reused`` (True when ``out`` already
    held exactly this dataset and nothing was written).
    """
    from model.tokenizer import TokenizerError, get_tokenizer

    _check_settings(val_fraction, shard_tokens, num_threads)
    out = Path(out).expanduser()
    _check_out(out)
    _claim(out, wait)
    try:
        tok = get_tokenizer(tokenizer)
    except TokenizerError as err:
        raise UserError(str(err)) from None

    t0 = time.perf_counter()
    source_set = Inputs(list(inputs), builtin, text_column)
    scanned, total_chars = _scan(source_set)
    documents = sum(s.documents for s in scanned)
    if documents == 0:
        raise UserError(f"the inputs hold no readable text ({source_set.note()}); give UTF-8 text files")
    if documents == 1 and val_fraction > 0:
        # one document (one text file): its last val_fraction, by size, is the validation split (runtime.data.inputs.split_tail)
        source_set.split_tail = val_fraction
        val_docs = {1}
    else:
        val_docs = val_documents(documents, val_fraction, seed)
    fingerprint = _fingerprint(tok.name, scanned, val_fraction, seed, shard_tokens, text_column)

    existing = _read_meta(out) if out.is_dir() else None
    if existing is not None and existing.get("fingerprint") == fingerprint and _intact(out, existing):
        return _summary(out, existing, reused=True, seconds=time.perf_counter() - t0, inputs=source_set)
    if (out / "meta.json").is_file() and not overwrite:
        what = "a damaged copy of this dataset" if existing and existing.get("fingerprint") == fingerprint else "a different dataset"
        raise UserError(f"--out {out} already holds {what}; pass --overwrite to replace it or choose another directory")

    try:
        meta, tokenise_seconds = _write(out, source_set, scanned, tok, val_docs, progress=progress,
                                        num_threads=num_threads, overwrite=overwrite, total_chars=total_chars,
                                        key={"fingerprint": fingerprint, "val_fraction": val_fraction, "seed": seed,
                                             "shard_tokens": shard_tokens, "text_column": text_column})
    except Finished:  # another process finished --out while this one tokenised: keep theirs
        theirs = _read_meta(out)
        if theirs is None or theirs.get("fingerprint") != fingerprint or not _intact(out, theirs):
            raise UserError(f"--out {out} was written by another process while this one ran; pass --overwrite to "
                            "replace it or choose another directory") from None
        return _summary(out, theirs, reused=True, seconds=time.perf_counter() - t0, inputs=source_set)
    return _summary(out, meta, reused=False, seconds=time.perf_counter() - t0, inputs=source_set,
                    tokenise_seconds=tokenise_seconds)


def _check_settings(val_fraction: float, shard_tokens: int, num_threads: int | None) -> None:
    """Refuse (UserError) a setting out of range before any input is read."""
    if not 0 <= val_fraction < 1:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction}; 0.05 holds out 5% of the documents")
    if shard_tokens < 1:
        raise UserError(f"--shard-tokens must be positive, got {shard_tokens}")
    if num_threads is not None and num_threads < 1:
        raise UserError(f"--threads must be at least 1, got {num_threads}")


def _scan(source_set: Inputs) -> tuple[list[InputFile], int]:
    """Every input's description and the characters of all documents: reads (and so validates) every input before
    anything is written."""
    scanned, total_chars = [], 0
    for source, docs in source_set.read():
        scanned.append(source)
        total_chars += sum(len(d) for d in docs)
    return scanned, total_chars


def _claim(out: Path, wait: bool) -> None:
    """Refuse (or, with ``wait``, wait for) another live writer of ``out``; remove what a killed one left."""
    pid = live_writer(out)
    if pid is not None and not wait:
        raise UserError(f"--out {out} is being written by another process (pid {pid}) right now; wait for it to "
                        "finish (then run this again to reuse or --overwrite its dataset) or choose another --out")
    if pid is not None:
        wait_for_writers(out)
    clean_stale(out)


def _write(out: Path, source_set: Inputs, scanned: list[InputFile], tok, val_docs: set[int], *, progress: bool,
           num_threads: int | None, key: dict, total_chars: int, overwrite: bool) -> tuple[dict, float]:
    """Tokenise into a held hidden sibling of ``out``, write meta.json, move it into place: (meta, tokenising
    seconds). Finished when another process completed ``out`` meanwhile (and ``overwrite`` is off)."""
    # about 4 characters per GPT-2 token, 2 bytes per token: what a full disk is told the dataset needs
    with writing(out, total_chars // 2, what="writing the dataset", fix="free space or choose another --out",
                 readonly_fix="choose a writable --out"):
        out.parent.mkdir(parents=True, exist_ok=True)
        with Temporary(out, directory=True) as tmp:
            meta, seconds = _tokenise_into(tmp.path, source_set, scanned, tok, val_docs, progress=progress,
                                           num_threads=num_threads, key=key, total_chars=total_chars)
            install(tmp.path, out, overwrite=overwrite)
    return meta, seconds


def _tokenise_into(tmp: Path, source_set: Inputs, scanned: list[InputFile], tok, val_docs: set[int], *,
                   progress: bool, num_threads: int | None, key: dict, total_chars: int) -> tuple[dict, float]:
    """The shards and meta.json of the dataset in ``tmp``: (meta, tokenising seconds)."""
    bar = progress_bar(total_chars, progress)
    if bar is not None:
        bar.start()
    t1 = time.perf_counter()
    try:
        writers = tokenise_into(tmp, source_set, scanned, tok, val_docs, key["shard_tokens"], num_threads, bar)
    finally:
        if bar is not None:
            bar.stop()
    tokenise_seconds = time.perf_counter() - t1
    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "fingerprint": key["fingerprint"],
        "tokenizer": {"name": tok.name, "backend": tok.backend, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id,
                      "start_ids": list(tok.start_ids)},
        "dtype": tok.token_dtype,
        "layout": ("start_ids, " if tok.start_ids else "") + "each document's tokens, then eot_id",
        "val_fraction": key["val_fraction"], "seed": key["seed"], "shard_tokens": key["shard_tokens"],
        "text_column": key["text_column"],
        "splits": {split: {"tokens": w.tokens, "documents": w.documents, "shards": w.shards} for split, w in writers.items()},
        "sources": [{k: v for k, v in asdict(s).items() if k != "skipped_rows" or v} for s in scanned],
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta, tokenise_seconds


def _summary(out: Path, meta: dict, *, reused: bool, seconds: float, inputs: Inputs, tokenise_seconds: float = 0.0) -> dict:
    """The command's result: ``seconds`` is the whole call; ``tokens_per_s`` the tokenise-and-write pass alone;
    ``notes``: the skipped files in one line, and how one document was split."""
    splits = meta["splits"]
    notes = [n for n in (inputs.note(),) if n]
    if inputs.split_tail is not None:
        notes.append(f"one document: its last {inputs.split_tail:.0%} by size, cut at a line break where it has one, "
                     "is the validation split (--val-fraction sets the share, 0 keeps it all for training)")
    tokens = sum(s["tokens"] for s in splits.values())
    warnings = []
    val = splits["val"]["tokens"]
    if meta.get("val_fraction", DEFAULT_VAL_FRACTION) > 0 and val < MIN_VAL_TOKENS:
        docs = splits["val"]["documents"]
        warnings.append(f"the validation split holds only {val:,} tokens ({docs} document{'' if docs == 1 else 's'}): "
                        f"under one batch at the training defaults (8 x 2048, {MIN_VAL_TOKENS:,} tokens), so a run at "
                        f"those shapes skips evaluation, and small shapes evaluate on few windows ({val // 129:,} of "
                        "128 tokens); raise --val-fraction or add documents")
    for source in meta["sources"]:
        if source.get("skipped_rows"):
            n = source["skipped_rows"]
            warnings.append(f"{source['name']}: skipped {n:,} empty row{'s' if n > 1 else ''} (not documents)")
    return {
        "out": str(out), "reused": reused, "tokenizer": meta["tokenizer"]["name"],
        "train_tokens": splits["train"]["tokens"], "val_tokens": splits["val"]["tokens"],
        "train_documents": splits["train"]["documents"], "val_documents": splits["val"]["documents"],
        "sources": len(meta["sources"]), "shards": sum(len(s["shards"]) for s in splits.values()),
        "skipped_files": inputs.skipped, "notes": notes, "seconds": round(seconds, 3),
        "tokens_per_s": None if reused else round(tokens / max(tokenise_seconds, 1e-9)),
        "warnings": warnings,
    }


def cache_dir() -> Path:
    """Where prepared built-in datasets live: $WSE_CACHE_DIR, else $XDG_CACHE_HOME/wse-sim, else ~/.cache/wse-sim."""
    if os.environ.get("WSE_CACHE_DIR"):
        return Path(os.environ["WSE_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "wse-sim"


def prepare_builtin(out_dir: str | os.PathLike | None = None, name: str = "python-docs", *, tokenizer: str | None = None,
                    val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0, progress: bool = False) -> Path:
    """The built-in corpus as a dataset, built once and then reused: returns its directory.

    Lives under ``out_dir`` (default ``cache_dir()/data``) in a folder keyed by the tokenizer, the corpus fingerprint
    (Python version and stdlib files) and the split, so a cache hit costs a few stats and no parsing.
    """
    from model.tokenizer import TokenizerError, get_tokenizer
    from runtime.data import corpus

    try:
        tok_name = get_tokenizer(tokenizer).name
    except TokenizerError as err:
        raise UserError(str(err)) from None
    key = hashlib.sha256(f"{FORMAT}{FORMAT_VERSION}|{tok_name}|{corpus.fingerprint(name)}|{val_fraction}|{seed}".encode()).hexdigest()[:16]
    target = Path(out_dir).expanduser() if out_dir is not None else cache_dir() / "data"
    target = target / f"{name}-{key}"
    if _intact(target, _read_meta(target)):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # e.g. WSE_CACHE_DIR under /proc, or a file where a folder should be
        where = "WSE_CACHE_DIR" if os.environ.get("WSE_CACHE_DIR") else "XDG_CACHE_HOME or your home directory"
        raise UserError(f"the built-in corpus cannot be prepared in '{target.parent}' ({err.strerror}); set {where} "
                        "to a writable directory") from None
    # another process building the same cache is waited for, and its dataset reused (build_dataset's wait)
    build_dataset([], target, builtin=name, val_fraction=val_fraction, seed=seed, tokenizer=tokenizer,
                  overwrite=True, progress=progress, wait=True)
    return target


# --------------------------------------------------------------------------------------------------------- reading

class TokenDataset:
    """One split of a dataset as a single token stream over its memory-mapped shards."""

    def __init__(self, directory: str | os.PathLike, split: str = "train"):
        self.directory = Path(directory).expanduser()
        self.split = split
        meta = _read_meta(self.directory)
        if meta is None or meta.get("format") != FORMAT:
            raise UserError(f"{self.directory} is not a token dataset (no valid meta.json); create one with `wse data INPUT... --out {self.directory}`")
        if meta.get("version") != FORMAT_VERSION or meta.get("dtype") not in DTYPES:
            raise UserError(f"{self.directory} was written by another version of wse data; rebuild it with `wse data ... --overwrite`")
        if split not in meta["splits"]:
            raise UserError(f"unknown split {split!r}; a dataset has splits {', '.join(meta['splits'])}")
        if meta["splits"][split]["tokens"] == 0:
            raise UserError(f"{self.directory} has no {split} tokens; rebuild it with a --val-fraction above 0" if split == "val"
                            else f"{self.directory} has no {split} tokens; rebuild it with more input")
        self.meta = meta
        self.fingerprint: str = meta["fingerprint"]
        self.tokenizer: str = meta["tokenizer"]["name"]
        self.vocab_size: int = meta["tokenizer"]["vocab_size"]
        self.eot_id: int = meta["tokenizer"]["eot_id"]
        self.dtype = np.dtype(meta["dtype"])
        self._shards = []
        for shard in meta["splits"][split]["shards"]:
            path = self.directory / shard["file"]
            expected = shard["tokens"] * self.dtype.itemsize
            size = path.stat().st_size if path.is_file() else -1
            if size != expected:
                raise UserError(f"shard {path} is {'missing' if size < 0 else f'{size} bytes, expected {expected}'}; rebuild the dataset with `wse data ... --overwrite`")
            self._shards.append(np.memmap(path, dtype=self.dtype, mode="r"))
        self._starts = np.cumsum([0] + [len(s) for s in self._shards])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of the stream (a copy, crossing shard boundaries as needed)."""
        if start < 0 or start + length > len(self):
            raise IndexError(f"window [{start}, {start + length}) outside {len(self)} tokens")
        out = np.empty(length, dtype=self.dtype)
        k = int(np.searchsorted(self._starts, start, side="right")) - 1
        done = 0
        while done < length:
            offset = start + done - int(self._starts[k])
            n = min(length - done, len(self._shards[k]) - offset)
            out[done:done + n] = self._shards[k][offset:offset + n]
            done += n
            k += 1
        return out

    def shards(self) -> list[np.ndarray]:
        """The memory-mapped shards themselves (read-only)."""
        return list(self._shards)


def unigram_entropy_nats(dataset: TokenDataset | str | os.PathLike, split: str = "val") -> float:
    """Entropy (nats) of the split's token frequencies: the loss of a model that ignores context.

    The demo compares validation loss to it; a model that learned anything about context must end well below.
    """
    ds = dataset if isinstance(dataset, TokenDataset) else TokenDataset(dataset, split)
    counts = np.zeros(max(ds.vocab_size, 1 << 16), dtype=np.int64)
    for shard in ds.shards():
        counts += np.bincount(shard, minlength=counts.size)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())

"""Token datasets: text in, memory-mapped ``uint16`` token shards out, and the loader that training reads them with.

A dataset is a directory::

    meta.json            tokenizer, dtype, token and document counts per split, sources with sha256, shards
    train_00000.bin ...  raw uint16 tokens (np.memmap-able), each document's tokens followed by <|endoftext|>
    val_00000.bin ...

Building (``build_dataset``, ``wse data``) validates every input before writing anything, tokenises with all cores
(tiktoken's batch encoder releases the GIL), writes into a hidden sibling directory and renames it into place, so a
failure never leaves half a dataset and never touches an existing one. Output policy: a missing or empty ``--out`` is
created; one that already holds this very dataset (same tokenizer, inputs, split) is reused untouched; one holding a
different dataset is refused unless ``overwrite=True``; a non-empty directory that is not a dataset is always refused.

Reading: ``TokenDataset`` maps one split's shards as one token stream; ``Loader`` cuts it into windows of
``seq_len + 1`` tokens (inputs and targets shifted by one) and yields global batches in a seeded order, or one
process's contiguous block of rows. Its position (``state()``) is a small JSON dict, saved with checkpoints, so a
resumed run sees exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from runtime.errors import UserError

FORMAT = "wse-tokens"
FORMAT_VERSION = 1
DTYPE = np.uint16  # GPT-2's 50257 ids fit; half the bytes of int32
DEFAULT_VAL_FRACTION = 0.05
# A validation split below this many tokens earns a warning: it cannot fill one batch of 8 x 2048 (the published
# Cerebras-GPT context), so `wse train` at such a shape skips evaluation, and a loss over fewer tokens is noisy.
MIN_VAL_TOKENS = 8 * 2048 + 1
# 2^27 tokens = 256 MiB per shard: few files for large corpora, small enough to copy or checksum one at a time.
DEFAULT_SHARD_TOKENS = 1 << 27
TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl",)
# Tokenisation work units: a batch of ~4M characters split into pieces of at most 256K characters, so both cores
# stay busy even on one big file, and memory stays bounded.
_BATCH_CHARS = 4 << 20
_PIECE_CHARS = 256 << 10


# ----------------------------------------------------------------------------------------------------------- inputs

@dataclass
class Source:
    """One input as meta.json records it."""

    name: str  # the path as given, or builtin:<corpus>
    kind: str  # txt | md | jsonl | builtin
    bytes: int
    sha256: str
    documents: int


def decode_text(path: str | os.PathLike, data: bytes) -> str:
    """UTF-8 text of a file's bytes, refusing empty, binary and mis-encoded files with the file (and byte offset)
    named in a one-line UserError; a UTF-8 byte-order mark is dropped."""
    if not data.strip():
        raise UserError(f"{path} is empty; remove it from the inputs or give it some text")
    if b"\x00" in data:
        raise UserError(f"{path} is a binary file (it contains NUL bytes; UTF-16 text is binary here); give UTF-8 text files")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not valid UTF-8 at byte offset {err.start}; re-encode it as UTF-8 (e.g. iconv -t UTF-8)") from None
    return text.removeprefix("\ufeff")


def read_text(path: str | os.PathLike) -> str:
    """A text file's contents, checked like every ``wse data`` input (also used for eval and fine-tuning inputs)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{path} does not exist or is not a file; check the path")
    return decode_text(path, p.read_bytes())


def jsonl_records(path: str | os.PathLike, text: str | None = None) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; a line that is not a JSON object is refused
    with file:line named. Callers check the fields they need and name file:line the same way."""
    text = read_text(path) if text is None else text
    records = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{lineno} is not valid JSON ({err.msg}); each line must be one JSON object") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{lineno} is not a JSON object; each line must be one object like {{\"text\": \"...\"}}")
        records.append((lineno, record))
    if not records:
        raise UserError(f"{path} holds no records; give it one JSON object per line")
    return records


def _jsonl_documents(path: Path, text: str) -> list[str]:
    docs = []
    for lineno, record in jsonl_records(path, text):
        if "text" not in record:
            raise UserError(f'{path}:{lineno} has no "text" field; each line must be an object like {{"text": "..."}}')
        if not isinstance(record["text"], str) or not record["text"].strip():
            raise UserError(f'{path}:{lineno} has an empty or non-string "text"; give each record some text or drop the line')
        docs.append(record["text"])
    return docs


def _expand(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files to read, in order (directories recursively, sorted, hidden entries skipped), and files skipped."""
    files, skipped = [], []
    for given in inputs:
        p = Path(given).expanduser()
        if p.is_dir():
            found = []
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    f = Path(dirpath) / name
                    if name.startswith("."):
                        continue
                    (found if f.suffix.lower() in TEXT_SUFFIXES + JSONL_SUFFIXES else skipped).append(f)
            if not found:
                raise UserError(f"{given} holds no .txt, .md or .jsonl files; point at the files to tokenise")
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in TEXT_SUFFIXES + JSONL_SUFFIXES:
                raise UserError(f"{given} is not a .txt, .md or .jsonl file; convert it to UTF-8 text or JSONL with a \"text\" field")
            files.append(p)
        else:
            raise UserError(f"input {given} does not exist; check the path")
    return files, [str(s) for s in skipped]


class _Inputs:
    """The documents of all inputs, readable twice: once to validate and count, once to tokenise."""

    def __init__(self, inputs: list[str], builtin: str | None):
        self.files, self.skipped = _expand(inputs)
        self.builtin = builtin
        if not self.files and not builtin:
            raise UserError("no input given; name files or directories, or use --builtin python-docs")

    def read(self) -> Iterator[tuple[Source, list[str]]]:
        if self.builtin:
            from runtime import corpus

            docs = corpus.documents(self.builtin)
            data = "\x00".join(docs).encode("utf-8")  # NUL never occurs in the text: an unambiguous join
            yield Source(f"builtin:{self.builtin}", "builtin", len(data), hashlib.sha256(data).hexdigest(), len(docs)), docs
        for f in self.files:
            data = f.read_bytes()
            text = decode_text(f, data)
            kind = f.suffix.lower().lstrip(".")
            docs = _jsonl_documents(f, text) if kind == "jsonl" else [text]
            yield Source(str(f), kind, len(data), hashlib.sha256(data).hexdigest(), len(docs)), docs


# ----------------------------------------------------------------------------------------------------- tokenising

# A newline between an ASCII non-space character and an ASCII letter or digit: GPT-2's pre-tokeniser makes that
# newline a token of its own in every case, so encoding the text cut right after it gives the same ids as encoding
# it whole (the tests check this). Lets one big file be tokenised in parallel pieces.
_SAFE_CUT = re.compile(r"(?<=[!-~])\n(?=[A-Za-z0-9])")


def split_for_tokenization(text: str, max_chars: int = _PIECE_CHARS) -> list[str]:
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


class _ShardWriter:
    """Appends one split's tokens to shard files of at most ``shard_tokens`` tokens, hashing as it goes."""

    def __init__(self, directory: Path, split: str, shard_tokens: int):
        self.directory, self.split, self.shard_tokens = directory, split, shard_tokens
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
            raw = part.astype(DTYPE, copy=False).tobytes()
            self._file.write(raw)
            self._hash.update(raw)
            self.shards[-1]["tokens"] += int(part.size)
            self.tokens += int(part.size)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self.shards[-1]["sha256"] = self._hash.hexdigest()
            self._file = None


def _val_documents(n_docs: int, val_fraction: float, seed: int) -> set[int]:
    """Indices of the validation documents: round(f * n) of them (at least one when f > 0), chosen by a seeded hash
    of each index, so the choice never depends on a library's random-number stream."""
    if val_fraction <= 0:
        return set()
    if n_docs < 2:
        raise UserError(f"a validation split needs at least 2 documents, the inputs hold {n_docs}; add documents or pass --val-fraction 0")
    n_val = min(max(1, round(val_fraction * n_docs)), n_docs - 1)
    ranked = sorted(range(n_docs), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())
    return set(ranked[:n_val])


def _progress(total_chars: int, enabled: bool):
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


def _tokenise_into(tmp: Path, inputs: _Inputs, scanned: list[Source], tokenizer, val_docs: set[int], shard_tokens: int,
                   num_threads: int | None, progress) -> dict[str, _ShardWriter]:
    writers = {split: _ShardWriter(tmp, split, shard_tokens) for split in ("train", "val")}
    eot = np.array([tokenizer.eot_id], dtype=DTYPE)
    batch: list[tuple[str, str, bool]] = []  # (split, piece, ends a document)
    batch_chars = 0

    def flush():
        nonlocal batch, batch_chars
        ids = tokenizer.encode_batch([piece for _, piece, _ in batch], num_threads=num_threads)
        for (split, piece, last), piece_ids in zip(batch, ids):
            writers[split].write(np.asarray(piece_ids, dtype=DTYPE))
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
            pieces = split_for_tokenization(doc)
            for k, piece in enumerate(pieces):
                batch.append((split, piece, k == len(pieces) - 1))
                batch_chars += len(piece)
            index += 1
            if batch_chars >= _BATCH_CHARS:
                flush()
    if batch:
        flush()
    for w in writers.values():
        w.close()
    return writers


# -------------------------------------------------------------------------------------------------------- building

def _fingerprint(tokenizer_name: str, sources: list[Source], val_fraction: float, seed: int, shard_tokens: int) -> str:
    """Identity of a dataset: equal fingerprints mean byte-identical shards."""
    key = {"format": [FORMAT, FORMAT_VERSION], "tokenizer": tokenizer_name, "sources": [s.sha256 for s in sources],
           "val_fraction": val_fraction, "seed": seed, "shard_tokens": shard_tokens}
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
                if (directory / shard["file"]).stat().st_size != shard["tokens"] * np.dtype(DTYPE).itemsize:
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


def _install(tmp: Path, out: Path) -> None:
    """Move the finished dataset into place; an existing one is swapped out only after the new one is complete."""
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
        else:
            out.rmdir()
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:
            os.rename(old, out)  # put the previous dataset back: a failure must not lose it
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_dataset(inputs: list[str], out: str | os.PathLike, *, builtin: str | None = None,
                  val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0, tokenizer: str | None = None,
                  overwrite: bool = False, shard_tokens: int = DEFAULT_SHARD_TOKENS, num_threads: int | None = None,
                  progress: bool = False) -> dict:
    """Tokenise ``inputs`` (files, directories, and/or a built-in corpus) into a dataset at ``out``; see module doc.

    Returns a summary: token and document counts per split, throughput, and ``reused`` (True when ``out`` already
    held exactly this dataset and nothing was written).
    """
    from model.tokenizer import TokenizerError, get_tokenizer

    if not 0 <= val_fraction < 1:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction}; 0.05 holds out 5% of the documents")
    if shard_tokens < 1:
        raise UserError(f"--shard-tokens must be positive, got {shard_tokens}")
    if num_threads is not None and num_threads < 1:
        raise UserError(f"--threads must be at least 1, got {num_threads}")
    out = Path(out).expanduser()
    _check_out(out)
    try:
        tok = get_tokenizer(tokenizer)
    except TokenizerError as err:
        raise UserError(str(err)) from None
    if tok.vocab_size > np.iinfo(DTYPE).max + 1:
        raise UserError(f"tokenizer {tok.name} has {tok.vocab_size} tokens, more than uint16 shards hold (65536); use a smaller vocabulary")

    t0 = time.perf_counter()
    source_set = _Inputs(list(inputs), builtin)
    scanned, total_chars = [], 0
    for source, docs in source_set.read():  # validates every input before anything is written
        scanned.append(source)
        total_chars += sum(len(d) for d in docs)
    val_docs = _val_documents(sum(s.documents for s in scanned), val_fraction, seed)
    fingerprint = _fingerprint(tok.name, scanned, val_fraction, seed, shard_tokens)

    existing = _read_meta(out) if out.is_dir() else None
    if existing is not None and existing.get("fingerprint") == fingerprint and _intact(out, existing):
        return _summary(out, existing, reused=True, seconds=time.perf_counter() - t0, skipped=source_set.skipped)
    if (out / "meta.json").is_file() and not overwrite:
        what = "a damaged copy of this dataset" if existing and existing.get("fingerprint") == fingerprint else "a different dataset"
        raise UserError(f"--out {out} already holds {what}; pass --overwrite to replace it or choose another directory")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        bar = _progress(total_chars, progress)
        if bar is not None:
            bar.start()
        t1 = time.perf_counter()
        try:
            writers = _tokenise_into(tmp, source_set, scanned, tok, val_docs, shard_tokens, num_threads, bar)
        finally:
            if bar is not None:
                bar.stop()
        tokenise_seconds = time.perf_counter() - t1
        meta = {
            "format": FORMAT, "version": FORMAT_VERSION, "fingerprint": fingerprint,
            "tokenizer": {"name": tok.name, "backend": tok.backend, "vocab_size": tok.vocab_size, "eot_id": tok.eot_id},
            "dtype": np.dtype(DTYPE).name, "layout": "each document's tokens, then eot_id",
            "val_fraction": val_fraction, "seed": seed, "shard_tokens": shard_tokens,
            "splits": {split: {"tokens": w.tokens, "documents": w.documents, "shards": w.shards} for split, w in writers.items()},
            "sources": [asdict(s) for s in scanned],
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _summary(out, meta, reused=False, seconds=time.perf_counter() - t0, skipped=source_set.skipped,
                    tokenise_seconds=tokenise_seconds)


def _summary(out: Path, meta: dict, *, reused: bool, seconds: float, skipped: list[str], tokenise_seconds: float = 0.0) -> dict:
    """The command's result: ``seconds`` is the whole call; ``tokens_per_s`` the tokenise-and-write pass alone."""
    splits = meta["splits"]
    tokens = sum(s["tokens"] for s in splits.values())
    warnings = []
    val = splits["val"]["tokens"]
    if meta.get("val_fraction", DEFAULT_VAL_FRACTION) > 0 and val < MIN_VAL_TOKENS:
        warnings.append(f"the validation split holds only {val:,} tokens ({splits['val']['documents']} documents): "
                        f"fewer than one batch of 8 x 2048 ({MIN_VAL_TOKENS:,}), so evaluation at such shapes is "
                        "skipped and small ones are noisy; raise --val-fraction or add documents")
    return {
        "out": str(out), "reused": reused, "tokenizer": meta["tokenizer"]["name"],
        "train_tokens": splits["train"]["tokens"], "val_tokens": splits["val"]["tokens"],
        "train_documents": splits["train"]["documents"], "val_documents": splits["val"]["documents"],
        "sources": len(meta["sources"]), "shards": sum(len(s["shards"]) for s in splits.values()),
        "skipped_files": skipped, "seconds": round(seconds, 3),
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
    from runtime import corpus

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
        build_dataset([], target, builtin=name, val_fraction=val_fraction, seed=seed, tokenizer=tokenizer,
                      overwrite=True, progress=progress)
    except OSError:
        # Another process finished the same build first (its rename won); theirs is as good as ours.
        if not _intact(target, _read_meta(target)):
            raise
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
        if meta.get("version") != FORMAT_VERSION or meta.get("dtype") != np.dtype(DTYPE).name:
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
        self._shards = []
        for shard in meta["splits"][split]["shards"]:
            path = self.directory / shard["file"]
            expected = shard["tokens"] * np.dtype(DTYPE).itemsize
            size = path.stat().st_size if path.is_file() else -1
            if size != expected:
                raise UserError(f"shard {path} is {'missing' if size < 0 else f'{size} bytes, expected {expected}'}; rebuild the dataset with `wse data ... --overwrite`")
            self._shards.append(np.memmap(path, dtype=DTYPE, mode="r"))
        self._starts = np.cumsum([0] + [len(s) for s in self._shards])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start + length)`` of the stream (a copy, crossing shard boundaries as needed)."""
        if start < 0 or start + length > len(self):
            raise IndexError(f"window [{start}, {start + length}) outside {len(self)} tokens")
        out = np.empty(length, dtype=DTYPE)
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


class Loader:
    """Seeded, resumable batches of ``seq_len``-token windows from a ``TokenDataset``.

    The stream is cut into ``(len - 1) // seq_len`` windows; window ``w`` is tokens ``[w*seq_len, w*seq_len +
    seq_len + 1)``, giving inputs ``[:-1]`` and targets ``[1:]`` (so every token but the first is a target once per
    epoch, and documents are packed across window edges, separated by <|endoftext|>). Each epoch visits the windows in
    the order of a permutation seeded by ``(seed, epoch)``; a batch is ``batch_size`` consecutive entries of it, and
    the incomplete tail is dropped. A process of ``process_count`` reads only its contiguous block of rows of the
    global batch; the runtime then shards those rows over the mesh's ``data`` axis. Batches depend only on (seed,
    epoch, step), never on the process count, so state saved on one layout resumes exactly on another.
    """

    def __init__(self, dataset: TokenDataset, batch_size: int, seq_len: int, *, seed: int = 0, shuffle: bool = True,
                 process_index: int = 0, process_count: int = 1):
        if batch_size < 1 or seq_len < 1:
            raise UserError(f"batch size and sequence length must be positive, got {batch_size} and {seq_len}")
        if not 0 <= process_index < process_count:
            raise UserError(f"process index {process_index} is outside 0..{process_count - 1}")
        if batch_size % process_count:
            raise UserError(f"global batch {batch_size} does not split evenly over {process_count} processes; use a multiple of {process_count}")
        self.dataset, self.batch_size, self.seq_len, self.seed, self.shuffle = dataset, batch_size, seq_len, seed, shuffle
        self.process_index, self.process_count = process_index, process_count
        self.n_windows = (len(dataset) - 1) // seq_len
        self.steps_per_epoch = self.n_windows // batch_size
        if self.steps_per_epoch == 0:
            need = batch_size * seq_len + 1
            raise UserError(f"the {dataset.split} split has {len(dataset):,} tokens, one batch of {batch_size} x {seq_len} needs {need:,}; "
                            "lower the batch size or sequence length, or add data")
        self.epoch = 0
        self.step = 0
        self._order_epoch, self._order = None, None

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.process_count

    def _window_order(self, epoch: int) -> np.ndarray:
        if self._order_epoch != epoch:
            n = self.n_windows
            self._order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._order_epoch = epoch
        return self._order

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """This process's rows of global batch ``step`` of ``epoch``: (inputs, targets), int32 [rows, seq_len]."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} outside 0..{self.steps_per_epoch - 1}")
        rows = self._window_order(epoch)[step * self.batch_size:(step + 1) * self.batch_size]
        local = self.local_batch_size
        rows = rows[self.process_index * local:(self.process_index + 1) * local]
        windows = np.stack([self.dataset.window(int(w) * self.seq_len, self.seq_len + 1) for w in rows]).astype(np.int32)
        return windows[:, :-1], windows[:, 1:]

    def __iter__(self) -> "Loader":
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        out = self.batch(self.epoch, self.step)
        self.step += 1
        if self.step == self.steps_per_epoch:
            self.epoch, self.step = self.epoch + 1, 0
        return out

    def state(self) -> dict:
        """Position of the next batch, JSON-serialisable; with the identity checks ``restore`` needs."""
        return {"epoch": self.epoch, "step": self.step, "seed": self.seed, "batch_size": self.batch_size,
                "seq_len": self.seq_len, "shuffle": self.shuffle, "dataset": self.dataset.fingerprint,
                "split": self.dataset.split}

    def restore(self, state: dict) -> None:
        """Continue from ``state()`` of an earlier loader over the same data, batch size, sequence length and seed."""
        for key in ("seed", "batch_size", "seq_len", "shuffle", "dataset", "split"):
            if key in state and state[key] != self.state()[key]:
                raise UserError(f"the saved data position is for {key}={state[key]!r} but this run has {key}={self.state()[key]!r}; "
                                "resume with the same data and batch settings or start a new run_dir")
        epoch, step = int(state["epoch"]), int(state["step"])
        if epoch < 0 or not 0 <= step < self.steps_per_epoch:
            raise UserError(f"the saved data position (epoch {epoch}, step {step}) does not fit this dataset; start a new run_dir")
        self.epoch, self.step = epoch, step

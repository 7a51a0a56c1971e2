"""Fine-tuning examples: JSONL records checked, tokenised and packed into windows, with the loss mask.

Examples are JSONL lines, either ``{"prompt": ..., "completion": ...}`` (the model learns to produce the completion
after the prompt: the prompt's tokens are context only, masked out of the loss) or ``{"text": ...}`` (every token is
trained, like pre-training). Each example is tokenised as ``prompt + completion + <|endoftext|>`` (or ``text +
<|endoftext|>``) and examples are packed, whole, into windows of ``seq_len + 1`` tokens in a seeded order; the rest of
a window is padding (``<|endoftext|>`` ids, masked). Packed examples see the ones before them in the window as
context, exactly as documents do in pre-training (they are separated by ``<|endoftext|>``). An example longer than a
window: ``text`` is cut into consecutive windows (every token still trained once); a prompt/completion pair is
truncated (its completion cut), and dropped if its prompt alone fills the window; both are counted in ``Packed``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import UserError

# Without a validation file, every VAL_MODULUS-th example (by a hash of its text) is held out, when the file has at
# least MIN_HOLDOUT_EXAMPLES examples; smaller files train on everything and skip validation.
VAL_MODULUS = 10
MIN_HOLDOUT_EXAMPLES = 20
BUILTIN = "builtin"


def read_examples(path: str | os.PathLike) -> list[dict]:
    """The records of a fine-tuning JSONL file, each checked: ``{"prompt", "completion"}`` or ``{"text"}``.

    Empty files, invalid UTF-8, lines that are not JSON objects and records without the needed string fields are
    refused with one line naming file:line and the fix. Returns ``[{"prompt", "completion"} | {"text"}]``.
    """
    from runtime.data.inputs import jsonl_records

    out = []
    for lineno, rec in jsonl_records(path):
        if "prompt" in rec or "completion" in rec:
            for key in ("prompt", "completion"):
                if key not in rec:
                    raise UserError(f'{path}:{lineno} has "{"prompt" if key == "completion" else "completion"}" but no "{key}"; '
                                    'give both, e.g. {"prompt": "Q", "completion": " A"}, or use {"text": "..."}')
                if not isinstance(rec[key], str):
                    raise UserError(f'{path}:{lineno} has a non-string "{key}"; give text')
            if not rec["completion"].strip():
                raise UserError(f'{path}:{lineno} has an empty "completion"; give each example something to learn or drop the line')
            out.append({"prompt": rec["prompt"], "completion": rec["completion"]})
        elif "text" in rec:
            if not isinstance(rec["text"], str) or not rec["text"].strip():
                raise UserError(f'{path}:{lineno} has an empty or non-string "text"; give each record some text or drop the line')
            out.append({"text": rec["text"]})
        else:
            raise UserError(f'{path}:{lineno} has neither "prompt"/"completion" nor "text"; each line must be '
                            '{"prompt": ..., "completion": ...} or {"text": ...}')
    return out


def builtin_task_files() -> tuple[Path, Path]:
    """(train, val) JSONL files of the built-in task set (runtime.data.corpus.builtin_tasks), written once into the cache.

    A file rather than an in-memory list so that a fine-tuning run records a real data path (its config's ``data``),
    the same whether it came from `wse finetune --data builtin` or the tutorial's ``load_task_data()``.
    """
    from runtime.data import corpus
    from runtime.data.datasets import cache_dir

    key = hashlib.sha256(f"tasks|{corpus.fingerprint('python-docs')}".encode()).hexdigest()[:16]
    folder = cache_dir() / "tasks"
    paths = tuple(folder / f"python-docs-{key}-{split}.jsonl" for split in ("train", "val"))
    if all(p.is_file() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    for split, path in zip(("train", "val"), paths):
        lines = "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in corpus.builtin_tasks(split))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(lines, encoding="utf-8")
        os.replace(tmp, path)
    return paths


def holdout(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(train, val): every VAL_MODULUS-th record by a hash of its content when there are enough, else (all, [])."""
    if len(records) < MIN_HOLDOUT_EXAMPLES:
        return records, []
    train, val = [], []
    for rec in records:
        digest = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()
        (val if int(digest[:8], 16) % VAL_MODULUS == 0 else train).append(rec)
    return (train, val) if train and val else (records, [])


@dataclass
class Packed:
    """Examples packed into windows: ``tokens`` [R, seq_len + 1] int32, ``mask`` [R, seq_len] bool (True where the
    target token is trained), and what packing did."""

    tokens: np.ndarray
    mask: np.ndarray
    examples: int
    truncated: int = 0
    dropped: int = 0
    trained_tokens: int = 0
    context_tokens: int = 0
    fingerprint: str = field(default="", init=False)

    def __post_init__(self):
        h = hashlib.sha256(self.tokens.tobytes())
        h.update(np.packbits(self.mask).tobytes())
        self.fingerprint = h.hexdigest()

    @property
    def rows(self) -> int:
        return int(self.tokens.shape[0])

    def stats(self) -> dict:
        return {"examples": self.examples, "windows": self.rows, "truncated": self.truncated, "dropped": self.dropped,
                "trained_tokens": self.trained_tokens, "masked_tokens": self.context_tokens}


def tokenize(records: list[dict], tokenizer) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per record (ids, trained): ids = prompt + completion + eot (or text + eot), after the ids the tokenizer puts
    first (``start_ids``: Llama's begin-of-sequence id; never trained); trained marks the tokens the loss covers
    (completion and eot; every token of a text)."""
    texts, kinds = [], []
    for rec in records:
        if "text" in rec:
            texts.append(rec["text"])
            kinds.append(None)
        else:
            texts += [rec["prompt"], rec["completion"]]
            kinds.append(len(texts) - 2)
    ids = tokenizer.encode_batch(texts)
    start = list(getattr(tokenizer, "start_ids", []))
    out, i = [], 0
    for kind in kinds:
        if kind is None:
            body = start + ids[i] + [tokenizer.eot_id]
            out.append((np.asarray(body, np.int32), np.arange(len(body)) >= len(start)))
            i += 1
        else:
            prompt, completion = start + ids[i], ids[i + 1] + [tokenizer.eot_id]
            trained = np.concatenate([np.zeros(len(prompt), bool), np.ones(len(completion), bool)])
            out.append((np.asarray(prompt + completion, np.int32), trained))
            i += 2
    return out


def pack(examples: list[tuple[np.ndarray, np.ndarray]], seq_len: int, *, seed: int = 0, pad_id: int) -> Packed:
    """Greedy packing in a seeded order: windows of ``seq_len + 1`` tokens, each holding whole examples.

    ``mask[r, j]`` says whether target ``tokens[r, j + 1]`` is trained: so a prompt's tokens, padding, and the first
    token of a window (never a target) add nothing to the loss. Deterministic for (examples, seq_len, seed).
    """
    width = seq_len + 1
    pieces, truncated, dropped = [], 0, 0
    for ids, trained in examples:
        if len(ids) <= width:
            pieces.append((ids, trained))
        elif trained.all():  # a text: consecutive windows, overlapping by one token so every token is a target once
            for start in range(0, len(ids) - 1, seq_len):
                chunk = slice(start, start + width)
                if len(ids[chunk]) >= 2:
                    pieces.append((ids[chunk], trained[chunk]))
        elif trained[1:width].any():
            pieces.append((ids[:width], trained[:width]))
            truncated += 1
        else:
            dropped += 1  # the prompt alone fills the window: nothing left to learn from
    if not pieces:
        raise UserError(f"no example has a completion token within train.seq_len={seq_len}; shorten the prompts or raise train.seq_len")
    order = np.random.default_rng([seed, 0x46_54]).permutation(len(pieces))  # 'FT': a stream apart from the loader's
    rows_t, rows_m, cur_t, cur_m = [], [], [], []

    def flush():
        t = np.concatenate(cur_t) if cur_t else np.zeros(0, np.int32)
        m = np.concatenate(cur_m) if cur_m else np.zeros(0, bool)
        tokens = np.full(width, pad_id, np.int32)
        trained = np.zeros(width, bool)
        tokens[:len(t)], trained[:len(m)] = t, m
        rows_t.append(tokens)
        rows_m.append(trained[1:])  # target j is token j + 1
        cur_t.clear()
        cur_m.clear()

    used = 0
    for i in order:
        ids, trained = pieces[i]
        if used + len(ids) > width:
            flush()
            used = 0
        cur_t.append(ids)
        cur_m.append(trained)
        used += len(ids)
    flush()
    tokens, mask = np.stack(rows_t), np.stack(rows_m)
    counted = sum(len(ids) for ids, _ in pieces)
    return Packed(tokens, mask, examples=len(examples), truncated=truncated, dropped=dropped,
                  trained_tokens=int(mask.sum()), context_tokens=int(counted - mask.sum()))


def resolve_examples(data: str | os.PathLike, val: str | os.PathLike | None = None) -> tuple[Path, list[dict], list[dict]]:
    """(data file recorded in the run config, train records, validation records) for ``--data`` / ``--val``."""
    if str(data) == BUILTIN:
        train_file, val_file = builtin_task_files()
        records, held = read_examples(train_file), read_examples(val_file)
        path = train_file
    else:
        path = Path(data).expanduser().absolute()
        records = read_examples(path)
        held = None
    if val is not None:
        held = read_examples(val)
    elif held is None:
        records, held = holdout(records)
    return path, records, held


"""Fine-tuning: continue training a checkpoint (or a HuggingFace model) on examples, with loss only where it matters.

Examples are JSONL lines, either ``{"prompt": ..., "completion": ...}`` (the model learns to produce the completion
after the prompt: the prompt's tokens are context only, masked out of the loss) or ``{"text": ...}`` (every token is
trained, like pre-training). Each example is tokenised as ``prompt + completion + <|endoftext|>`` (or ``text +
<|endoftext|>``) and examples are packed, whole, into windows of ``seq_len + 1`` tokens in a seeded order; the rest of
a window is padding (``<|endoftext|>`` ids, masked). Packed examples see the ones before them in the window as
context, exactly as documents do in pre-training (they are separated by ``<|endoftext|>``). An example longer than a
window: ``text`` is cut into consecutive windows (every token still trained once); a prompt/completion pair is
truncated (its completion cut), and dropped if its prompt alone fills the window; both are counted in the result.

Training is the ordinary ``runtime.train.Trainer`` with a loader of ``(inputs, targets, mask)`` batches, so a
fine-tuning run has the same run dir layout, checkpoints (with the loader position: a killed run resumes exactly),
metrics, loss curve and mesh/mode choices as `wse train`. It always writes a new run dir and never one equal to,
inside, or around its source.

Defaults (each can be overridden with ``train.KEY=VALUE``), chosen for adapting a trained model rather than
training one: peak LR ``FINETUNE_LR_FRACTION`` of the source's (large steps would wreck what pre-training learned),
``FINETUNE_EPOCHS`` passes over the examples, warmup ``FINETUNE_WARMUP_FRACTION`` of the run, linear decay, the
source's batch size and window length (its run config's, else its preset recipe's and its context), checkpoints at
the middle and the end, and validation over the whole held-out set a few times per run. Settings a run dir's
checkpoint already holds are kept when it resumes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import UserError

# Peak LR as a fraction of the source run's (or the preset recipe's) peak: the usual order of magnitude between
# pre-training and fine-tuning rates (e.g. GPT-2-size models pre-train at 6e-4 and fine-tune around 6e-5).
FINETUNE_LR_FRACTION = 0.1
# Passes over the training examples when train.steps is not given: a few epochs, as fine-tuning recipes use; more
# overfits a small task set, fewer leaves the completions' format half learnt.
FINETUNE_EPOCHS = 3
# Linear warmup over this fraction of the run (at least one step): short, since the weights are already trained.
FINETUNE_WARMUP_FRACTION = 0.05
# Evaluations per run (plus the final one) when train.eval_every is not given.
FINETUNE_EVALS = 4
# At most this many validation batches per evaluation (the whole held-out set when it is smaller).
MAX_EVAL_BATCHES = 32
# Without a validation file, every VAL_MODULUS-th example (by a hash of its text) is held out, when the file has at
# least MIN_HOLDOUT_EXAMPLES examples; smaller files train on everything and skip validation.
VAL_MODULUS = 10
MIN_HOLDOUT_EXAMPLES = 20
BUILTIN = "builtin"


# ----------------------------------------------------------------------------------------------------- examples

def read_examples(path: str | os.PathLike) -> list[dict]:
    """The records of a fine-tuning JSONL file, each checked: ``{"prompt", "completion"}`` or ``{"text"}``.

    Empty files, invalid UTF-8, lines that are not JSON objects and records without the needed string fields are
    refused with one line naming file:line and the fix. Returns ``[{"prompt", "completion"} | {"text"}]``.
    """
    from runtime.data import jsonl_records

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
    """(train, val) JSONL files of the built-in task set (runtime.corpus.builtin_tasks), written once into the cache.

    A file rather than an in-memory list so that a fine-tuning run records a real data path (its config's ``data``),
    the same whether it came from `wse finetune --data builtin` or the tutorial's ``load_task_data()``.
    """
    from runtime import corpus
    from runtime.data import cache_dir

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
    """Per record (ids, trained): ids = prompt + completion + eot (or text + eot); trained marks the tokens the
    loss covers (completion and eot; every token of a text)."""
    texts, kinds = [], []
    for rec in records:
        if "text" in rec:
            texts.append(rec["text"])
            kinds.append(None)
        else:
            texts += [rec["prompt"], rec["completion"]]
            kinds.append(len(texts) - 2)
    ids = tokenizer.encode_batch(texts)
    out, i = [], 0
    for kind in kinds:
        if kind is None:
            body = ids[i] + [tokenizer.eot_id]
            out.append((np.asarray(body, np.int32), np.ones(len(body), bool)))
            i += 1
        else:
            prompt, completion = ids[i], ids[i + 1] + [tokenizer.eot_id]
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


# ------------------------------------------------------------------------------------------------------- loader

class PackedLoader:
    """Batches of packed windows for the Trainer: ``(inputs, targets, mask)`` NumPy arrays of this process's rows.

    Training (``shuffle=True``): an endless stream of the windows, each epoch in an order seeded by ``(seed,
    epoch)``; batch ``n`` is stream entries ``[n * B, (n + 1) * B)``, so a task set smaller than one batch still
    works and no window is ever dropped. ``state()`` is the batch count, saved with checkpoints; ``restore`` checks
    it belongs to the same windows. Validation (``shuffle=False``): ``batch(0, i)`` is windows ``[i * B, (i + 1) *
    B)`` in order, the last batch padded with fully masked rows, so evaluation covers every window exactly once.
    """

    def __init__(self, packed: Packed, batch_size: int, *, seed: int = 0, shuffle: bool = True, split: str = "train",
                 process_index: int | None = None, process_count: int | None = None):
        if batch_size < 1:
            raise UserError(f"train.batch_size must be positive, got {batch_size}")
        self.packed, self.batch_size, self.seed, self.shuffle, self.split = packed, batch_size, seed, shuffle, split
        self.seq_len = packed.tokens.shape[1] - 1
        self._process = (process_index, process_count)
        self.batches = 0
        self.steps_per_epoch = max(1, math.ceil(packed.rows / batch_size))
        self._order_epoch, self._order = None, None

    def _local(self, rows: np.ndarray) -> np.ndarray:
        index, count = self._process
        if index is None or count is None:
            import jax

            index, count = jax.process_index(), jax.process_count()
            self._process = (index, count)
        if self.batch_size % count:
            raise UserError(f"train.batch_size={self.batch_size} does not split evenly over {count} processes; use a multiple of {count}")
        local = self.batch_size // count
        return rows[index * local:(index + 1) * local]

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order_epoch != epoch:
            n = self.packed.rows
            self._order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._order_epoch = epoch
        return self._order

    def _take(self, rows: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, valid = self._local(rows), self._local(valid)
        windows = self.packed.tokens[rows]
        mask = self.packed.mask[rows] & valid[:, None]
        return windows[:, :-1].copy(), windows[:, 1:].copy(), mask

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Windows ``[step * B, (step + 1) * B)`` of ``epoch``'s order; rows past the end are masked padding."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} outside 0..{self.steps_per_epoch - 1}")
        positions = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        valid = positions < self.packed.rows
        order = self._epoch_order(epoch)
        return self._take(order[np.minimum(positions, self.packed.rows - 1)], valid)

    def __iter__(self) -> "PackedLoader":
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.packed.rows
        entries = np.arange(self.batches * self.batch_size, (self.batches + 1) * self.batch_size)
        rows = np.empty(self.batch_size, np.int64)
        for epoch in np.unique(entries // n):
            here = entries // n == epoch
            rows[here] = self._epoch_order(int(epoch))[entries[here] % n]
        self.batches += 1
        return self._take(rows, np.ones(self.batch_size, bool))

    def state(self) -> dict:
        return {"batches": self.batches, "seed": self.seed, "batch_size": self.batch_size, "seq_len": self.seq_len,
                "shuffle": self.shuffle, "dataset": self.packed.fingerprint, "split": self.split, "kind": "packed-examples"}

    def restore(self, state: dict) -> None:
        mine = self.state()
        for key in ("seed", "batch_size", "seq_len", "shuffle", "dataset", "split"):
            if key in state and state[key] != mine[key]:
                raise UserError(f"the saved data position is for {key}={state[key]!r} but this run has {key}={mine[key]!r}; "
                                "resume with the same examples and batch settings or choose another train.run_dir")
        if "batches" not in state:
            raise UserError("the run dir's checkpoint was not written by a fine-tuning run; choose another train.run_dir")
        self.batches = int(state["batches"])


# ------------------------------------------------------------------------------------------------------- sources

@dataclass
class Source:
    """Where the starting weights come from. ``path``: the directory a user named (None for weights in memory);
    ``root``: the directory that must not be written (a run dir for ``<run>/checkpoints``); ``lr``: its peak LR."""

    cfg: object
    params: object
    kind: str  # checkpoint | hf | memory
    path: Path | None
    root: Path | None
    lr: float
    batch_size: int
    seq_len: int | None = None  # None: the model's context

    def describe(self) -> str:
        return f"{self.kind} {self.path}" if self.path is not None else f"{self.kind} ({self.cfg.name})"


def load_source(checkpoint: str | os.PathLike | None = None, hf: str | os.PathLike | None = None, *,
                allow_pickle: bool = False) -> Source:
    """The starting model: a `wse train`/`wse convert`/`wse finetune` checkpoint, or a HuggingFace GPT-2 directory.

    A training run's own peak LR, batch size and window length (from its checkpoint) are the base of the fine-tuning
    defaults; a model-only checkpoint or HF model falls back to its preset recipe's and its context length.
    """
    if (checkpoint is None) == (hf is None):
        raise UserError("give exactly one starting model: --from CKPT_DIR or --hf DIR")
    if hf is not None:
        from model.hf import load_hf

        cfg, params = load_hf(hf, allow_pickle=allow_pickle)
        path = Path(hf).expanduser()
        return Source(cfg, params, "hf", path, path, cfg.learning_rate, cfg.batch_size, cfg.max_seq_len)
    from runtime.checkpoint import RunCheckpoints, checkpoint_dir, load_model

    path = Path(checkpoint).expanduser()
    cfg, params = load_model(path)
    ckpt = checkpoint_dir(path)
    root = ckpt.parent if ckpt.name == "checkpoints" else ckpt
    lr, batch, seq_len = cfg.learning_rate, cfg.batch_size, cfg.max_seq_len
    try:
        saved = RunCheckpoints(root).read_meta()[1].get("config", {}).get("train", {})
        lr, batch, seq_len = saved.get("lr") or lr, saved.get("batch_size") or batch, saved.get("seq_len") or seq_len
    except UserError:
        pass  # a model-only checkpoint (wse convert): the preset recipe's LR and batch, the model's context
    return Source(cfg, params, "checkpoint", path, root, float(lr), int(batch), int(seq_len))


def default_run_dir(source: Source) -> Path:
    """``<source>-ft`` next to the source (``runs/finetune-<time>`` for weights held in memory)."""
    if source.root is None:
        return Path("runs") / f"finetune-{time.strftime('%Y%m%d-%H%M%S')}"
    root = source.root.absolute()
    return root.with_name(root.name + "-ft")


def check_run_dir(run_dir: Path, source: Source) -> None:
    """Refuse a run dir that is the source, lies inside it, or contains it: fine-tuning never writes its source."""
    if source.root is None:
        return
    run, src = run_dir.expanduser().resolve(), source.root.expanduser().resolve()
    if run == src or src in run.parents:
        raise UserError(f"train.run_dir '{run_dir}' is {'the source' if run == src else 'inside the source'} "
                        f"'{source.root}'; fine-tuning writes a new run dir, e.g. train.run_dir={source.root}-ft")
    if run in src.parents:
        raise UserError(f"train.run_dir '{run_dir}' contains the source '{source.root}'; choose a separate directory, "
                        f"e.g. train.run_dir={source.root}-ft")


# ----------------------------------------------------------------------------------------------------------- run

def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "model" else v
    return out


def resolve_data(data: str | os.PathLike, val: str | os.PathLike | None = None) -> tuple[Path, list[dict], list[dict]]:
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


@dataclass
class FineTuneJob:
    """A fine-tuning run ready to start: the resolved config and the loaders (``run()`` trains)."""

    run_config: object
    source: Source
    train: Packed
    val: Packed | None
    defaults: dict
    data_path: Path

    def trainer(self, **kwargs):
        from runtime.train import Trainer

        t = self.run_config.train
        loader = PackedLoader(self.train, t.batch_size, seed=t.seed)
        val = PackedLoader(self.val, t.batch_size, seed=t.seed, shuffle=False, split="val") if self.val else None
        return Trainer(self.run_config, train_loader=loader, val_loader=val, init_params=self.source.params, **kwargs)

    def describe(self) -> dict:
        return {"source": self.source.describe(), "data": str(self.data_path),
                "train_examples": self.train.stats(), "val_examples": self.val.stats() if self.val else None,
                "defaults_applied": self.defaults}


def prepare(source: Source, data: str | os.PathLike = BUILTIN, overrides: list[str] | tuple[str, ...] = (), *,
            val: str | os.PathLike | None = None, tokenizer=None, updates: dict | None = None,
            resolved: tuple | None = None) -> FineTuneJob:
    """Resolve the run config (fine-tuning defaults under the user's overrides), tokenise and pack the examples.

    ``updates``: extra settings as a nested dict applied like overrides (the tutorial's keyword arguments);
    ``resolved``: ``resolve_data(data, val)`` when the caller already read the examples.
    """
    from model.tokenizer import TokenizerError, get_tokenizer
    from runtime.config import from_dict, parse_overrides

    tree = _merge(parse_overrides(list(overrides)), updates or {})
    for key in ("model", "data"):
        if key in tree:
            raise UserError(f"fine-tuning takes the model from --from/--hf and the examples from --data; drop the {key}= override")
    try:
        tok = tokenizer if tokenizer is not None and not isinstance(tokenizer, str) else get_tokenizer(tokenizer)
    except TokenizerError as err:
        raise UserError(str(err)) from None
    cfg = source.cfg
    data_path, records, held = resolved if resolved is not None else resolve_data(data, val)

    t_user = dict(tree.get("train", {}))
    run_dir = Path(t_user["run_dir"]) if t_user.get("run_dir") else default_run_dir(source)
    check_run_dir(run_dir, source)
    # Resuming: settings left to the defaults continue as the run dir's checkpoint saved them (a longer run must
    # not move the warmup, the LR or the packing).
    saved = _saved_train(run_dir)
    given = lambda key: t_user.get(key) if t_user.get(key) is not None else saved.get(key)  # noqa: E731
    seq_len = int(given("seq_len") or source.seq_len or cfg.max_seq_len)
    if not 2 <= seq_len <= cfg.max_seq_len:
        raise UserError(f"train.seq_len={seq_len} must be between 2 and model '{cfg.name}' context of {cfg.max_seq_len} tokens")
    seed = int(given("seed") or 0)
    train = pack(tokenize(records, tok), seq_len, seed=seed, pad_id=tok.eot_id)
    val_packed = pack(tokenize(held, tok), seq_len, seed=seed, pad_id=tok.eot_id) if held else None

    defaults: dict = {}

    def default(key, value):
        if t_user.get(key) is None:
            defaults[key] = saved[key] if saved.get(key) is not None else value
        return t_user[key] if t_user.get(key) is not None else defaults[key]

    default("seq_len", seq_len)
    # The source recipe's batch even when the examples fill fewer windows (the loader's stream then repeats windows
    # within a batch): a batch the recipe used divides the meshes it ran on, a count derived from the data may not.
    batch = int(default("batch_size", source.batch_size))
    steps = int(default("steps", max(1, math.ceil(FINETUNE_EPOCHS * train.rows / batch))))
    # the decay horizon of the run being continued (before decay_steps existed: its train.steps), else this run's
    default("decay_steps", saved.get("steps") or steps)
    default("lr", source.lr * FINETUNE_LR_FRACTION)
    default("warmup_steps", max(1, round(FINETUNE_WARMUP_FRACTION * steps)))
    default("decay", "linear")
    default("eval_every", max(1, math.ceil(steps / FINETUNE_EVALS)))
    if val_packed is not None:
        default("eval_batches", min(MAX_EVAL_BATCHES, math.ceil(val_packed.rows / batch)))
    default("checkpoint_every", max(1, math.ceil(steps / 2)))
    defaults_tree = {"model": cfg.model_dump(), "data": str(data_path), "train": {**defaults, "run_dir": str(run_dir)}}
    run = from_dict(_merge(defaults_tree, tree)).resolve()
    if max(int(train.tokens.max()), int(val_packed.tokens.max()) if val_packed else 0) >= cfg.vocab_size:
        raise UserError(f"a token id is outside model '{cfg.name}' vocabulary ({cfg.vocab_size}); give the tokenizer the model was trained with")
    return FineTuneJob(run, source, train, val_packed, defaults, data_path)


def _saved_train(run_dir: Path) -> dict:
    """The train settings of the run dir's latest checkpoint ({} for a new run dir, or one the Trainer will refuse)."""
    from runtime.checkpoint import RunCheckpoints

    try:
        if RunCheckpoints(run_dir).latest_step() is None:
            return {}
        return dict(RunCheckpoints(run_dir).read_meta()[1].get("config", {}).get("train", {}))
    except UserError:
        return {}


def init_mesh(overrides: list[str] | tuple[str, ...] = (), updates: dict | None = None) -> None:
    """Set up the run's devices (emulated CPU count, multi-process) before loading the source touches JAX."""
    from runtime.config import from_dict, parse_overrides
    from runtime.train import build_run_mesh

    tree = _merge(parse_overrides(list(overrides)), updates or {})
    build_run_mesh(from_dict({"mesh": tree.get("mesh", {})}))


def finetune(checkpoint: str | os.PathLike | None = None, data: str | os.PathLike = BUILTIN,
             overrides: list[str] | tuple[str, ...] = (), *, hf: str | os.PathLike | None = None,
             val: str | os.PathLike | None = None, tokenizer=None, allow_pickle: bool = False, **trainer_kwargs) -> dict:
    """Fine-tune ``checkpoint`` (or ``hf``) on ``data`` (a JSONL file or ``builtin``): the `wse finetune` result."""
    resolved = resolve_data(data, val)  # bad examples are reported before any model is loaded
    init_mesh(overrides)
    source = load_source(checkpoint, hf, allow_pickle=allow_pickle)
    job = prepare(source, data, overrides, val=val, tokenizer=tokenizer, resolved=resolved)
    result = job.trainer(**trainer_kwargs).run()
    return {**result, **job.describe()}

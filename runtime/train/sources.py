"""Where a run's batches come from: the trainer asks its data source for a training and a validation loader.

Both sources give runtime.data.Loader objects (one loader for pre-training and fine-tuning), built for the resolved
run config and this process's share of each global batch.
"""

from __future__ import annotations

from pathlib import Path

from runtime.data import Loader, Packed, TokenDataset, prepare_builtin
from runtime.errors import UserError


class PretrainingData:
    """``run.data``: ``builtin`` (the python-docs corpus, prepared once into the cache) or a `wse data` directory.
    The validation loader reads the held-out split in order (no shuffle), so every evaluation sees the same
    batches; without a validation split of one window, evaluation is skipped (None)."""

    def loaders(self, run, process_index: int = 0, process_count: int = 1) -> tuple[Loader, Loader | None]:
        """(train, validation or None); UserError when the data's vocabulary is larger than the model's."""
        t, cfg = run.train, run.gpt_config()
        directory = prepare_builtin() if run.data == "builtin" else Path(run.data)
        dataset = TokenDataset(directory, "train")
        if dataset.vocab_size > cfg.vocab_size:  # jnp.take would silently clamp the larger ids
            raise UserError(f"the data was tokenized into {dataset.vocab_size} ids but model '{cfg.name}' has a "
                            f"vocabulary of {cfg.vocab_size}; use a model with vocab_size >= {dataset.vocab_size} or "
                            "re-tokenize the data (`wse data --tokenizer`)")
        where = {"process_index": process_index, "process_count": process_count}
        train = Loader(dataset, t.batch_size, t.seq_len, seed=t.seed, **where)
        try:
            val = Loader(TokenDataset(directory, "val"), t.batch_size, t.seq_len, seed=t.seed, shuffle=False,
                         evaluation=True, **where)
        except UserError:
            val = None  # no validation split, or one shorter than a window: evaluation is reported as skipped
        return train, val


class ExampleData:
    """Fine-tuning examples already packed into windows (runtime.data.examples): ``train`` and ``val`` (or None).
    The validation loader covers every held-out window exactly once, its last batch padded with masked rows."""

    def __init__(self, train: Packed, val: Packed | None = None):
        self.train, self.val = train, val

    def loaders(self, run, process_index: int = 0, process_count: int = 1) -> tuple[Loader, Loader | None]:
        t = run.train
        where = {"process_index": process_index, "process_count": process_count}
        train = Loader(self.train, t.batch_size, seed=t.seed, **where)
        val = Loader(self.val, t.batch_size, seed=t.seed, shuffle=False, split="val", **where) if self.val else None
        return train, val

"""The one loader of training: seeded, resumable batches of windows, for pre-training and fine-tuning alike.

A loader reads *windows* of ``seq_len + 1`` tokens (inputs ``[:-1]``, targets ``[1:]``) from one of two sources:

- a ``TokenDataset`` split (pre-training): the stream is cut into ``(len - 1) // seq_len`` windows, window ``w`` is
  tokens ``[w * seq_len, w * seq_len + seq_len + 1)``, so every token but the first is a target once per epoch and
  documents are packed across window edges (separated by <|endoftext|>). No mask: every target counts. Each epoch's
  incomplete last batch is dropped (whole batches per epoch, as nanoGPT and Levanter do).
- ``Packed`` examples (fine-tuning, runtime.data.examples): one window per row, with a mask of the targets the loss
  covers. Batches are a continuous stream across epochs, so a task set smaller than one batch still fills batches
  and no window is ever dropped.

Either way each epoch visits the windows in a permutation seeded by ``(seed, epoch)`` (unshuffled: in order), and
global batch ``k`` depends only on ``(seed, k)``. That is what resuming relies on: the loader's position is derived
from the training step (batch ``k`` feeds step ``k + 1``), as in Levanter, so a checkpoint needs no loader state
beyond the identity checks of ``state()`` (same data, batch size, window, seed). A process of ``process_count`` reads
only its contiguous block of rows of each global batch; batches never depend on the process count, so a run saved on
one layout resumes exactly on another.
"""

from __future__ import annotations

import itertools

import numpy as np

from runtime.data.datasets import TokenDataset
from runtime.data.examples import Packed
from runtime.errors import UserError

# The identity a saved position must share with the loader that resumes it.
IDENTITY = ("seed", "batch_size", "seq_len", "shuffle", "dataset", "split")


class TokenWindows:
    """Pre-training windows over one split of a TokenDataset (see the module doc)."""

    masked = False
    whole_epochs = True

    def __init__(self, dataset: TokenDataset, seq_len: int):
        self.dataset, self.seq_len = dataset, seq_len
        self.rows = (len(dataset) - 1) // seq_len
        self.fingerprint, self.split, self.kind = dataset.fingerprint, dataset.split, "token-windows"

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, None]:
        """Windows ``rows`` as int32 [len(rows), seq_len + 1]; no mask."""
        w = [self.dataset.window(int(r) * self.seq_len, self.seq_len + 1) for r in rows]
        return np.stack(w).astype(np.int32), None


class PackedWindows:
    """Fine-tuning windows: the rows of a ``Packed`` with their loss mask."""

    masked = True
    whole_epochs = False

    def __init__(self, packed: Packed, split: str = "train"):
        self.packed, self.split, self.kind = packed, split, "packed-examples"
        self.seq_len = packed.tokens.shape[1] - 1
        self.rows, self.fingerprint = packed.rows, packed.fingerprint

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``rows`` as int32 [len(rows), seq_len + 1] and their mask, bool [len(rows), seq_len]."""
        return self.packed.tokens[rows], self.packed.mask[rows]


class Loader:
    """Batches of this process's rows of each global batch: ``(inputs, targets)`` int32 [rows, seq_len], plus
    ``mask`` bool [rows, seq_len] (True where the loss counts) for packed examples or a padded last batch.

    ``source``: a ``TokenDataset`` (give ``seq_len``) or a ``Packed`` (its own window length). ``batch_at(k)`` is
    global batch ``k``; iterating serves ``batch_at(position)`` and advances ``position`` (``seek`` sets it: a resumed
    run seeks to its step). ``batch(epoch, step)`` is batch ``step`` of ``epoch`` in that epoch's order, with rows past
    the end of the windows masked out; ``covering_batch(i)`` for ``i < covering_batches`` covers every window exactly
    once (what evaluation reads). Raises UserError for shapes the data cannot fill; ``evaluation=True`` (a validation loader, read
    with ``covering_batch``) needs one window, not one batch.
    """

    def __init__(self, source: TokenDataset | Packed, batch_size: int, seq_len: int | None = None, *, seed: int = 0,
                 shuffle: bool = True, split: str | None = None, process_index: int = 0, process_count: int = 1,
                 evaluation: bool = False):
        if batch_size < 1 or (seq_len is not None and seq_len < 1):
            raise UserError(f"batch size and sequence length must be positive, got {batch_size} and {seq_len}")
        if not 0 <= process_index < process_count:
            raise UserError(f"process index {process_index} is outside 0..{process_count - 1}")
        if batch_size % process_count:
            raise UserError(f"global batch {batch_size} does not split evenly over {process_count} processes; "
                            f"use a multiple of {process_count}")
        if isinstance(source, Packed):
            self.windows = PackedWindows(source, split or "train")
        else:
            if seq_len is None:
                raise UserError("a token dataset needs a sequence length (train.seq_len)")
            self.windows = TokenWindows(source, seq_len)
        self.batch_size, self.seq_len, self.seed, self.shuffle = batch_size, self.windows.seq_len, seed, shuffle
        self.process_index, self.process_count = process_index, process_count
        self.n_windows = self.windows.rows
        if self.windows.whole_epochs:
            self.steps_per_epoch = self.n_windows // batch_size
        else:
            self.steps_per_epoch = max(1, -(-self.n_windows // batch_size))
        if self.steps_per_epoch == 0 and not (evaluation and self.n_windows > 0):  # evaluation: covering_batch
            ds = self.windows.dataset
            raise UserError(f"the {ds.split} split has {len(ds):,} tokens, one batch of {batch_size} x {self.seq_len} "
                            f"needs {batch_size * self.seq_len + 1:,}; lower the batch size or sequence length, or add data")
        self.position = 0  # global batches served
        self._order_epoch, self._order = None, None

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.process_count

    def window_order(self, epoch: int) -> np.ndarray:
        """The order in which ``epoch`` visits the windows: int64 [n_windows]."""
        if self._order_epoch != epoch:
            n = self.n_windows
            self._order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._order_epoch = epoch
        return self._order

    def _take(self, rows: np.ndarray, valid: np.ndarray) -> tuple:
        """This process's block of global rows ``rows`` (``valid`` False: padding, masked out)."""
        local = self.local_batch_size
        block = slice(self.process_index * local, (self.process_index + 1) * local)
        windows, mask = self.windows.take(rows[block])
        valid = valid[block]
        if mask is None and not valid.all():
            mask = np.ones((local, self.seq_len), bool)
        if mask is not None:
            mask = mask & valid[:, None]
        out = (windows[:, :-1].copy(), windows[:, 1:].copy())
        return out if mask is None else (*out, mask)

    def batch(self, epoch: int, step: int) -> tuple:
        """Batch ``step`` of ``epoch``'s order; rows past the last window are masked padding."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} outside 0..{self.steps_per_epoch - 1}")
        return self._take(*self._rows(epoch, step))

    def _rows(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(global rows, valid) of batch ``step`` of ``epoch``'s order; positions past the last window repeat it,
        not valid."""
        positions = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        valid = positions < self.n_windows
        return self.window_order(epoch)[np.minimum(positions, self.n_windows - 1)], valid

    # ----- evaluation: every window once ----------------------------------------------------------------------
    @property
    def covering_batches(self) -> int:
        """How many batches ``covering_batch`` serves: together they hold every window exactly once."""
        return -(-self.n_windows // self.batch_size)

    def covering_batch(self, i: int) -> tuple:
        """Batch ``i`` of the first epoch's order, the last one padded with masked rows (what evaluation reads: an
        unshuffled loader's ``covering_batch(0 .. covering_batches - 1)`` is every window once, in order)."""
        if not 0 <= i < self.covering_batches:
            raise IndexError(f"batch {i} outside 0..{self.covering_batches - 1}")
        return self._take(*self._rows(0, i))

    def covering_targets(self, i: int) -> int:
        """The targets ``covering_batch(i)`` counts in the loss, over all processes' rows: its weight in a mean."""
        rows, valid = self._rows(0, i)
        _, mask = self.windows.take(rows[valid])
        return int(mask.sum()) if mask is not None else int(valid.sum()) * self.seq_len

    def batch_at(self, index: int) -> tuple:
        """Global batch ``index`` (0-based) of the training stream: what step ``index + 1`` trains on."""
        if self.windows.whole_epochs:
            return self.batch(index // self.steps_per_epoch, index % self.steps_per_epoch)
        entries = np.arange(index * self.batch_size, (index + 1) * self.batch_size)
        rows = np.empty(self.batch_size, np.int64)
        for epoch in np.unique(entries // self.n_windows):
            here = entries // self.n_windows == epoch
            rows[here] = self.window_order(int(epoch))[entries[here] % self.n_windows]
        return self._take(rows, np.ones(self.batch_size, bool))

    def seek(self, position: int) -> None:
        """Serve global batch ``position`` next (a run resuming after step ``position`` seeks there)."""
        if position < 0:
            raise ValueError(f"position {position} is negative")
        self.position = position

    def __iter__(self) -> "Loader":
        return self

    def __next__(self) -> tuple:
        out = self.batch_at(self.position)
        self.position += 1
        return out

    def batches(self, start: int = 0):
        """Global batches ``start, start + 1, ...`` (endless), without moving ``position``."""
        return (self.batch_at(k) for k in itertools.count(start))

    def state(self, position: int | None = None) -> dict:
        """The identity a resume checks, and the position (``position`` or the current one), JSON-serialisable."""
        at = self.position if position is None else position
        out = {"batches": at, "seed": self.seed, "batch_size": self.batch_size, "seq_len": self.seq_len,
               "shuffle": self.shuffle, "dataset": self.windows.fingerprint, "split": self.windows.split,
               "kind": self.windows.kind}
        if self.windows.whole_epochs:
            out["epoch"], out["step"] = divmod(at, self.steps_per_epoch)
        return out

    def check(self, state: dict) -> None:
        """Refuse a saved ``state()`` of another dataset, batch size, window, seed or order (UserError)."""
        mine = self.state()
        for key in IDENTITY:
            if key in state and state[key] != mine[key]:
                raise UserError(f"the saved data position is for {key}={state[key]!r} but this run has {key}={mine[key]!r}; "
                                "resume with the same data and batch settings or choose another train.run_dir")

    def saved_position(self, state: dict) -> int:
        """The global batch a saved ``state()`` continues at. Checkpoints from before positions were derived from
        the step hold ``epoch``/``step`` (token windows) or ``batches`` (packed examples); both read here."""
        self.check(state)
        if "batches" in state:
            return int(state["batches"])
        if "epoch" in state and "step" in state:
            epoch, step = int(state["epoch"]), int(state["step"])
            if epoch < 0 or not 0 <= step < self.steps_per_epoch:
                raise UserError(f"the saved data position (epoch {epoch}, step {step}) does not fit this dataset; "
                                "start a new run_dir")
            return epoch * self.steps_per_epoch + step
        raise UserError("the run dir's checkpoint holds no data position this loader can read; choose another train.run_dir")

    def restore(self, state: dict) -> None:
        """Continue from ``state()`` of an earlier loader over the same data and settings."""
        self.seek(self.saved_position(state))

"""Held-out loss: mean next-token cross-entropy (nats) of a token stream, in non-overlapping windows.

Definition (what `wse eval` reports and training's validation reuses). The stream t_0 .. t_{n-1} is cut into
consecutive windows of ``seq_len`` tokens: [t_0 .. t_{s-1}], [t_s .. t_{2s-1}], ... A window of m tokens gives m - 1
predictions (token j + 1 from tokens 0..j of the same window; no context crosses a window boundary, so each window's
first token is never predicted). The last window may be shorter; if it has fewer than 2 tokens it gives no prediction
and is dropped. ``loss`` is the mean over all predictions, ``perplexity`` = exp(loss).

All windows are evaluated in batches of one fixed shape [batch_size, seq_len] (the short last window and the last
batch are padded and masked), so a whole file costs one compile.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np

from runtime.errors import UserError


@dataclass
class EvalResult:
    tokens: int  # tokens of the stream covered by the windows kept (the whole stream unless a 1-token tail was dropped)
    predictions: int  # next-token predictions averaged over: tokens - number of windows kept
    windows: int
    seq_len: int
    loss: float
    perplexity: float

    def to_dict(self) -> dict:
        return asdict(self)


def windows(tokens: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(windows [W, seq_len] int32 zero-padded, lengths [W]) per the module definition (tails < 2 tokens dropped)."""
    tokens = np.asarray(tokens, dtype=np.int32).reshape(-1)
    starts = np.arange(0, len(tokens), seq_len)
    lengths = np.minimum(seq_len, len(tokens) - starts)
    keep = lengths >= 2
    starts, lengths = starts[keep], lengths[keep]
    out = np.zeros((len(starts), seq_len), np.int32)
    for i, (s, m) in enumerate(zip(starts, lengths)):
        out[i, :m] = tokens[s:s + m]
    return out, lengths


def check_request(cfg, tokens, seq_len: int | None = None) -> int:
    """The window length an evaluation of ``tokens`` uses (``seq_len``, default the model's context), or UserError
    when it is not between 2 and the context or the stream has fewer than 2 tokens. Pure Python: `wse eval` checks
    before it starts JAX."""
    seq_len = cfg.max_seq_len if seq_len is None else int(seq_len)
    if seq_len < 2:
        raise UserError(f"seq-len {seq_len} is too short: a window needs at least 2 tokens to predict one")
    if seq_len > cfg.max_seq_len:
        raise UserError(f"seq-len {seq_len} is beyond the model context of {cfg.max_seq_len} tokens; "
                        f"use --seq-len {cfg.max_seq_len} or less")
    if len(np.asarray(tokens).reshape(-1)) < 2:
        raise UserError(f"the text has {len(np.asarray(tokens).reshape(-1))} token(s); at least 2 are needed for one prediction")
    return seq_len


def evaluate_tokens(cfg, params, tokens, seq_len: int | None = None, batch_size: int = 8, dtype=None,
                    nll_fn=None) -> EvalResult:
    """Mean next-token cross-entropy of ``tokens`` under the model (see module docstring).

    ``nll_fn(params, inputs [B, T], targets [B, T], mask [B, T]) -> summed nll`` replaces the single-device
    forward (training passes its sharded one); the default runs ``model.gpt.forward`` under ``jax.jit``.
    """
    import jax
    import jax.numpy as jnp

    seq_len = check_request(cfg, tokens, seq_len)
    wins, lengths = windows(tokens, seq_len)
    if nll_fn is None:
        from model.generate import architecture

        nll_fn = partial(masked_nll_sum, architecture(cfg), dtype=dtype or jnp.float32)
    # Inputs are window[:-1], targets window[1:], valid where the target is inside the window.
    mask = np.arange(seq_len - 1)[None, :] < (lengths - 1)[:, None]
    n = len(wins)
    batch_size = max(1, min(batch_size, n))
    padded = -(-n // batch_size) * batch_size
    wins = np.concatenate([wins, np.zeros((padded - n, seq_len), np.int32)])
    mask = np.concatenate([mask, np.zeros((padded - n, seq_len - 1), bool)])
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    total = 0.0
    for b in range(0, padded, batch_size):
        w, m = wins[b:b + batch_size], mask[b:b + batch_size]
        total += float(nll_fn(params, jnp.asarray(w[:, :-1]), jnp.asarray(w[:, 1:]), jnp.asarray(m)))
    predictions = int(mask.sum())
    loss = total / predictions
    return EvalResult(tokens=int(lengths.sum()), predictions=predictions, windows=n, seq_len=seq_len, loss=loss,
                      perplexity=math.exp(min(loss, 700.0)))


def evaluate_split(cfg, params, dataset, seq_len: int, batch_size: int = 8, dtype=None) -> EvalResult:
    """The validation loss as training reports it (runtime.train.observers.Evaluation over the whole split): the
    mean next-token loss over the targets of every window of ``seq_len + 1`` tokens of a token dataset split
    (``dataset``: runtime.data.TokenDataset; window w is tokens [w * seq_len, w * seq_len + seq_len + 1), so every
    token but the first is a target once), single device. UserError when the split is shorter than one window."""
    import jax
    import jax.numpy as jnp

    from model.generate import architecture
    from runtime.data import Loader

    check_request(cfg, np.zeros(2), seq_len)
    loader = Loader(dataset, batch_size, seq_len, shuffle=False, evaluation=True)
    nll = partial(masked_nll_sum, architecture(cfg), dtype=dtype or jnp.float32)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    total, predictions = 0.0, 0
    for i in range(loader.covering_batches):
        inputs, targets, *mask = loader.covering_batch(i)
        mask = mask[0] if mask else np.ones(inputs.shape, bool)
        total += float(nll(params, jnp.asarray(inputs), jnp.asarray(targets), jnp.asarray(mask)))
        predictions += int(mask.sum())
    loss = total / predictions
    return EvalResult(tokens=loader.n_windows * seq_len + 1, predictions=predictions, windows=loader.n_windows,
                      seq_len=seq_len, loss=loss, perplexity=math.exp(min(loss, 700.0)))


def evaluate_examples(cfg, params, packed, batch_size: int = 8) -> tuple[float, int]:
    """(mean loss over the trained tokens, their count) of packed fine-tuning examples (runtime.data.Packed: the
    completion tokens, prompts masked as in fine-tuning), single device, float32; batches padded to one shape."""
    import jax
    import jax.numpy as jnp

    from model.generate import architecture

    nll = partial(masked_nll_sum, architecture(cfg), dtype=jnp.float32)
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    total = 0.0
    for b in range(0, packed.rows, batch_size):
        w, m = packed.tokens[b:b + batch_size], packed.mask[b:b + batch_size]
        pad = batch_size - len(w)  # one shape for every batch: one compile
        w = np.concatenate([w, np.zeros((pad, w.shape[1]), np.int32)])
        m = np.concatenate([m, np.zeros((pad, m.shape[1]), bool)])
        total += float(nll(params, jnp.asarray(w[:, :-1]), jnp.asarray(w[:, 1:]), jnp.asarray(m)))
    n = int(packed.mask.sum())
    return total / n, n


def masked_nll_sum(cfg, params, inputs, targets, mask, dtype):
    """Summed next-token NLL over ``mask`` (model.gpt.loss_sum, the one masked loss), jitted once per process:
    inputs/targets int32 [B, T], mask bool [B, T] -> float32 scalar (nats)."""
    return _nll_sum_jit()(cfg, params, inputs, targets, mask, dtype=dtype)


@functools.lru_cache(maxsize=1)
def _nll_sum_jit():
    """The jitted summed NLL (gpt.loss_sum), built on first use so that importing this module does not import JAX."""
    import jax

    from model import gpt

    return jax.jit(gpt.loss_sum, static_argnames=("cfg", "dtype"))

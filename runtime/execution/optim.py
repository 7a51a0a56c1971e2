"""AdamW as Cerebras-GPT was trained with it, split so that any execution mode can apply it where the weights live.

Recipe (cerebras-gpt.md): beta1 0.9, beta2 0.95, eps from the model config, decoupled weight decay 0.1 on weight
matrices and embeddings (not LayerNorm parameters or biases), global-norm clipping at 1.0, linear warm-up then linear
or cosine decay to 10 % of the peak. muP presets: hidden matrices ('hidden' in gpt.param_labels) learn at peak / m_w.

The optimizer is an ``Optimizer``: ``tx``, an elementwise optax transformation (optax's AdamW chain plus the muP
scale); ``clip_norm``; and ``schedule``. Clipping needs the norm of *all* gradients, so the executors compute it
(they report it anyway) and scale the gradients before ``tx``. Everything in ``tx`` is per-element and its masks and
labels are functions of the tree it is given, so weight streaming can apply it one layer at a time (the way MemoryX
updates weights as they stream back) and get exactly what one update of the whole tree gives. ``Optimizer.chain`` is
the same optimizer as a single optax transformation (clipping included), for code that wants plain optax.

``build_optimizer(..., lr_in_state=True)`` holds the peak learning rate in the optimizer state (``PeakLRState``)
instead of compiling it in as a constant: the compiled step is then the same program for every peak rate, so a
learning-rate sweep (`wse study`) compiles once per model shape. The update is the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from model import gpt
from model.config import GPTConfig

# Fraction of the peak learning rate the schedule decays to (Cerebras-GPT: 10 %).
END_FRACTION = 0.1


@dataclass(frozen=True)
class Optimizer:
    """``tx``; ``clip_norm`` (None: no clipping); ``schedule`` (the base learning rate as a function of the step, for
    the metrics); ``elementwise``: ``tx`` acts per element and accepts any sub-tree of the parameters (true of
    build_optimizer's), which lets weight streaming apply it one layer at a time."""

    tx: optax.GradientTransformation
    clip_norm: float | None
    schedule: Callable[[Any], Any] | None
    elementwise: bool = False

    def init(self, params):
        return self.tx.init(params)

    @property
    def chain(self) -> optax.GradientTransformation:
        """One optax transformation: global-norm clipping followed by ``tx``."""
        if self.clip_norm is None:
            return self.tx
        return optax.chain(optax.clip_by_global_norm(self.clip_norm), self.tx)


def as_optimizer(optimizer) -> Optimizer:
    """Accept an Optimizer or a plain optax transformation (which gets no clipping and no lr metric)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, optax.GradientTransformation):
        return Optimizer(tx=optimizer, clip_norm=None, schedule=None, elementwise=False)
    raise TypeError(f"expected runtime.execution.optim.Optimizer or an optax.GradientTransformation, got {type(optimizer).__name__}")


def lr_schedule(peak: float, total_steps: int, warmup_steps: int = 0, decay: str = "linear",
                end_fraction: float = END_FRACTION) -> optax.Schedule:
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then linear or cosine decay to end_fraction * peak at
    ``total_steps`` (held there after)."""
    if decay not in ("linear", "cosine"):
        raise ValueError(f"lr decay must be 'linear' or 'cosine', got '{decay}'")
    decay_steps = max(total_steps - warmup_steps, 1)
    if decay == "cosine":
        tail = optax.cosine_decay_schedule(peak, decay_steps, alpha=end_fraction)
    else:
        tail = optax.linear_schedule(peak, peak * end_fraction, decay_steps)
    if warmup_steps <= 0:
        return tail
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup_steps), tail], [warmup_steps])


class PeakLRState(NamedTuple):
    """State of ``scale_by_peak_lr``: the step count (as optax's schedule states) and the peak rate."""

    count: jax.Array
    peak: jax.Array


def scale_by_peak_lr(unit_schedule: optax.Schedule, peak: float) -> optax.GradientTransformation:
    """optax.scale_by_learning_rate(peak x unit_schedule) with ``peak`` held in the state as a float32 scalar (a traced
    value in the compiled step, not a constant), so one compiled step serves every peak rate."""

    def init(params):
        del params
        return PeakLRState(jnp.zeros([], jnp.int32), jnp.asarray(peak, jnp.float32))

    def update(updates, state, params=None):
        del params
        rate = -state.peak * unit_schedule(state.count)
        updates = jax.tree.map(lambda u: jnp.asarray(rate, u.dtype) * u, updates)
        return updates, PeakLRState(optax.safe_increment(state.count), state.peak)

    return optax.GradientTransformation(init, update)


def _like(full, tree):
    """The part of ``full`` (a tree over all parameters) that ``tree`` (any sub-tree of the parameters, dict keys
    being parameter names) covers: lets masks and labels follow whatever sub-tree the optimizer is applied to."""
    if isinstance(tree, dict):
        return {k: _like(full[k], v) for k, v in tree.items()}
    return full


def build_optimizer(cfg: GPTConfig, *, total_steps: int, lr: float | None = None, warmup_steps: int = 0,
                    decay: str | None = None, end_fraction: float = END_FRACTION, b1: float = 0.9, b2: float = 0.95,
                    eps: float | None = None, weight_decay: float = 0.1, clip_norm: float | None = 1.0,
                    lr_in_state: bool = False) -> Optimizer:
    """The Cerebras-GPT AdamW for ``cfg``; lr, decay and eps default to the preset's published recipe.
    ``lr_in_state``: the peak rate lives in the optimizer state (``scale_by_peak_lr``); the optimizer then has no
    ``schedule`` (its rate is not a function of the step alone), so the step reports no ``lr`` metric."""
    peak = cfg.learning_rate if lr is None else lr
    decay = decay or cfg.lr_decay
    if lr_in_state:
        schedule, scale = None, scale_by_peak_lr(lr_schedule(1.0, total_steps, warmup_steps, decay, end_fraction), peak)
    else:
        schedule = lr_schedule(peak, total_steps, warmup_steps, decay, end_fraction)
        scale = optax.scale_by_learning_rate(schedule)
    decay_mask_full = gpt.weight_decay_mask(cfg)
    labels_full = gpt.param_labels(cfg)
    parts = [
        optax.scale_by_adam(b1=b1, b2=b2, eps=cfg.adam_eps if eps is None else eps),
        optax.add_decayed_weights(weight_decay, mask=lambda params: _like(decay_mask_full, params)),
        scale,
    ]
    if cfg.mup and cfg.width_multiplier != 1.0:
        hidden_scale = 1.0 / cfg.width_multiplier

        def mup_scale(updates, params=None):
            del params
            labels = _like(labels_full, updates)
            return jax.tree.map(lambda u, lab: u * hidden_scale if lab == "hidden" else u, updates, labels)

        parts.append(optax.stateless(mup_scale))
    return Optimizer(tx=optax.chain(*parts), clip_norm=clip_norm, schedule=schedule, elementwise=True)


def clip_fn(norm, clip_norm: float | None):
    """Per-leaf clipping for a given global norm, with optax.clip_by_global_norm's exact arithmetic (so that a mode
    can compute the norm where its gradients live and clip leaf by leaf, even layer by layer)."""
    if clip_norm is None:
        return lambda g: g
    trigger = norm < clip_norm
    return lambda g: jax.lax.select(trigger, g, (g / norm.astype(g.dtype)) * clip_norm)

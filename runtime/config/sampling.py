"""Generation settings at their numeric edges, checked the same way for `wse generate` and the tutorial's
``generate_text`` before any model is loaded: what transformers' ``generate`` accepts behaves as it does there, and
the rest is refused in one line (UserError). Pure Python (no JAX).

Edge by edge (transformers 5: ``GenerationConfig.validate`` and the logits processors):

- ``max_new_tokens`` 0 or less: refused (transformers: "must be greater than 0");
- ``min_new_tokens`` below 0 or above ``max_new_tokens``: refused (transformers would silently stop at the maximum);
- ``temperature`` 0: greedy (transformers: ``do_sample=False``); negative, NaN or infinite: refused (transformers: "a
  strictly positive float"); huge: allowed, sampling approaches uniform;
- ``top_k`` 0: off; negative: refused; larger than the vocabulary: every token kept (transformers clamps ``top_k`` to
  the vocabulary), so it becomes 0 here once it could not fit the decoder's int32;
- ``top_p`` 1: off; 0: only the most likely token is kept (transformers' top-p always keeps at least one token), which
  is ``top_k=1``; below 0, above 1 or NaN: refused (transformers: "a float > 0 and < 1");
- ``repetition_penalty`` 0 or less, NaN or infinite: refused (transformers: "a strictly positive float");
- ``seed``: any integer JAX's PRNG takes (a signed 64-bit one), else refused.
"""

from __future__ import annotations

import math

from runtime.errors import UserError

INT32_LIMIT = 2**31  # the decoder takes top_k as an int32
SEED_LIMIT = 2**63  # jax.random.key takes a signed 64-bit seed


def sampling_settings(*, max_new_tokens: int, temperature: float, top_k: int, top_p: float,
                      repetition_penalty: float, min_new_tokens: int, seed: int, cli: bool = False) -> dict:
    """The keyword arguments of model.generate.generate for these settings (``temperature``, ``top_k``, ``top_p``,
    ``repetition_penalty``, ``min_new_tokens``, ``seed``), with the edges mapped as the module doc says; UserError
    (one line, naming ``--option`` when ``cli`` else ``keyword``) for a value no generator can use."""
    name = (lambda k: "--" + k.replace("_", "-")) if cli else (lambda k: k)  # noqa: E731
    temperature, top_p, penalty = float(temperature), float(top_p), float(repetition_penalty)
    if max_new_tokens < 1:
        raise UserError(f"{name('max_new_tokens')} must be at least 1, got {max_new_tokens}")
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise UserError(f"{name('min_new_tokens')} must be between 0 and {name('max_new_tokens')} ({max_new_tokens}), "
                        f"got {min_new_tokens}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise UserError(f"{name('temperature')} must be a finite number >= 0 (0 = greedy), got {temperature}")
    if top_k < 0:
        raise UserError(f"{name('top_k')} must be >= 0 (0 = off), got {top_k}")
    if not 0 <= top_p <= 1:  # NaN fails this too
        raise UserError(f"{name('top_p')} must be between 0 and 1 (1 = off), got {top_p}")
    if not (math.isfinite(penalty) and penalty > 0):
        raise UserError(f"{name('repetition_penalty')} must be a finite number > 0 (1 = off), got {penalty}")
    if not -SEED_LIMIT <= seed < SEED_LIMIT:
        raise UserError(f"{name('seed')} must be a 64-bit integer, got {seed}")
    if top_k >= INT32_LIMIT:
        top_k = 0  # larger than any vocabulary: nothing to filter
    if top_p == 0:
        top_k, top_p = 1, 1.0  # the most likely token alone
    return {"temperature": temperature, "top_k": int(top_k), "top_p": top_p, "repetition_penalty": penalty,
            "min_new_tokens": int(min_new_tokens), "seed": int(seed)}

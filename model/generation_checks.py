"""Generation settings and lengths, checked in pure Python (model.sampling is the sampler itself): `wse generate`
refuses a bad setting before it starts JAX, and model.generate checks the same way before it compiles anything.

A bad value raises GenerationError (a ValueError) whose message is one line naming the setting, its range and what it
means at the edge (0 = greedy, 1 = off ...).
"""

from __future__ import annotations


class GenerationError(ValueError):
    """A generation request that cannot be run (prompt too long for the context, bad sampling setting)."""


def check_settings(max_new_tokens: int, temperature: float, top_k: int, top_p: float,
                   repetition_penalty: float = 1.0, min_new_tokens: int = 0) -> None:
    """Refuse (GenerationError) a sampling setting outside its range: ``max_new_tokens`` >= 1, ``temperature`` >= 0,
    ``top_k`` >= 0, ``top_p`` in (0, 1], ``repetition_penalty`` > 0, 0 <= ``min_new_tokens`` <= ``max_new_tokens``."""
    if max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not 0 <= temperature < float("inf"):  # NaN and inf too: they would turn every logit into NaN or 0
        raise GenerationError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}")
    if not 0 <= top_k < 2**31:  # any k at or above the vocabulary keeps every token, as transformers clamps it
        raise GenerationError(f"top_k must be >= 0 (0 = off) and below 2^31, got {top_k}")
    if not 0 < top_p <= 1:
        raise GenerationError(f"top_p must be in (0, 1] (1 = off), got {top_p}")
    if not 0 < repetition_penalty < float("inf"):
        raise GenerationError(f"repetition_penalty must be > 0 (1 = off), got {repetition_penalty}")
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise GenerationError(f"min_new_tokens must be between 0 and max_new_tokens ({max_new_tokens}), got {min_new_tokens}")


def check_length(prompt_tokens: int, max_new_tokens: int, context: int) -> None:
    """Refuse (GenerationError) a prompt of ``prompt_tokens`` tokens that cannot be continued by ``max_new_tokens``
    within a ``context``-token model."""
    if prompt_tokens + max_new_tokens > context:
        raise GenerationError(
            f"prompt of {prompt_tokens} tokens plus max_new_tokens {max_new_tokens} = {prompt_tokens + max_new_tokens} "
            f"exceeds the model context of {context} tokens; shorten the prompt or lower max_new_tokens")

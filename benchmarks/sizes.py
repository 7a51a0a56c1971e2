"""The sizes of a `wse bench` run: the models, each one's batch and sequence length, the timed steps, generation
and the scaling study.

``FULL`` is what the closing note quotes; ``QUICK`` (`wse bench --quick`) is sized to finish in under 3 minutes on 2
CPU cores: batch 8 x 128 tokens, 2 timed steps, the ``tiny`` and ``small`` presets only (``111M`` is skipped: one of
its training steps alone takes tens of seconds on 2 cores, and its compile another ten per mode), generation on
``small`` with 32 new tokens. On an accelerator the same sizes apply unless ``--models``/``--batch-size``/
``--seq-len`` say otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Sizes:
    """One run's sizes (suite.py applies the command line's overrides with ``dataclasses.replace``)."""

    models: tuple[str, ...]
    batch_size: dict[str, int]
    seq_len: dict[str, int]
    steps: int
    warmup: int
    gen_model: str
    gen_prompt: int
    gen_new_tokens: int
    gen_repeats: int
    scaling_model: str = "small"
    scaling_batch: int = 16
    scaling_seq: int = 128


QUICK = Sizes(models=("tiny", "small"), batch_size={"tiny": 8, "small": 8}, seq_len={"tiny": 128, "small": 128},
              steps=3, warmup=1, gen_model="small", gen_prompt=16, gen_new_tokens=32, gen_repeats=1,
              scaling_batch=8)
FULL = Sizes(models=("tiny", "small", "111M"), batch_size={"tiny": 16, "small": 16, "111M": 8},
             seq_len={"tiny": 128, "small": 128, "111M": 256}, steps=3, warmup=1, gen_model="111M", gen_prompt=32,
             gen_new_tokens=64, gen_repeats=2)

"""The sizes of a `wse bench` run: the models, each one's batch and sequence length, the timed steps, generation
and the scaling study.

``FULL`` is what the closing note quotes; ``QUICK`` (`wse bench --quick`) is sized to finish in under 3 minutes on 2
CPU cores: batch 8 x 128 tokens, 2 timed steps, the ``tiny`` and ``small`` presets only (``111M`` is skipped: one of
its training steps alone takes tens of seconds on 2 cores, and its compile another ten per mode), generation on
``small`` with 32 new tokens; ``FULL`` decodes ``small`` and ``111M`` (issue 29's CPU targets), 64 new tokens after
32. Both add one row of the Llama family (``llama-tiny``, `tiny`'s width and depth with RMSNorm, SwiGLU, rotary
positions and one K/V head for four query heads), in data mode only (``modes``), beside its PyTorch baseline
(transformers' LlamaForCausalLM). On an accelerator the same sizes apply unless ``--models``/``--batch-size``/
``--seq-len``/``--gen-model`` say otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sizes:
    """One run's sizes (suite.py applies the command line's overrides with ``dataclasses.replace``)."""

    models: tuple[str, ...]
    batch_size: dict[str, int]
    seq_len: dict[str, int]
    steps: int
    warmup: int
    gen_models: tuple[str, ...]
    gen_prompt: int
    gen_new_tokens: int
    gen_repeats: int
    scaling_model: str = "small"
    scaling_batch: int = 16
    scaling_seq: int = 128
    # the execution modes a model runs in when it should not run in all the bench's modes (model -> modes)
    modes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def model_modes(self, model: str, modes) -> list[str]:
        """The bench's ``modes`` that ``model`` runs in (``self.modes`` restricts some models)."""
        return [m for m in modes if m in self.modes.get(model, modes)]


FAMILY_ROWS = {"llama-tiny": ("data",)}
QUICK = Sizes(models=("tiny", "small", "llama-tiny"), batch_size={"tiny": 8, "small": 8, "llama-tiny": 8},
              seq_len={"tiny": 128, "small": 128, "llama-tiny": 128}, steps=3, warmup=1, gen_models=("small",),
              gen_prompt=16, gen_new_tokens=32, gen_repeats=2, scaling_batch=8, modes=FAMILY_ROWS)
FULL = Sizes(models=("tiny", "small", "111M", "llama-tiny"),
             batch_size={"tiny": 16, "small": 16, "111M": 8, "llama-tiny": 16},
             seq_len={"tiny": 128, "small": 128, "111M": 256, "llama-tiny": 128}, steps=3, warmup=1,
             gen_models=("small", "111M"), gen_prompt=32, gen_new_tokens=64, gen_repeats=5, modes=FAMILY_ROWS)

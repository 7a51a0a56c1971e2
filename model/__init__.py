"""The Cerebras-GPT model family: configs and presets (no JAX), the Flax NNX model, tokenizer, HF interop, generation.

Import the light parts from here; the JAX parts live in their own modules (``model.gpt``, ``model.generate``,
``model.hf``) so that ``import model`` stays cheap for the command line and the simulator.
"""

from model.config import EOT_TOKEN, PRESETS, PUBLISHED_PRESETS, GPTConfig, ModelConfigError, get_config

__all__ = ["EOT_TOKEN", "PRESETS", "PUBLISHED_PRESETS", "GPTConfig", "ModelConfigError", "get_config"]

"""The model: one config for Cerebras-GPT (7 sizes, SP and muP) and the Llama, Mistral, Qwen2/3 and GPT-J families
(configs and presets without JAX), the Flax NNX model, tokenizers, HF and ModelZoo interop, generation.

Import the light parts from here; the JAX parts live in their own modules (``model.gpt``, ``model.generate``,
``model.hf``) so that ``import model`` stays cheap for the command line and the simulator.
"""

from model.config import EOT_TOKEN, PRESETS, PUBLISHED_PRESETS, GPTConfig, ModelConfigError, get_config
from model.presets import ALL_PRESETS, FAMILY_PRESETS, PUBLISHED_FAMILY_PRESETS

__all__ = ["ALL_PRESETS", "EOT_TOKEN", "FAMILY_PRESETS", "PRESETS", "PUBLISHED_FAMILY_PRESETS", "PUBLISHED_PRESETS",
           "GPTConfig", "ModelConfigError", "get_config"]

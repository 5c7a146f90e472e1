"""Models with the interface ``logits = model(tokens)``."""

from .gpt import ARCHITECTURES, GPT, GPTConfig, KVCache
from .linear import LinearAR, LinearARConfig

__all__ = ["ARCHITECTURES", "GPT", "GPTConfig", "KVCache", "LinearAR", "LinearARConfig"]

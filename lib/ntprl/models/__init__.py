"""Models with the interface ``logits = model(tokens)``."""

from .gpt import GPT, GPTConfig, KVCache
from .linear import LinearAR, LinearARConfig

__all__ = ["GPT", "GPTConfig", "KVCache", "LinearAR", "LinearARConfig"]

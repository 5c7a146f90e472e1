"""Models with the interface ``logits = model(tokens)``."""

from .gpt import GPT, GPTConfig, KVCache

__all__ = ["GPT", "GPTConfig", "KVCache"]

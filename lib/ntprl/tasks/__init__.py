"""Tasks: data distributions, rewards and answer parsing. Tasks know nothing about models."""

from .parity import EOS, PAD, ParityTask

__all__ = ["ParityTask", "EOS", "PAD"]

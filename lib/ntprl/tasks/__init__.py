"""Tasks: data distributions, rewards and answer parsing. Tasks know nothing about models.

``ParityTask`` (chapters 1-4) and ``MultiplicationTask`` (chapter 5; its own token ids: the
module-level ``EOS`` and ``PAD`` here are parity's).

:class:`Task` writes down the interface the trainers, the sampler and the metrics rely on.
"""

from .base import Task
from .multiplication import MultiplicationTask
from .parity import EOS, PAD, ParityTask

__all__ = ["Task", "ParityTask", "MultiplicationTask", "EOS", "PAD"]

"""Tasks: data distributions, rewards and answer parsing. Tasks know nothing about models.

:class:`Task` writes down the interface the trainers, the sampler and the metrics rely on.
"""

from .base import Task
from .parity import EOS, PAD, ParityTask

__all__ = ["Task", "ParityTask", "EOS", "PAD"]

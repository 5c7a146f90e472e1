"""The interface the trainers, the sampler and the metrics rely on: what a task must offer.

:class:`~ntprl.tasks.ParityTask` is one task; a second (chapter 5's multiplication) plugs into
:func:`ntprl.train.ntp.train`, :func:`ntprl.train.rl.train` and :func:`ntprl.metrics.evaluate`
by offering the same members, without touching them. ``responses`` always means the generated
part of a batch, shape ``(n, L)``, PAD after each row's first EOS.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Task(Protocol):
    """A distribution of prompt + response sequences with a checkable answer."""

    EOS: int  # ends a response; predicted, and in the loss
    PAD: int  # fills a row after its EOS; never predicted, never sampled

    @property
    def vocab_size(self) -> int: ...        # tokens a model must be able to write

    @property
    def prompt_len(self) -> int: ...        # every prompt has this many tokens

    @property
    def long_len(self) -> int: ...          # tokens of a complete long answer, without EOS

    @property
    def max_response_len(self) -> int: ...  # tokens a generator must allow (long answer + EOS)

    @property
    def seq_len(self) -> int: ...           # prompt + longest response + EOS: a model's context

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` training sequences ``(n, seq_len)``: prompt, response, EOS, then PAD."""

    def prompts(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` fresh prompts ``(n, prompt_len)``."""

    def response_length(self, responses: torch.Tensor) -> torch.Tensor:
        """Tokens before the first EOS of each response, ``(n,)``."""

    def has_eos(self, responses: torch.Tensor) -> torch.Tensor:
        """Whether each response was closed by EOS (False: truncated), ``(n,)`` bool."""

    def is_long(self, responses: torch.Tensor) -> torch.Tensor:
        """Whether each response took the long (chain-of-thought) route, ``(n,)`` bool."""

    def reward_e2e(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """1.0 where the final answer is correct, else 0.0, ``(n,)`` float."""

    def reward_cot(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """1.0 where the whole response is a correct long or short answer, ``(n,)`` float."""

"""d-bit parity with an optional chain of thought, and the mixture D(p_cot).

A sequence is a prompt of ``d`` uniform bits followed by a response. With probability ``p_cot``
the response is *long*: the running parities ``s_1 .. s_d`` (``s_1 = x_1``,
``s_i = s_{i-1} XOR x_i``), then ``EOS``. Otherwise it is *short*: the parity ``s_d`` alone, then
``EOS``. There is no separator: the prompt length is fixed, so position ``d`` is always the first
response token. Batches are padded on the right with ``PAD``, which is never a loss target.

Vocabulary::

    0, 1   bits
    EOS=2  end of response (part of the response: it is predicted and it is in the loss)
    PAD=3  padding after EOS (never predicted, never in the loss)

``chain="leap2"`` (the paper's Fig. 15 variant) writes only every other running parity,
``s_2, s_4, ...``, and always ends on the answer ``s_d``; its long response has ``ceil(d/2)``
tokens.

The *answer* of a response is its last token before the first ``EOS``; a response without
``EOS`` (truncated) has no answer and is never correct. Its *length* counts the tokens before
``EOS``. A response is *long* when its length is at least 2, i.e. when the model did not take
the one-token short route (for the full chain every complete long response has length ``d``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EOS = 2
PAD = 3
CHAINS = ("full", "leap2")


def _check_bits(name: str, x: torch.Tensor, width: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(
            f"{name} must be a 2-D LongTensor (batch, length), got {type(x).__name__}"
            f"{'' if not isinstance(x, torch.Tensor) else ' of shape ' + str(tuple(x.shape))}")
    if width is not None and x.shape[1] != width:
        raise ValueError(f"{name} must have {width} columns, got shape {tuple(x.shape)}")


@dataclass(frozen=True)
class ParityTask:
    """The parity task of the paper, as a mixture of long and short demonstrations.

    Args:
        d: number of input bits (``d >= 2``; ``d >= 3`` for ``chain="leap2"``).
        p_cot: probability that a training sequence carries the long chain, in ``[0, 1]``.
        chain: ``"full"`` (every running parity) or ``"leap2"`` (every other one).
    """

    d: int
    p_cot: float
    chain: str = "full"

    vocab_size = 4
    EOS = EOS
    PAD = PAD

    def __post_init__(self):
        if not isinstance(self.d, int) or isinstance(self.d, bool) or self.d < 2:
            raise ValueError(f"d={self.d!r} is not allowed: d must be an integer >= 2")
        if self.chain not in CHAINS:
            raise ValueError(f"chain={self.chain!r} is not allowed: choose one of {CHAINS}")
        if self.chain == "leap2" and self.d < 3:
            raise ValueError(f"d={self.d} is not allowed with chain='leap2': the leap-2 chain "
                             "needs d >= 3 to be longer than the short answer")
        p = float(self.p_cot)
        if not (0.0 <= p <= 1.0):  # also rejects NaN
            raise ValueError(f"p_cot={self.p_cot!r} is not allowed: p_cot must lie in [0, 1]")

    # ---- sizes ---------------------------------------------------------------------------
    @property
    def prompt_len(self) -> int:
        """Tokens in a prompt (``d``)."""
        return self.d

    @property
    def long_len(self) -> int:
        """Tokens in a long response, not counting EOS (``d``, or ``ceil(d/2)`` for leap2)."""
        return self.d if self.chain == "full" else (self.d + 1) // 2

    @property
    def max_response_len(self) -> int:
        """Tokens a generator must be allowed to write for a long answer: ``long_len + 1`` (EOS)."""
        return self.long_len + 1

    @property
    def seq_len(self) -> int:
        """Length of a padded training sequence: prompt plus the long response with EOS."""
        return self.prompt_len + self.max_response_len

    # ---- data -------------------------------------------------------------------------------
    def prompts(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` prompts of ``d`` uniform bits, a LongTensor of shape ``(n, d)``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r} is not allowed: n must be a positive integer")
        return torch.randint(0, 2, (n, self.d), generator=generator)

    def chain_of(self, prompts: torch.Tensor) -> torch.Tensor:
        """The correct long response (without EOS) of each prompt: shape ``(n, long_len)``."""
        _check_bits("prompts", prompts, self.d)
        running = torch.cumsum(prompts, dim=1) % 2  # s_1 .. s_d
        if self.chain == "full":
            return running
        keep = list(range(1, self.d, 2))  # s_2, s_4, ... (0-based indices 1, 3, ...)
        if keep[-1] != self.d - 1:
            keep.append(self.d - 1)  # always end on the answer s_d
        return running[:, keep]

    @staticmethod
    def parity(prompts: torch.Tensor) -> torch.Tensor:
        """XOR of the bits of each prompt, shape ``(n,)``."""
        return prompts.sum(dim=1) % 2

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` sequences from D(p_cot): prompt + response + EOS, right-padded with PAD.

        Returns a LongTensor of shape ``(n, seq_len)``. The prompts and the long/short choice
        both come from ``generator``, so the same seed gives the same batch.
        """
        x = self.prompts(n, generator)
        is_long = torch.rand(n, generator=generator) < self.p_cot
        seq = torch.full((n, self.seq_len), PAD, dtype=torch.long)
        seq[:, : self.d] = x
        chain = self.chain_of(x)
        L, d = self.long_len, self.d
        seq[is_long, d : d + L] = chain[is_long]
        seq[is_long, d + L] = EOS
        short = ~is_long
        seq[short, d] = chain[short, -1]
        seq[short, d + 1] = EOS
        return seq

    # ---- reading responses -------------------------------------------------------------------
    @staticmethod
    def response_length(responses: torch.Tensor) -> torch.Tensor:
        """Tokens before the first EOS (all non-PAD tokens when there is no EOS), shape ``(n,)``."""
        _check_bits("responses", responses)
        is_eos = responses == EOS
        has_eos = is_eos.any(dim=1)
        first_eos = torch.where(has_eos, is_eos.int().argmax(dim=1), responses.shape[1])
        n_real = (responses != PAD).sum(dim=1)
        return torch.where(has_eos, first_eos, n_real)

    @staticmethod
    def has_eos(responses: torch.Tensor) -> torch.Tensor:
        """Whether each response was closed by EOS (False means truncated), shape ``(n,)``."""
        return (responses == EOS).any(dim=1)

    def answer(self, responses: torch.Tensor) -> torch.Tensor:
        """The answer of each response: its last token before the first EOS.

        ``responses`` holds only the generated part (no prompt), shape ``(n, L)``. Returns a
        LongTensor of shape ``(n,)`` with 0 or 1, or -1 where there is no answer (no EOS, EOS
        first, or a non-bit token before EOS).
        """
        length = self.response_length(responses)
        ok = self.has_eos(responses) & (length > 0)
        idx = (length - 1).clamp(min=0)
        last = responses.gather(1, idx[:, None]).squeeze(1) if responses.shape[1] else idx
        ok = ok & (last <= 1)
        return torch.where(ok, last, torch.full_like(last, -1))

    def reward_e2e(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """End-to-end reward: 1.0 where the answer equals the parity, else 0.0; shape ``(n,)``."""
        _check_bits("prompts", prompts, self.d)
        return (self.answer(responses) == self.parity(prompts)).float()

    def reward_cot(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """Chain reward: 1.0 where every response token is right, else 0.0; shape ``(n,)``.

        A response earns it when it is exactly the correct long chain then EOS, or exactly the
        correct short answer then EOS (anything after the first EOS is ignored).
        """
        _check_bits("prompts", prompts, self.d)
        _check_bits("responses", responses)
        n, width = responses.shape
        length = self.response_length(responses)
        closed = self.has_eos(responses)
        chain = self.chain_of(prompts)
        L = self.long_len
        ok_long = closed & (length == L)
        if width >= L:
            ok_long = ok_long & (responses[:, :L] == chain).all(dim=1)
        else:
            ok_long = torch.zeros(n, dtype=torch.bool)
        ok_short = (closed & (length == 1) & (responses[:, 0] == chain[:, -1]) if width
                    else closed & False)
        return (ok_long | ok_short).float()

    def is_long(self, responses: torch.Tensor) -> torch.Tensor:
        """Whether each response went past the one-token short route (length >= 2); ``(n,)``."""
        return self.response_length(responses) >= 2

    # ---- display -----------------------------------------------------------------------------
    def pretty(self, seq) -> str:
        """One sequence as text: ``'1 0 1 1 | 1 1 0 1 <eos>'`` (prompt | response; PAD dropped)."""
        seq = torch.as_tensor(seq).tolist()
        if len(seq) < self.d:
            raise ValueError(f"seq has {len(seq)} tokens, fewer than the prompt length d={self.d}")
        names = {0: "0", 1: "1", EOS: "<eos>", PAD: ""}
        def words(toks):
            return " ".join(names.get(t, f"<{t}>") for t in toks if t != PAD)
        return f"{words(seq[: self.d])} | {words(seq[self.d :])}".rstrip()

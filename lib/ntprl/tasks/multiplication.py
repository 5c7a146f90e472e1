"""n-digit multiplication with an optional chain of thought: chapter 5's task.

A prompt is ``a × b =`` with two n-digit operands, every number written least-significant digit
first (the order in which carries flow, so each digit depends only on what is already written).
With probability ``p_cot`` the response is *long*: a marker ``:`` and then the running sums of
the schoolbook method, ``S_1 | S_2 | ... | S_n`` with ``S_i = a * (b mod 10^i)`` (the partial
products ``a * b_j * 10^(j-1)`` of the first ``i`` digits of ``b``, added up), each written
with ``2n`` digits; the last, ``S_n``, is the product. Otherwise the response is *short*: the
product's ``2n`` digits alone. Both end with ``EOS``; batches are right-padded with ``PAD``.

This format is the book's choice (the paper's was not available to it). Two properties make
it a good twin of parity's: every step of the chain is a small local computation (one digit of
``S_i`` is a digit of ``S_{i-1}``, one digit product and a carry), and the *route is decided at
the first response token* (``:`` or a digit), which sets where greedy decoding turns long
(:func:`ntprl.theory.divergent_threshold`; chapter 5 derives it).

Vocabulary::

    0 .. 9   digits
    × = 10   =  = 11   (the prompt)
    : = 12   opens the chain        | = 13  separates two running sums
    EOS = 14  end of response (predicted, in the loss)    PAD = 15  padding (never a target)

A response's *answer* is the number written by its last ``2n`` tokens before the first EOS (all
digits), else none (-1); a response without EOS has no answer. A response is *long* when it
opens with ``:``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TIMES, EQUALS, MARK, SEP, EOS, PAD = 10, 11, 12, 13, 14, 15
NAMES = {**{i: str(i) for i in range(10)}, TIMES: "×", EQUALS: "=", MARK: ":", SEP: "|",
         EOS: "<eos>", PAD: ""}
MAX_DIGITS = 9  # products up to 18 digits fit int64


def digits(x: torch.Tensor, width: int) -> torch.Tensor:
    """The ``width`` decimal digits of each integer of ``x`` (n,), least significant first."""
    powers = 10 ** torch.arange(width, dtype=torch.long)
    return (x[:, None] // powers) % 10


def number(d: torch.Tensor) -> torch.Tensor:
    """The integers written by digit rows ``d`` (n, width), least significant first."""
    powers = 10 ** torch.arange(d.shape[1], dtype=torch.long)
    return (d * powers).sum(dim=1)


@dataclass(frozen=True)
class MultiplicationTask:
    """Multiplication of two ``n_digits``-digit numbers as a mixture of worked (long) and
    answer-only (short) demonstrations.

    Args:
        n_digits: digits of each operand (1 to 9).
        p_cot: probability that a training sequence carries the long chain, in ``[0, 1]``.
    """

    n_digits: int
    p_cot: float

    vocab_size = 16
    EOS = EOS
    PAD = PAD
    MARK = MARK  # the first token of every long response: the route is decided there

    def __post_init__(self):
        n = self.n_digits
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_DIGITS:
            raise ValueError(f"n_digits={n!r} is not allowed: it must be an integer from 1 to "
                             f"{MAX_DIGITS}")
        p = float(self.p_cot)
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            raise ValueError(f"p_cot={self.p_cot!r} is not allowed: p_cot must lie in [0, 1]")

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def d(self) -> int:
        """The task's size, by the name the trainers' progress bars use: ``n_digits``."""
        return self.n_digits

    @property
    def width(self) -> int:
        """Digits of each running sum and of the product: ``2 * n_digits``."""
        return 2 * self.n_digits

    @property
    def prompt_len(self) -> int:
        """``a``, ``×``, ``b``, ``=``: ``2 * n_digits + 2`` tokens."""
        return 2 * self.n_digits + 2

    @property
    def long_len(self) -> int:
        """Tokens of a long response without EOS: ``:``, n running sums, n - 1 separators."""
        return 1 + self.n_digits * self.width + self.n_digits - 1

    @property
    def short_len(self) -> int:
        """Tokens of a short response without EOS: the product's ``2 * n_digits`` digits."""
        return self.width

    @property
    def max_response_len(self) -> int:
        """Tokens a generator must be allowed to write for a long answer: ``long_len + 1``."""
        return self.long_len + 1

    @property
    def seq_len(self) -> int:
        """Length of a padded training sequence: prompt plus the long response with EOS."""
        return self.prompt_len + self.long_len + 1

    # ---- data --------------------------------------------------------------------------------
    def operands(self, n: int, generator: torch.Generator | None = None):
        """``n`` pairs ``(a, b)`` of uniform ``n_digits``-digit numbers (no leading zero)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r} is not allowed: n must be a positive integer")
        lo, hi = (10 ** (self.n_digits - 1) if self.n_digits > 1 else 0), 10 ** self.n_digits
        ab = torch.randint(lo, hi, (2, n), generator=generator)
        return ab[0], ab[1]

    def encode_prompts(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The prompts ``a × b =`` of integer tensors ``a``, ``b``: shape ``(n, prompt_len)``."""
        k = self.n_digits
        x = torch.empty(len(a), self.prompt_len, dtype=torch.long)
        x[:, :k], x[:, k], x[:, k + 1: 2 * k + 1] = digits(a, k), TIMES, digits(b, k)
        x[:, -1] = EQUALS
        return x

    def prompts(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` fresh prompts, a LongTensor of shape ``(n, prompt_len)``."""
        return self.encode_prompts(*self.operands(n, generator))

    def decode_prompts(self, prompts: torch.Tensor):
        """The operands ``(a, b)`` of each prompt."""
        k = self.n_digits
        if not isinstance(prompts, torch.Tensor) or prompts.dim() != 2 or \
                prompts.shape[1] != self.prompt_len:
            raise ValueError(f"prompts must be a 2-D LongTensor with {self.prompt_len} columns")
        return number(prompts[:, :k]), number(prompts[:, k + 1: 2 * k + 1])

    def chain_of(self, prompts: torch.Tensor) -> torch.Tensor:
        """The correct long response (without EOS) of each prompt: ``(n, long_len)``."""
        a, b = self.decode_prompts(prompts)
        parts = [torch.full((len(a), 1), MARK)]
        for i in range(1, self.n_digits + 1):
            if i > 1:
                parts.append(torch.full((len(a), 1), SEP))
            parts.append(digits(a * (b % 10 ** i), self.width))
        return torch.cat(parts, dim=1)

    def product_of(self, prompts: torch.Tensor) -> torch.Tensor:
        """The correct short response (without EOS): the product's digits, ``(n, 2n)``."""
        a, b = self.decode_prompts(prompts)
        return digits(a * b, self.width)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` sequences of the mixture: prompt + response + EOS, right-padded with PAD.

        Returns a LongTensor ``(n, seq_len)``; operands and the long/short choice both come
        from ``generator``, so the same seed gives the same batch."""
        x = self.prompts(n, generator)
        is_long = torch.rand(n, generator=generator) < self.p_cot
        seq = torch.full((n, self.seq_len), PAD, dtype=torch.long)
        P, L, S = self.prompt_len, self.long_len, self.short_len
        seq[:, :P] = x
        seq[is_long, P:P + L] = self.chain_of(x[is_long])
        seq[is_long, P + L] = EOS
        short = ~is_long
        seq[short, P:P + S] = self.product_of(x[short])
        seq[short, P + S] = EOS
        return seq

    # ---- reading responses -------------------------------------------------------------------
    @staticmethod
    def response_length(responses: torch.Tensor) -> torch.Tensor:
        """Tokens before the first EOS (all non-PAD tokens when there is no EOS), ``(n,)``."""
        is_eos = responses == EOS
        has = is_eos.any(dim=1)
        first = torch.where(has, is_eos.int().argmax(dim=1), responses.shape[1])
        return torch.where(has, first, (responses != PAD).sum(dim=1))

    @staticmethod
    def has_eos(responses: torch.Tensor) -> torch.Tensor:
        """Whether each response was closed by EOS (False means truncated), ``(n,)``."""
        return (responses == EOS).any(dim=1)

    def answer(self, responses: torch.Tensor) -> torch.Tensor:
        """The number written by the last ``2n`` tokens before each response's first EOS, or
        -1 when there is none (no EOS, fewer tokens, or a non-digit among them); ``(n,)``."""
        n, W = len(responses), self.width
        length = self.response_length(responses)
        ok = self.has_eos(responses) & (length >= W)
        if responses.shape[1] == 0:
            return torch.full((n,), -1, dtype=torch.long)
        idx = (length[:, None] - W + torch.arange(W)).clamp(0, responses.shape[1] - 1)
        last = responses.gather(1, idx)
        ok = ok & (last <= 9).all(dim=1)
        return torch.where(ok, number(last.clamp(max=9)), torch.full((n,), -1, dtype=torch.long))

    def reward_e2e(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """1.0 where the answer is the product, else 0.0; shape ``(n,)``."""
        a, b = self.decode_prompts(prompts)
        return (self.answer(responses) == a * b).float()

    def reward_cot(self, prompts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """1.0 where the response is exactly the correct long chain or the correct short answer
        (then EOS; anything after the first EOS is ignored), else 0.0; shape ``(n,)``."""
        closed, length = self.has_eos(responses), self.response_length(responses)
        out = torch.zeros(len(responses), dtype=torch.bool)
        for want in (self.chain_of(prompts), self.product_of(prompts)):
            L = want.shape[1]
            if responses.shape[1] >= L:
                out |= closed & (length == L) & (responses[:, :L] == want).all(dim=1)
        return out.float()

    def is_long(self, responses: torch.Tensor) -> torch.Tensor:
        """Whether each response took the long route (opens with ``:``); ``(n,)``."""
        if responses.shape[1] == 0:
            return torch.zeros(len(responses), dtype=torch.bool)
        return responses[:, 0] == MARK

    # ---- display -----------------------------------------------------------------------------
    def pretty(self, seq) -> str:
        """One sequence as text, numbers shown most significant digit first as usual:
        ``'12 × 34 = : 0048 | 0408 <eos>'`` (PAD dropped)."""
        seq = [t for t in torch.as_tensor(seq).tolist() if t != PAD]
        if len(seq) < self.prompt_len:
            raise ValueError(f"seq has {len(seq)} tokens, fewer than the prompt length "
                             f"{self.prompt_len}")
        words, run = [], []
        for t in seq:
            if t <= 9:
                run.append(str(t))
                continue
            if run:
                words.append("".join(reversed(run)))
                run = []
            words.append(NAMES.get(t, f"<{t}>"))
        if run:
            words.append("".join(reversed(run)))
        return " ".join(words)

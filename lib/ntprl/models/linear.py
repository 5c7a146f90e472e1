"""The autoregressive *linear* model of the theory chapter (after Malach 2024).

Each next token is a softmax of a linear function of a **frozen** feature map of the prefix:

- bits become signs, ``0 -> +1`` and ``1 -> -1`` (so XOR becomes a product), and EOS/PAD
  become ``0``;
- the features at position ``t`` are a constant, the prefix values ``v_1 .. v_t``, and all their
  pairwise products ``v_i v_j`` (``i < j <= t``);
- every position has its own linear head from these features to logits over ``{0, 1, EOS}``
  (PAD is never predicted: its logit is fixed at -1e4).

Why it fits the story: a chain step ``s_i = s_{i-1} XOR x_i`` is, in signs, the product of two
prefix values — one pairwise feature — so NTP learns every chain step; the decision to continue
after the first response token ``r_1`` depends on whether ``r_1 = x_1``, i.e. on the feature
``r_1 x_1``; but the short answer is the product of all ``d`` prompt signs, a degree-``d``
monomial that is orthogonal to every feature (for ``d >= 3``), so no head can predict it. (The
calibration theorem needs ``d >= 4``: after ``r_1 = x_1`` the short sequences are those with
``v_2 ... v_d = +1``, which at ``d = 3`` is the pairwise feature ``v_2 v_3``.)

The head over pairwise features is stored as one matrix per position and output token, and the
forward pass evaluates ``c + L v + v^T Q v`` with ``Q`` masked to the prefix (strictly upper
triangular), so the ``O(T^2)`` features are never materialised. The interface is that of
:class:`~ntprl.models.GPT`: ``logits = model(tokens)``; there is no KV cache (the sampler
recomputes), and ``config.block_size`` bounds the sequence length. For fast sampling it offers
``make_cache``: a :class:`PrefixCache` keeps the prefix, and a call with the cache computes the
logits of the new positions only, or of the last one with ``last_only=True`` (the sampler then
does O(T^2) work per token, not O(T^3)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class LinearARConfig:
    block_size: int = 64     # longest sequence (prompt + response)
    vocab_size: int = 4      # 0, 1, EOS, PAD (tokens 0/1 are bits, 2 is EOS, 3 is PAD)
    n_out: int = 3           # predicted tokens: 0, 1, EOS
    init_std: float = 0.0    # initial weights (0: the uniform predictor)

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_out"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} is not allowed: it must be a positive integer")
        if self.n_out >= self.vocab_size:
            raise ValueError(f"n_out={self.n_out} is not allowed: "
                             f"it must be below vocab_size={self.vocab_size}")


def signs(tokens: torch.Tensor) -> torch.Tensor:
    """The frozen embedding: bit 0 -> +1, bit 1 -> -1, EOS/PAD (and anything else) -> 0."""
    v = torch.zeros(tokens.shape, dtype=torch.float32, device=tokens.device)
    v[tokens == 0] = 1.0
    v[tokens == 1] = -1.0
    return v


class PrefixCache:
    """The tokens written so far, so that only new positions are computed."""

    def __init__(self, batch_size: int, max_len: int, device=None):
        self.tokens = torch.zeros(batch_size, max_len, dtype=torch.long, device=device)
        self.pos = 0

    def select(self, rows: torch.Tensor):
        """Keep only the batch rows ``rows`` (indices into the current batch)."""
        self.tokens = self.tokens[rows]


class LinearAR(nn.Module):
    """``logits[b, t] = c_t + L_t v_{<=t} + sum_{i<j<=t} Q_t[i, j] v_i v_j``
    for tokens 0, 1, EOS."""

    def __init__(self, config: LinearARConfig):
        super().__init__()
        self.config = config
        T, K = config.block_size, config.n_out
        self.bias = nn.Parameter(torch.zeros(T, K))
        self.lin = nn.Parameter(torch.zeros(T, K, T))
        self.quad = nn.Parameter(torch.zeros(T, K, T, T))
        if config.init_std:
            for p in (self.lin, self.quad):
                nn.init.normal_(p, std=config.init_std)
        t = torch.arange(T)
        # position t sees values 0..t; pairwise products only for i < j <= t
        self.register_buffer("lin_mask", (t[None, :] <= t[:, None]).float(), persistent=False)
        upper = torch.triu(torch.ones(T, T), diagonal=1)
        self.register_buffer("quad_mask",
                             upper[None] * (t[None, None, :] <= t[:, None, None]).float(),
                             persistent=False)

    def num_params(self) -> int:
        """Trainable parameters that can ever be non-zero (masked entries excluded)."""
        K = self.config.n_out
        return int(self.bias.numel() + K * self.lin_mask.sum() + K * self.quad_mask.sum())

    def make_cache(self, batch_size: int, max_len: int) -> PrefixCache:
        if max_len > self.config.block_size:
            raise ValueError(f"max_len={max_len} is not allowed: "
                             f"the model's block_size is {self.config.block_size}")
        return PrefixCache(batch_size, max_len, self.bias.device)

    def forward(self, tokens: torch.Tensor, cache: PrefixCache | None = None,
                last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, vocab_size); (B, 1, vocab_size) for the last position only with
        ``last_only=True`` (what a sampler needs)."""
        B, T = tokens.shape
        start = 0 if cache is None else cache.pos
        L = start + T  # prefix length after these tokens
        if L > self.config.block_size:
            raise ValueError(f"sequence of length {L} is longer than "
                             f"block_size={self.config.block_size}")
        if cache is not None:
            cache.tokens[:, start:L] = tokens
            tokens = cache.tokens[:, :L]
            cache.pos = L
        v = signs(tokens)                                                    # (B, L)
        # positions to predict from
        rows = slice(L - 1 if last_only else start, L)
        lin = self.lin[rows, :, :L] * self.lin_mask[rows, None, :L]          # (T, K, L)
        quad = self.quad[rows, :, :L, :L] * self.quad_mask[rows, None, :L, :L]
        # the theorem's model computes in float32 under any autocast (the trainers' bf16)
        with torch.autocast(tokens.device.type, enabled=False):
            out = self.bias[rows] + torch.einsum("tki,bi->btk", lin, v)
            qv = torch.einsum("tkij,bj->btki", quad, v)                      # (B, T, K, L)
            out = out + (qv * v[:, None, None, :]).sum(-1)
        pad = torch.full((*out.shape[:2], self.config.vocab_size - self.config.n_out), -1e4,
                         device=tokens.device)
        return torch.cat([out, pad], dim=-1)

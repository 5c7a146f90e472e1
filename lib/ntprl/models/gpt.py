"""A small decoder-only transformer (GPT), readable top to bottom.

Pre-norm blocks, causal self-attention through ``scaled_dot_product_attention``, and a
key/value cache for fast autoregressive sampling. The model knows nothing about tasks:
``logits = model(tokens)``.

Two families, as in the paper's experiments (:data:`ARCHITECTURES`): GPT-2 style (learned
absolute positions, LayerNorm, a GELU MLP, biases; the default) and Mistral style (rotary
position embeddings, RMSNorm, a SwiGLU MLP, no biases). Each choice is also a
:class:`GPTConfig` field of its own.

The KV cache (:class:`KVCache`) is preallocated for a batch and a maximum length. Calling
``model(tokens, cache=cache)`` treats ``tokens`` as the continuation of what the cache already
holds: it appends their keys/values and returns logits for the new positions only
(``last_only=True``: for the last new position only, skipping the work no logit needs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

POSITIONS = ("learned", "rope")
NORMS = ("layer", "rms")
MLPS = ("gelu", "swiglu")
# The paper trains "GPT-2 and Mistral-style decoders"; these are the GPTConfig fields that make
# each. Left out of the Mistral style: grouped-query attention (fewer key/value heads, a memory
# saving) and sliding-window attention (its 4096-token window is longer than any sequence here)
ARCHITECTURES = {
    "gpt2": dict(positions="learned", norm="layer", mlp="gelu", bias=True),
    "mistral": dict(positions="rope", norm="rms", mlp="swiglu", bias=False),
}


@dataclass
class GPTConfig:
    """The model's sizes; a bad field raises ``ValueError`` naming it."""
    vocab_size: int = 4        # parity: 0, 1, EOS, PAD
    block_size: int = 128      # longest sequence the model accepts (prompt + response)
    n_layer: int = 2           # transformer blocks
    n_head: int = 4            # attention heads; n_embd must be divisible by n_head
    n_embd: int = 128          # width of the residual stream
    dropout: float = 0.0       # dropout on attention and MLP outputs (0: deterministic training)
    bias: bool = True          # biases in Linear and LayerNorm layers
    positions: str = "learned" # "learned" absolute position embeddings, or "rope"
    rope_base: float = 10000.0 # RoPE frequency base (used only with positions="rope")
    norm: str = "layer"        # "layer" (LayerNorm) or "rms" (RMSNorm: no centring, no bias)
    mlp: str = "gelu"          # "gelu" (width 4 * n_embd) or "swiglu" (gated; width
                               # 8/3 * n_embd rounded up to a multiple of 32: about as
                               # many weights)

    # fields added after checkpoints were made: left out of a run's identity at these values
    # (ntprl.train.common.model_identity), so that the GPT-2-style runs before them stay valid
    LATER_FIELDS = {"norm": "layer", "mlp": "gelu"}

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} is not allowed: it must be a positive integer")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not allowed: it must be divisible by "
                             f"n_head={self.n_head}")
        for name, allowed in (("positions", POSITIONS), ("norm", NORMS), ("mlp", MLPS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: "
                                 f"choose one of {allowed}")
        if self.positions == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"n_embd // n_head = {self.n_embd // self.n_head} is not allowed with "
                             "positions='rope': the head size must be even")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} is not allowed: it must lie in [0, 1)")


class KVCache:
    """Keys and values of every layer for a batch, preallocated up to ``max_len`` positions."""

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device=None, dtype=None):
        if max_len > config.block_size:
            raise ValueError(f"max_len={max_len} is not allowed: the model's block_size is "
                             f"{config.block_size}")
        hs = config.n_embd // config.n_head
        shape = (config.n_layer, 2, batch_size, config.n_head, max_len, hs)
        self.kv = torch.empty(shape, device=device, dtype=dtype)
        self.pos = 0  # positions already filled

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store the new keys/values of ``layer``; return all keys/values so far."""
        t0, t1 = self.pos, self.pos + k.shape[2]
        if t1 > self.kv.shape[4]:
            raise ValueError(f"the cache holds {self.kv.shape[4]} positions; "
                             f"cannot write up to {t1}")
        self.kv[layer, 0, :, :, t0:t1] = k
        self.kv[layer, 1, :, :, t0:t1] = v
        return self.kv[layer, 0, :, :, :t1], self.kv[layer, 1, :, :, :t1]

    def select(self, rows: torch.Tensor):
        """Keep only the batch rows ``rows`` (indices into the current batch), e.g. to drop
        rows that have finished."""
        self.kv = self.kv[:, :, rows]


def rope_tables(head_size: int, length: int, base: float, device=None):
    """cos/sin tables of shape (length, head_size/2) for rotary position embeddings."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_size, 2, device=device).float() / head_size)
    angles = torch.outer(torch.arange(length, device=device).float(), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of the two halves of the head dimension by
    position-dependent angles, in ``x``'s dtype (as Hugging Face's Llama does: under bf16
    autocast the float32 tables would otherwise turn q and k, but not v, into float32)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def _cpu_autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def attention(q, k, v, **kw):
    """``F.scaled_dot_product_attention``; on a CPU under autocast, in float32 (half-precision
    inputs upcast, the kernel outside autocast): there the bf16 kernel's backward is ~7x slower
    than float32's at the book's sizes (the matrix products around it stay in bf16). Every
    case of :class:`CausalSelfAttention` comes here, a decoding step's one query included
    (the sampler runs without autocast)."""
    if q.device.type == "cpu" and _cpu_autocast_on():
        if q.dtype in (torch.bfloat16, torch.float16):
            q, k, v = q.float(), k.float(), v.float()
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q, k, v, **kw)
    return F.scaled_dot_product_attention(q, k, v, **kw)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, with the key/value cache of the sampler."""
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x, rope=None, cache: KVCache | None = None, last_only: bool = False):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if rope is not None:  # (cos, sin) for the positions of these T tokens
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if last_only:  # every position's keys/values, but only the last position's query
            q = q[:, :, -1:]
        past = 0
        if cache is not None:
            past = cache.pos
            k, v = cache.append(self.layer, k, v)
        drop = self.dropout if self.training else 0.0
        Tq = q.shape[2]
        if Tq == 1:  # one query that sees every key so far (a decoding step): no mask
            y = attention(q, k, v, dropout_p=drop)
        elif past == 0:  # no earlier positions: ordinary causal attention
            y = attention(q, k, v, is_causal=True, dropout_p=drop)
        else:  # a chunk after a filled cache: query i sees keys up to past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = self.proj(y.transpose(1, 2).reshape(B, Tq, C))
        return F.dropout(y, drop) if drop else y


class MLP(nn.Module):
    """The block's feed-forward part: ``proj(gelu(fc(x)))`` with width 4 * n_embd, or the
    SwiGLU ``proj(silu(gate(x)) * fc(x))`` with width ~8/3 * n_embd (about as many
    weights: three matrices instead of two)."""
    def __init__(self, config: GPTConfig):
        super().__init__()
        C = config.n_embd
        hidden = 4 * C if config.mlp == "gelu" else 32 * math.ceil(8 * C / 3 / 32)
        self.gate = (nn.Linear(C, hidden, bias=config.bias) if config.mlp == "swiglu"
                     else None)
        self.fc = nn.Linear(C, hidden, bias=config.bias)
        self.proj = nn.Linear(hidden, C, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x):
        drop = self.dropout if self.training else 0.0
        h = F.gelu(self.fc(x)) if self.gate is None else F.silu(self.gate(x)) * self.fc(x)
        y = self.proj(h)
        return F.dropout(y, drop) if drop else y


class RMSNorm(nn.Module):
    """``x / rms(x) * weight``: LayerNorm without centring or bias (``nn.RMSNorm`` of torch
    >= 2.4, written out for older ones)."""
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(config: GPTConfig) -> nn.Module:
    """The normalisation layer ``config.norm`` names."""
    if config.norm == "rms":
        return RMSNorm(config.n_embd)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


class Block(nn.Module):
    """One pre-norm transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x, rope=None, cache=None, last_only=False):
        a = self.attn(self.ln1(x), rope, cache, last_only)
        if last_only:  # no later layer reads the other positions: carry only the last one
            x = x[:, -1:]
        x = x + a
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer: ``model(tokens) -> logits`` of shape (B, T, vocab_size)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = (nn.Embedding(config.block_size, config.n_embd)
                        if config.positions == "learned" else None)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = make_norm(config)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.positions == "rope":
            cos, sin = rope_tables(config.n_embd // config.n_head, config.block_size,
                                   config.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def make_cache(self, batch_size: int, max_len: int) -> KVCache:
        """An empty KV cache for ``batch_size`` rows and up to ``max_len`` positions."""
        p = next(self.parameters())
        return KVCache(self.config, batch_size, max_len, device=p.device, dtype=p.dtype)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None,
                last_only: bool = False) -> torch.Tensor:
        """Logits (B, T, vocab_size) for ``tokens`` (B, T), or (B, 1, vocab_size) for the last
        position only with ``last_only=True``: what a sampler needs. Then the last block
        computes keys and values at every position (the cache keeps them) but its attention
        output and MLP only at the last one: that saves three eighths of the work of encoding
        a prompt with two layers, a fifth with four."""
        B, T = tokens.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of length {start + T} is longer than block_size="
                             f"{self.config.block_size}")
        x = self.tok_emb(tokens)
        rope = None
        if self.pos_emb is not None:
            x = x + self.pos_emb.weight[start : start + T]
        else:
            rope = (self.rope_cos[start : start + T], self.rope_sin[start : start + T])
        for i, block in enumerate(self.blocks):
            x = block(x, rope, cache, last_only and i == len(self.blocks) - 1)
        if cache is not None:
            cache.pos += T
        return self.head(self.ln_f(x))

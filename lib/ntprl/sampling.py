"""One batched sampler for every model in the book: greedy or temperature sampling.

``generate`` continues a batch of equal-length prompts. Each row stops at its first EOS; the
positions after it are PAD. When the model offers a KV cache (``model.make_cache``) the prompt
is encoded once and each new token costs one position of work; otherwise every step recomputes
the whole prefix (``use_cache=False`` forces that naive path, which the tests compare against).

Randomness comes only from ``generator``: every step draws one uniform number per row, finished
rows included, so the same generator gives the same samples with or without the cache.
"""

from __future__ import annotations

import torch

from .train.common import evaluating


def _next_token(logits: torch.Tensor, temperature: float, generator) -> torch.Tensor:
    """Pick one token per row from the last-position ``logits`` (B, V)."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    u = torch.rand(probs.shape[0], 1, generator=generator).to(probs.device)
    # inverse-CDF sampling: the first token whose cumulative probability exceeds u. The float
    # CDF can end below 1, so u is scaled by its last value: an unscaled u above it would fall
    # off the end (onto the last token, PAD)
    cdf = probs.cumsum(dim=-1)
    idx = (cdf <= u * cdf[:, -1:]).sum(dim=-1)
    return idx.clamp(max=probs.shape[-1] - 1)


@torch.no_grad()
def generate(model, prompts: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
             generator: torch.Generator | None = None, *, eos_id: int | None, pad_id: int,
             use_cache: bool | None = None):
    """Continue ``prompts`` for up to ``max_new_tokens`` tokens.

    Args:
        model: any module with ``logits = model(tokens)``; a ``make_cache(batch, max_len)``
            method enables the KV cache.
        prompts: LongTensor (B, P), all prompts of the same length ``P``.
        max_new_tokens: most tokens to write per row, EOS included.
        temperature: 0 for greedy decoding (argmax), else sample from softmax(logits / T).
        generator: CPU ``torch.Generator`` for sampling; the same state gives the same samples.
        eos_id: token that ends a row (a task's ``EOS``); ``None`` never stops early (every
            row writes exactly ``max_new_tokens`` tokens; used by benchmarks).
        pad_id: token written after a row's EOS (a task's ``PAD``); it is never sampled.
        use_cache: ``None`` uses the KV cache when the model has one; ``False`` recomputes the
            full prefix at every step.

    Returns:
        ``(tokens, response_mask)``: ``tokens`` (B, P + L) holds the prompts and the responses,
        where ``L <= max_new_tokens`` is the longest response written (generation stops when
        every row has finished); ``response_mask`` (B, P + L, bool) is True on each row's
        response tokens up to and including its EOS, False on the prompt and on PAD.
    """
    if not isinstance(prompts, torch.Tensor) or prompts.dim() != 2 or prompts.shape[1] < 1:
        raise ValueError("prompts must be a non-empty 2-D LongTensor (batch, prompt_len)")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} is not allowed: it must be a positive "
                         "integer")
    if not temperature >= 0.0:
        raise ValueError(f"temperature={temperature!r} is not allowed: it must be >= 0")
    block = getattr(getattr(model, "config", None), "block_size", None)
    B, P = prompts.shape
    if block is not None and P + max_new_tokens > block:
        raise ValueError(f"max_new_tokens={max_new_tokens} is not allowed: prompt ({P}) plus "
                         f"max_new_tokens exceeds the model's block_size={block}")
    device = next(model.parameters()).device
    with evaluating(model):
        if use_cache is None:
            use_cache = hasattr(model, "make_cache")
        tokens = torch.empty(B, P + max_new_tokens, dtype=torch.long, device=device)
        tokens[:, :P] = prompts.to(device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        mask = torch.zeros(B, P + max_new_tokens, dtype=torch.bool, device=device)
        cache = model.make_cache(B, P + max_new_tokens) if use_cache else None
        t = P
        while t < P + max_new_tokens:
            if cache is not None:
                logits = model(tokens[:, cache.pos : t], cache=cache)[:, -1]
            else:
                logits = model(tokens[:, :t])[:, -1]
            logits[:, pad_id] = float("-inf")  # PAD is filler, never a token to write
            nxt = _next_token(logits, temperature, generator)
            tokens[:, t] = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            mask[:, t] = ~done  # a row's EOS is still part of its response
            if eos_id is not None:
                done |= nxt == eos_id
            t += 1
            if bool(done.all()):
                break
        tokens, mask = tokens[:, :t], mask[:, :t]
    return tokens, mask

"""One batched sampler for every model in the book: greedy or temperature sampling.

``generate`` continues a batch of equal-length prompts. Each row stops at its first EOS; the
positions after it are PAD. When the model offers a KV cache (``model.make_cache``) the prompt
is encoded once and each new token costs one position of work; otherwise every step recomputes
the whole prefix (``use_cache=False`` forces that naive path, which the tests compare against).

Finished rows leave the batch: once a quarter of the rows still being decoded have written
EOS, the working batch (and the cache, through its ``select(rows)``) keeps only the others. On
a mixture, where most answers are one token long, the remaining steps then cost a fraction of
a full batch.

Decoding the same prompts more than once (greedily, then by sampling, as
``ntprl.metrics.evaluate`` does) need not encode them more than once: ``encode`` runs the
prompts through the model and keeps the cache and the last position's logits, and
``generate(..., encoded=...)`` decodes from them, one decoding after another (not in parallel
threads: they share the cache's storage beyond the prompt). The tokens are the same as without
it; only the prompt pass is shared (at batch 1024 and d = 16 it is about a third of a greedy
decoding's time).

Randomness comes only from ``generator``: every step draws one uniform number per row of the
*whole* batch, finished rows included, so the same generator gives the same samples with or
without the cache, and however the batch shrinks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from .train.common import evaluating


def _next_token(logits: torch.Tensor, temperature: float,
                u: torch.Tensor | None) -> torch.Tensor:
    """Pick one token per row from the last-position ``logits`` (B, V), by inverse-CDF
    sampling with the uniform numbers ``u`` (B, 1) (unused when greedy)."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    # inverse-CDF sampling: the first token whose cumulative probability exceeds u. The float
    # CDF can end below 1, so u is scaled by its last value: an unscaled u above it would fall
    # off the end (onto the last token, PAD)
    cdf = probs.cumsum(dim=-1)
    idx = (cdf <= u * cdf[:, -1:]).sum(dim=-1)
    return idx.clamp(max=probs.shape[-1] - 1)


@dataclass(eq=False)
class Encoded:
    """Prompts already run through a model (:func:`encode`): what every decoding of them
    shares. Valid while the model's weights stay as they were."""
    model: torch.nn.Module  # the model that encoded them
    prompts: torch.Tensor  # (B, P): a copy of the prompts
    max_len: int           # positions the cache holds: P + max_new_tokens
    cache: object          # the model's cache, holding the P prompt positions
    logits: torch.Tensor   # (B, V): the logits at the last prompt position


def _check(model, prompts, max_new_tokens):
    if not isinstance(prompts, torch.Tensor) or prompts.dim() != 2 or 0 in prompts.shape:
        shape = tuple(prompts.shape) if isinstance(prompts, torch.Tensor) else type(prompts)
        raise ValueError(f"prompts={shape} is not allowed: it must be a non-empty 2-D LongTensor "
                         "(batch, prompt_len)")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} is not allowed: it must be a positive "
                         "integer")
    block = getattr(getattr(model, "config", None), "block_size", None)
    P = prompts.shape[1]
    if block is not None and P + max_new_tokens > block:
        raise ValueError(f"max_new_tokens={max_new_tokens} is not allowed: prompt ({P}) plus "
                         f"max_new_tokens exceeds the model's block_size={block}")


@torch.no_grad()
def encode(model, prompts: torch.Tensor, max_new_tokens: int) -> Encoded:
    """Run ``prompts`` (B, P) through ``model`` once, into a KV cache with room for
    ``max_new_tokens`` more positions, for :func:`generate`'s ``encoded``: decoding the same
    prompts several times then costs one prompt pass. The model must have a cache
    (``make_cache``)."""
    _check(model, prompts, max_new_tokens)
    if not hasattr(model, "make_cache"):
        raise ValueError(f"{type(model).__name__} has no KV cache (make_cache): encode needs one")
    device = next(model.parameters()).device
    B, P = prompts.shape
    with evaluating(model):
        cache = model.make_cache(B, P + max_new_tokens)
        logits = model(prompts.to(device=device, dtype=torch.long), cache=cache,
                       last_only=True)[:, -1]
    return Encoded(model, prompts.clone(), P + max_new_tokens, cache, logits)


@torch.no_grad()
def generate(model, prompts: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
             generator: torch.Generator | None = None, *, eos_id: int | None, pad_id: int,
             use_cache: bool | None = None, compact: bool = True,
             encoded: Encoded | None = None):
    """Continue ``prompts`` for up to ``max_new_tokens`` tokens.

    Args:
        model: any module with ``logits = model(tokens)``; a ``make_cache(batch, max_len)``
            method enables the KV cache, and then the model must also take
            ``model(tokens, cache=cache, last_only=True)``: the logits of the last of
            ``tokens`` only, the other positions' keys/values written to ``cache``.
        prompts: LongTensor (B, P), all prompts of the same length ``P``.
        max_new_tokens: most tokens to write per row, EOS included.
        temperature: 0 for greedy decoding (argmax), else sample from softmax(logits / T).
        generator: CPU ``torch.Generator`` for sampling; the same state gives the same samples.
        eos_id: token that ends a row (a task's ``EOS``); ``None`` never stops early (every
            row writes exactly ``max_new_tokens`` tokens; used by benchmarks).
        pad_id: token written after a row's EOS (a task's ``PAD``); it is never sampled.
        use_cache: ``None`` uses the KV cache when the model has one; ``False`` recomputes the
            full prefix at every step.
        compact: drop finished rows from the working batch (module docstring); ``False``
            decodes every row to the end (the same tokens; for benchmarks and tests).
        encoded: these ``prompts`` already encoded by :func:`encode` for this model and
            ``max_new_tokens``; decoding starts from a copy of its cache (it stays reusable:
            a cache writes only at and after its ``pos``, and ``select`` replaces its tensors).

    Returns:
        ``(tokens, response_mask)``: ``tokens`` (B, P + L) holds the prompts and the responses,
        where ``L <= max_new_tokens`` is the longest response written (generation stops when
        every row has finished); ``response_mask`` (B, P + L, bool) is True on each row's
        response tokens up to and including its EOS, False on the prompt and on PAD.
    """
    _check(model, prompts, max_new_tokens)
    if not 0.0 <= temperature < float("inf"):
        raise ValueError(f"temperature={temperature!r} is not allowed: it must be >= 0 and "
                         "finite")
    if eos_id is not None and eos_id == pad_id:
        raise ValueError(f"eos_id={eos_id!r} is not allowed: it equals pad_id, which is never "
                         "written, so no row could end")
    B, P = prompts.shape
    if encoded is not None:
        if use_cache is False:
            raise ValueError("encoded is not allowed with use_cache=False: it holds a cache")
        if encoded.model is not model:
            raise ValueError("encoded is not allowed: another model encoded these prompts")
        if encoded.max_len != P + max_new_tokens or encoded.prompts.shape != prompts.shape or \
                not torch.equal(encoded.prompts, prompts.to(encoded.prompts.device)):
            raise ValueError("encoded is not allowed: it was made for other prompts or another "
                             "max_new_tokens (encode(model, prompts, max_new_tokens))")
    device = next(model.parameters()).device
    with evaluating(model):
        if use_cache is None:
            use_cache = hasattr(model, "make_cache")
        tokens = torch.full((B, P + max_new_tokens), pad_id, dtype=torch.long, device=device)
        tokens[:, :P] = prompts.to(device)
        mask = torch.zeros(B, P + max_new_tokens, dtype=torch.bool, device=device)
        cache = logits = None  # logits: the next position's, when already computed
        if encoded is not None:
            # a shallow copy is enough: a cache writes only at and after its ``pos`` (what
            # this decoding then reads it wrote itself) and ``select`` replaces its tensors
            cache, logits = copy.copy(encoded.cache), encoded.logits.clone()
        elif use_cache:  # the prompt pass, as encode makes it
            fresh = encode(model, prompts, max_new_tokens)
            cache, logits = fresh.cache, fresh.logits
        rows = rows_cpu = None  # the rows still in the working batch (None: all of them)
        done = torch.zeros(B, dtype=torch.bool, device=device)  # per working row
        t = P
        while t < P + max_new_tokens:
            if logits is None:
                start = cache.pos if cache is not None else 0  # the cache holds what came before
                ctx = tokens[:, start:t] if rows is None else tokens[rows, start:t]
                if cache is not None:
                    logits = model(ctx, cache=cache, last_only=True)[:, -1]
                else:
                    logits = model(ctx)[:, -1]
            logits[:, pad_id] = float("-inf")  # PAD is filler, never a token to write
            u = None
            if temperature != 0.0:  # one number per row of the whole batch, every step
                u = torch.rand(B, 1, generator=generator)
                u = (u if rows_cpu is None else u[rows_cpu]).to(device)
            nxt = _next_token(logits, temperature, u)
            logits = None
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            if rows is None:
                tokens[:, t], mask[:, t] = nxt, ~done  # a row's EOS is part of its response
            else:
                tokens[rows, t], mask[rows, t] = nxt, ~done
            if eos_id is not None:
                done |= nxt == eos_id
            t += 1
            n_done = int(done.sum())
            if n_done == len(done):
                break
            if cache is not None and not hasattr(cache, "select"):
                continue  # a cache that cannot drop rows keeps the whole batch
            if compact and 4 * n_done >= len(done):  # drop the finished rows
                keep = (~done).nonzero().squeeze(1)
                rows = keep if rows is None else rows[keep]
                rows_cpu = rows.cpu()
                done = done[keep]
                if cache is not None:
                    cache.select(keep)
        tokens, mask = tokens[:, :t], mask[:, :t]
    return tokens, mask

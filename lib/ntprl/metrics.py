"""How a model answers a task: greedy and sampled accuracy, long fraction, response length.

``evaluate`` draws ``n`` fresh prompts from its own seeded generator (so evaluating never moves
any training random stream), decodes them greedily and by sampling at ``temperature``, and
summarises both. Every value is a plain Python number or list, ready for JSON.
"""

from __future__ import annotations

import torch

from .sampling import generate


def _check_room(task, max_new_tokens: int):
    if max_new_tokens < task.max_response_len:
        raise ValueError(f"max_new_tokens={max_new_tokens} is not allowed: the long response needs "
                         f"{task.max_response_len} tokens (long_len={task.long_len} plus EOS)")


def summarize(task, prompts: torch.Tensor, responses: torch.Tensor, max_len: int) -> dict:
    """Accuracy, long fraction and length statistics of one batch of responses."""
    lengths = task.response_length(responses).cpu()
    correct = task.reward_e2e(prompts.cpu(), responses.cpu())
    return {
        "acc": correct.mean().item(),
        "long_frac": task.is_long(responses).float().mean().item(),
        "len_mean": lengths.float().mean().item(),
        "len_median": lengths.float().median().item(),
        "len_hist": torch.bincount(lengths, minlength=max_len + 1).tolist(),
        "truncated_frac": (~task.has_eos(responses)).float().mean().item(),
    }


@torch.no_grad()
def evaluate(model, task, n: int = 1000, generator: torch.Generator | None = None, *,
             seed: int = 0, temperature: float = 1.0, max_new_tokens: int | None = None,
             batch_size: int = 1024, modes: tuple[str, ...] = ("greedy", "sampled")) -> dict:
    """Greedy and sampled behaviour of ``model`` on ``n`` fresh prompts of ``task``.

    Args:
        n: number of prompts (the same prompts are used for greedy and sampled decoding).
        generator: source of prompts and samples; by default a fresh one seeded with ``seed``.
        temperature: sampling temperature for the "sampled" numbers (1.0: the model's own
            distribution, which is what length calibration is about).
        max_new_tokens: generation budget; default ``task.max_response_len``. A smaller value
            raises ``ValueError``, since a long answer could not be completed.
        batch_size: prompts decoded at once.
        modes: which decodings to run, ``"greedy"`` and/or ``"sampled"``.

    Returns a dict with ``greedy_acc``, ``sampled_acc``, ``greedy_long_frac``,
    ``sampled_long_frac``, ``greedy_len_mean``/``_median``/``_hist``, the same for ``sampled``,
    ``greedy_truncated_frac``/``sampled_truncated_frac`` and ``n``. ``*_len_hist[k]`` counts
    responses with ``k`` tokens before EOS.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not allowed: n must be a positive integer")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} is not allowed: sampling needs temperature > 0")
    max_new_tokens = task.max_response_len if max_new_tokens is None else max_new_tokens
    _check_room(task, max_new_tokens)
    bad = [m for m in modes if m not in ("greedy", "sampled")] or not modes
    if bad:
        raise ValueError(f"modes={modes!r} is not allowed: use 'greedy' and/or 'sampled'")
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    prompts = task.prompts(n, generator)
    out = {"n": n}
    for mode in modes:
        temp = 0.0 if mode == "greedy" else temperature
        responses = []
        for chunk in prompts.split(batch_size):
            tokens, _ = generate(model, chunk, max_new_tokens, temp, generator,
                                 eos_id=task.EOS, pad_id=task.PAD)
            resp = torch.full((len(chunk), max_new_tokens), task.PAD, dtype=torch.long)
            resp[:, : tokens.shape[1] - chunk.shape[1]] = tokens[:, chunk.shape[1]:].cpu()
            responses.append(resp)
        stats = summarize(task, prompts, torch.cat(responses), max_new_tokens)
        out.update({f"{mode}_{k}": v for k, v in stats.items()})
    return out

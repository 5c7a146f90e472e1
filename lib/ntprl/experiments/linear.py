"""Chapter 3: the theorems, simulated on the autoregressive linear model."""

from __future__ import annotations

from functools import partial

import torch

from ..metrics import evaluate
from ..models import LinearAR, LinearARConfig
from ..scale import Scale, device
from ..tasks import ParityTask
from ..train import ntp, rl
from .common import (EVAL_SEED, Part, eval_fn, first_step, measure, part_identity,
                     reached_target, run_parts, steps_to_learn)


def make_linear(task, seed: int = 0) -> LinearAR:
    """A zero-initialised :class:`~ntprl.models.LinearAR` sized for ``task``, on the book's
    device (``seed`` is kept for a uniform signature: the zero start draws nothing)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LinearAR(LinearARConfig(block_size=task.seq_len, vocab_size=task.vocab_size))
    return model.to(device())


_TRAINED: dict = {}  # in-process memo: the same NTP run serves several parts


def linear_ntp(task, scale: Scale, seed: int = 0, steps: int | None = None) -> LinearAR:
    """NTP of a linear model on ``task`` with the scale's linear settings (AdamW, lr decaying
    over the last half). A run is a pure function of its arguments, so it is memoised
    in-process (the threshold grid and the STaR parts share their p_cot); every call returns a
    fresh model with the trained weights."""
    steps = steps or scale.linear_steps
    key = (repr(task), scale, seed, steps)
    model = make_linear(task, seed)
    if key not in _TRAINED:
        ntp.train(model, task, steps, scale.linear_batch, scale.linear_lr, seed=seed,
                  decay_frac=0.5, progress=False)
        _TRAINED[key] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(_TRAINED[key])
    return model


def linear_theory(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 3: the theorems, simulated on the autoregressive linear model. (1) NTP over the
    p_cot grid: calibration, the two decision probabilities, greedy accuracy. (2) STaR rounds to
    95% greedy accuracy for small p_cot, and, from ``linear_contrast_p``, a fixed number of
    rounds with few (``linear_contrast_samples``) and with many (``linear_star_samples``)
    samples per round. (3) plain-SGD steps to learn the chain (p_cot = 1) against d, and greedy
    accuracy after short-only training (p_cot = 0) at each d. NTP uses AdamW with a decaying
    lr, which fits the chain and the calibration fast; STaR rounds and the scaling use plain
    SGD, the optimiser of the theorem (Adam's per-weight normalisation turns gradient noise on
    the many idle pairwise weights into a prompt-to-prompt spread of the decision
    probabilities)."""
    out = {"experiment": "linear_theory", "scale": scale.name, "d": scale.linear_d,
           "steps": scale.linear_steps, "batch_size": scale.linear_batch}
    d, parts = scale.linear_d, {"threshold": [], "star": [], "star_samples": [], "chain": [],
                                "short": []}

    def part(group, key, fn, cost=1.0, **settings):
        parts[group].append(Part(f"{key}-s{seed}", fn, part_identity(
            scale, seed, part=key.split("-")[1], **settings), cost))

    for p in scale.threshold_p_grid:
        part("threshold", f"lin-th-p{p:.4f}", partial(linear_threshold_part, ParityTask(d, p),
                                                      scale, seed), p_cot=p)
    for p in scale.linear_rounds_p:
        part("star", f"lin-star-p{p:.4f}",
             partial(linear_star_part, ParityTask(d, p), scale, seed,
                     scale.linear_star_samples, 2 * scale.rounds_max, stop=True), cost=3, p_cot=p)
    for n in (scale.linear_contrast_samples, scale.linear_star_samples):
        part("star_samples", f"lin-star-n{n}",
             partial(linear_star_part, ParityTask(d, scale.linear_contrast_p), scale, seed, n,
                     scale.linear_contrast_rounds, stop=False), cost=3, samples=n)
    for dd in scale.linear_ds:
        part("chain", f"lin-chain-d{dd}", partial(linear_chain_part, dd, scale, seed), d=dd)
        part("short", f"lin-short-d{dd}", partial(linear_short_part, dd, scale, seed), d=dd)
    flat = [x for group in parts.values() for x in group]
    results = iter(run_parts(flat, workdir, progress=progress, desc="linear_theory"))
    for group, group_parts in parts.items():
        out[group] = [next(results) for _ in group_parts]
    return out


def linear_threshold_part(task, scale: Scale, seed: int = 0, *, checkpoint=None) -> dict:
    """:func:`linear_theory` at one p_cot of the threshold grid: NTP, then
    :func:`~.common.measure` (``checkpoint`` unused: the run is short)."""
    return {"p_cot": task.p_cot, "final": measure(linear_ntp(task, scale, seed), task, scale,
                                                  seed)}


def linear_star_part(task, scale: Scale, seed: int, samples: int, rounds: int, *, stop: bool,
                     checkpoint=None) -> dict:
    """STaR rounds of plain SGD from the linear NTP model of ``task``, ``samples`` answers a
    round, stopping at the target greedy accuracy when ``stop``."""
    model = linear_ntp(task, scale, seed)
    start = measure(model, task, scale, seed)
    hist = rl.train(model, task, "star", rounds, lr=scale.linear_sgd_lr, optimizer="sgd",
                    star_samples=samples, star_steps=scale.linear_star_steps,
                    star_batch=scale.linear_star_batch, seed=seed, progress=False,
                    eval_every=1, eval_fn=eval_fn(task, scale, seed),
                    stop_when=reached_target if stop else None, checkpoint=checkpoint)
    return {"p_cot": task.p_cot, "samples": samples, "start": start,
            "rounds": first_step(hist), "history": hist,
            "long_frac": [r["long_frac"] for r in hist if "long_frac" in r]}


def linear_chain_part(d: int, scale: Scale, seed: int = 0, *, checkpoint=None) -> dict:
    """Plain-SGD steps for the linear model to learn d-bit parity from full chains."""
    chain = ParityTask(d, 1.0)
    return steps_to_learn(chain, scale, seed, max_steps=scale.linear_max_steps,
                          eval_every=scale.linear_eval_every, model=make_linear(chain, seed),
                          batch_size=scale.linear_batch, lr=scale.linear_sgd_lr,
                          optimizer="sgd", checkpoint=checkpoint, progress=False)


def linear_short_part(d: int, scale: Scale, seed: int = 0, *, checkpoint=None) -> dict:
    """Greedy accuracy of the linear model after NTP on short-only d-bit parity."""
    short = ParityTask(d, 0.0)
    return {"d": d, "steps": scale.linear_short_steps,
            "final": evaluate(linear_ntp(short, scale, seed, scale.linear_short_steps), short,
                              scale.eval_n, seed=seed + EVAL_SEED, modes=("greedy",))}

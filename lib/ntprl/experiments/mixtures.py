"""Chapters 1 and 2: how hard parity is without a chain, and NTP on the mixtures D(p_cot)."""

from __future__ import annotations

from functools import partial

import torch

from ..metrics import decoding_tree
from ..scale import Scale
from ..tasks import ParityTask
from ..train import ntp
from .common import (EXAMPLE_SEED, Part, eval_fn, make_model, measure, part_identity,
                     resumable, run_parts, steps_to_learn)


def parity_hardness(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 1: samples needed to learn d-bit parity from short-only data (p_cot = 0) and from
    full chains (p_cot = 1), over the d grids of ``scale``, each run capped at
    ``scale.hardness_max_steps`` steps."""
    runs = [("short", d, 0.0) for d in scale.hardness_ds_short]
    runs += [("chain", d, 1.0) for d in scale.hardness_ds_chain]
    out = {"experiment": "parity_hardness", "scale": scale.name, "seed": seed,
           "batch_size": scale.batch_size, "max_steps": scale.hardness_max_steps,
           "target": scale.hardness_target, "short": [], "chain": []}
    parts = [Part(f"hardness-{kind}-d{d}-s{seed}",
                  partial(steps_to_learn, ParityTask(d, p), scale, seed, progress=False),
                  part_identity(scale, seed, part="hardness", d=d, p_cot=p),
                  cost=ParityTask(d, p).seq_len)  # longer sequences, (mostly) longer runs
             for kind, d, p in runs]
    results = run_parts(parts, workdir, progress=progress, desc="parity_hardness")
    for (kind, _, _), result in zip(runs, results):
        out[kind].append(result)
    return out


def train_and_measure(task, scale: Scale, steps: int, seed: int = 0, *, eval_every: int = 0,
                      checkpoint=None, progress: bool = True) -> dict:
    """NTP on ``task`` for ``steps`` steps (lr decayed over the last 20%: calibration is only as
    sharp as the optimiser's noise), then :func:`~ntprl.metrics.evaluate`,
    :func:`~ntprl.metrics.branch_probs` and the :func:`~ntprl.metrics.decoding_tree` of one fixed
    prompt. With ``eval_every`` the history carries greedy and sampled metrics along the way."""
    model = make_model(task, scale, seed)
    hist = ntp.train(model, task, steps, scale.batch_size, scale.lr, seed=seed, decay_frac=0.2,
                     warmup_steps=scale.warmup_steps, eval_every=eval_every,
                     eval_fn=eval_fn(task, scale, seed) if eval_every else None,
                     checkpoint=checkpoint, progress=progress,
                     desc=f"NTP d={task.d} p_cot={task.p_cot:.3g} seed={seed}")
    final = measure(model, task, scale, seed)
    example = task.prompts(1, torch.Generator().manual_seed(seed + EXAMPLE_SEED))[0]
    return {"d": task.d, "p_cot": task.p_cot, "seed": seed, "steps": steps, "final": final,
            "tree": decoding_tree(model, task, example), "history": hist}


def threshold(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 2: NTP on D(p_cot) over a grid of p_cot (dense around 1/3) and seeds. For each
    run: greedy and sampled accuracy, greedy and sampled long fraction, greedy length, and the
    model's own first-token and continue probabilities."""
    grid = [(p, s) for s in range(seed, seed + scale.seeds) for p in scale.threshold_p_grid]
    runs = run_parts([Part(f"threshold-p{p:.4f}-s{s}",
                           partial(train_and_measure, ParityTask(scale.d, p), scale,
                                   scale.threshold_steps, s, progress=False),
                           part_identity(scale, s, part="threshold", p_cot=p))
                      for p, s in grid], workdir, progress=progress, desc="threshold")
    return {"experiment": "threshold", "scale": scale.name, "d": scale.d,
            "steps": scale.threshold_steps, "batch_size": scale.batch_size, "runs": runs}


def more_data(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 2: one long NTP run at p_cot = 0.25; greedy accuracy, long fraction and loss
    against samples seen (the paper: ~10^7 samples do not help)."""
    task = ParityTask(scale.more_data_d, 0.25)
    run = resumable(
        workdir, f"more_data-s{seed}",
        lambda ck: train_and_measure(task, scale, scale.more_data_steps, seed,
                                     eval_every=scale.more_data_eval_every, checkpoint=ck,
                                     progress=progress),
        part_identity(scale, seed, part="more_data"))
    return {"experiment": "more_data", "scale": scale.name, "batch_size": scale.batch_size, **run}

"""The book's experiments, as functions of a :class:`~ntprl.scale.Scale` and a seed.

Each experiment returns a plain, JSON-serialisable dict, so the same code runs from a notebook,
a test or the command line, and its result can be stored and plotted later.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .metrics import evaluate
from .models import GPT, GPTConfig
from .scale import Scale, device
from .tasks import ParityTask
from .train import ntp


def make_model(task, scale: Scale, seed: int = 0, **overrides) -> GPT:
    """A GPT sized by ``scale`` whose context fits ``task``'s longest sequence, on the book's
    device. ``seed`` fixes the initial weights; ``overrides`` change GPTConfig fields."""
    torch.manual_seed(seed)
    cfg = dict(vocab_size=task.vocab_size, block_size=task.seq_len, n_layer=scale.n_layer,
               n_head=scale.n_head, n_embd=scale.n_embd)
    cfg.update(overrides)
    return GPT(GPTConfig(**cfg)).to(device())


def steps_to_learn(task, scale: Scale, seed: int = 0, max_steps: int | None = None,
                   eval_every: int | None = None, target: float | None = None,
                   progress: bool = True) -> dict:
    """Train a fresh model by NTP on ``task`` until greedy accuracy reaches ``target``.

    Greedy accuracy is measured on ``scale.eval_n`` fresh prompts every ``eval_every`` steps.
    Returns ``{"d", "p_cot", "steps", "samples", "final_acc", "curve"}`` where ``steps`` is the
    first checked step at or above ``target`` (None if the budget ran out) and ``curve`` lists
    ``[step, greedy_acc]`` pairs.
    """
    max_steps = max_steps or scale.hardness_max_steps
    eval_every = eval_every or scale.hardness_eval_every
    target = scale.hardness_target if target is None else target
    model = make_model(task, scale, seed)

    def eval_fn(m, step):
        return evaluate(m, task, scale.eval_n, seed=seed + 1, modes=("greedy",))

    hist = ntp.train(model, task, max_steps, scale.batch_size, scale.lr, seed=seed,
                     eval_every=eval_every, eval_fn=eval_fn,
                     stop_when=lambda rec: rec["greedy_acc"] >= target, progress=progress,
                     desc=f"d={task.d} p_cot={task.p_cot}")
    curve = [[r["step"], r["greedy_acc"]] for r in hist if "greedy_acc" in r]
    reached = curve[-1][1] >= target
    steps = curve[-1][0] if reached else None
    return {"d": task.d, "p_cot": task.p_cot, "steps": steps,
            "samples": None if steps is None else steps * scale.batch_size,
            "final_acc": curve[-1][1], "curve": curve}


def parity_hardness(scale: Scale, seed: int = 0, progress: bool = True) -> dict:
    """Chapter 1: samples needed to learn d-bit parity from short-only data (p_cot = 0) and from
    full chains (p_cot = 1), over the d grids of ``scale``, each run capped at
    ``scale.hardness_max_steps`` steps."""
    runs = [("short", d, 0.0) for d in scale.hardness_ds_short]
    runs += [("chain", d, 1.0) for d in scale.hardness_ds_chain]
    out = {"experiment": "parity_hardness", "scale": scale.name, "seed": seed,
           "batch_size": scale.batch_size, "max_steps": scale.hardness_max_steps,
           "target": scale.hardness_target, "short": [], "chain": []}
    for kind, d, p in tqdm(runs, desc="parity_hardness", disable=not progress):
        out[kind].append(steps_to_learn(ParityTask(d, p), scale, seed, progress=False))
    return out

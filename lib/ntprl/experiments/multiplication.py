"""Chapter 5: the same mechanism on n-digit multiplication, trained from scratch.

Every NTP run of the chapter uses ``scale.mult_batch`` sequences a step. At ``fast`` and ``gpu``
(``scale.mult_recal_steps > 0``) the model that learns the chain in the samples-to-learn
experiment at ``n = scale.mult_n`` is also the *base* of the mixtures: each mixture's model is
that base after ``mult_recal_steps`` NTP steps on D(p_cot) — the chain is learned once, only its
share moves, as in chapter 4's ``rounds_vs_p``. At ``paper`` (``mult_recal_steps = 0``) every
mixture is trained from scratch for ``scale.mult_steps`` steps.
"""

from __future__ import annotations

import pathlib


from ..progress import bar as progress_bar
from ..metrics import evaluate, route_probs
from ..scale import Scale, precision
from ..tasks import MultiplicationTask
from ..train import ntp
from ..train.common import atomic_save, load_checkpoint, run_identity
from .common import (BRANCH_SEED, EVAL_SEED, MORE_NTP_SEED, RECAL_SEED, eval_fn, load_model,
                     make_model, part_identity, pretrain, resumable, steps_to_learn)
from .rl_post_training import rl_run

_MEMO: dict = {}  # in-process: the base model and the mixtures' models, shared by experiments


def mult_measure(model, task, scale: Scale, seed: int = 0) -> dict:
    """:func:`~ntprl.metrics.evaluate` plus :func:`~ntprl.metrics.route_probs` of a model."""
    out = evaluate(model, task, scale.eval_n, seed=seed + EVAL_SEED)
    out.update(route_probs(model, task, scale.eval_n, seed=seed + BRANCH_SEED))
    return out


def _learn(task, scale: Scale, seed: int, checkpoint=None, model=None) -> dict:
    """Samples-to-learn of one (n, p_cot): NTP until 95% greedy accuracy or the budget, the lr
    decaying over the budget's last 20% (at a constant lr the chain's greedy accuracy stalls
    near 90% at this batch size: the optimiser's noise, not the task, sets the last digits)."""
    return steps_to_learn(task, scale, seed, max_steps=scale.mult_max_steps,
                          eval_every=scale.mult_eval_every, batch_size=scale.mult_batch,
                          checkpoint=checkpoint, model=model, decay_frac=0.2, progress=False)


def chain_base(scale: Scale, seed: int = 0, *, workdir=None) -> tuple[dict, dict]:
    """The samples-to-learn run on full chains (p_cot = 1) at ``n = scale.mult_n``: its result
    and its final weights, the base of the mixtures' models. Memoised in-process and, with a
    ``workdir``, on disk (``mult-base-sN.pt``, with its identity)."""
    used = precision()
    key = ("base", scale, seed, used)
    if key in _MEMO:
        return _MEMO[key]
    task = MultiplicationTask(scale.mult_n, 1.0)
    model = make_model(task, scale, seed)
    identity = run_identity(model, task, stage="mult_base", scale=scale.settings(), seed=seed,
                            precision=used)
    path = None if workdir is None else pathlib.Path(workdir) / f"mult-base-s{seed}.pt"
    done = load_checkpoint(path, identity)
    if done is None:
        ck = None if path is None else path.with_suffix(".ckpt.pt")
        result = _learn(task, scale, seed, checkpoint=ck, model=model)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if path is not None:
            atomic_save({"identity": identity, "result": result, "state": state}, path)
            ck.unlink(missing_ok=True)
        done = {"result": result, "state": state}
    _MEMO[key] = (done["result"], done["state"])
    return _MEMO[key]


def mixture_model(p_cot: float, scale: Scale, seed: int = 0, *, progress: bool = True,
                  workdir=None) -> dict:
    """The weights of an NTP model of ``MultiplicationTask(scale.mult_n, p_cot)`` (module
    docstring: the chain base re-calibrated, or from scratch at ``paper``)."""
    key = ("mixture", p_cot, scale, seed, precision())
    if key in _MEMO:
        return _MEMO[key]
    task = MultiplicationTask(scale.mult_n, p_cot)
    if not scale.mult_recal_steps:
        state, _ = pretrain(task, scale, scale.mult_steps, seed, batch_size=scale.mult_batch,
                            progress=progress, workdir=workdir)
    else:
        _, base = chain_base(scale, seed, workdir=workdir)
        model = load_model(task, scale, base, seed)
        ntp.train(model, task, scale.mult_recal_steps, scale.mult_batch, scale.lr,
                  seed=seed + RECAL_SEED, decay_frac=0.5, progress=False)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    _MEMO[key] = state
    return state


def mult_hardness(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 5: NTP steps to learn n-digit multiplication from answers only (p_cot = 0) and
    from worked chains (p_cot = 1), for each n of ``scale.mult_ns``, each run capped at
    ``scale.mult_max_steps`` steps (greedy accuracy checked every ``scale.mult_eval_every``)."""
    out = {"experiment": "mult_hardness", "scale": scale.name, "seed": seed,
           "batch_size": scale.mult_batch, "max_steps": scale.mult_max_steps,
           "target": scale.hardness_target, "short": [], "chain": []}
    runs = [(kind, n, p) for kind, p in (("short", 0.0), ("chain", 1.0)) for n in scale.mult_ns]
    for kind, n, p in progress_bar(runs, desc="mult_hardness", disable=not progress):
        if kind == "chain" and n == scale.mult_n and scale.mult_recal_steps:
            out[kind].append(chain_base(scale, seed, workdir=workdir)[0])  # the mixtures' base
            continue
        out[kind].append(resumable(
            workdir, f"mult-hardness-{kind}-n{n}-s{seed}",
            lambda ck: _learn(MultiplicationTask(n, p), scale, seed, checkpoint=ck),
            part_identity(scale, seed, part="mult_hardness", n_digits=n, p_cot=p)))
    return out


def mult_threshold(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 5: NTP models of multiplication mixtures over ``scale.mult_p_grid`` at
    ``n = scale.mult_n`` (:func:`mixture_model`): greedy and sampled accuracy and long
    fraction, and the first-token probabilities that set the greedy threshold
    (:func:`~ntprl.metrics.route_probs`)."""
    out = {"experiment": "mult_threshold", "scale": scale.name, "n_digits": scale.mult_n,
           "recal_steps": scale.mult_recal_steps, "batch_size": scale.mult_batch, "runs": []}
    for p in progress_bar(scale.mult_p_grid, desc="mult_threshold", disable=not progress):
        task = MultiplicationTask(scale.mult_n, p)

        def one(_checkpoint):  # the NTP runs checkpoint themselves in the workdir
            state = mixture_model(p, scale, seed, progress=False, workdir=workdir)
            return {"p_cot": p, "final": mult_measure(load_model(task, scale, state, seed), task,
                                                      scale, seed)}

        out["runs"].append(resumable(workdir, f"mult-threshold-p{p:.4f}-s{seed}", one,
                                     part_identity(scale, seed, part="mult_threshold", p_cot=p)))
    return out


def mult_rl(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 5: from the NTP model at ``p_cot = scale.mult_rl_p`` (below the threshold;
    :func:`mixture_model`), GRPO for ``scale.mult_rl_steps`` steps against more NTP on as many
    sequences; greedy accuracy and response length along the way."""
    task = MultiplicationTask(scale.mult_n, scale.mult_rl_p)
    state = mixture_model(scale.mult_rl_p, scale, seed, progress=progress, workdir=workdir)
    out = {"experiment": "mult_rl", "scale": scale.name, "n_digits": scale.mult_n,
           "p_cot": scale.mult_rl_p, "recal_steps": scale.mult_recal_steps,
           "start": mult_measure(load_model(task, scale, state, seed), task, scale, seed),
           "runs": {}}
    steps = scale.mult_rl_steps
    seqs = steps * scale.rl_prompts * scale.rl_samples
    ntp_steps = max(1, seqs // scale.mult_batch)

    def more_ntp():
        model = load_model(task, scale, state, seed)
        every = max(1, ntp_steps // max(1, steps // scale.rl_eval_every))
        hist = ntp.train(model, task, ntp_steps, scale.mult_batch, scale.lr,
                         seed=seed + MORE_NTP_SEED, eval_every=every,
                         eval_fn=eval_fn(task, scale, seed), progress=False)
        return {"algo": "ntp", "steps": ntp_steps, "sequences": ntp_steps * scale.mult_batch,
                "history": hist}

    def grpo():
        return rl_run(task, scale, state, "grpo", seed, progress=False, steps=steps)

    for name, fn in (("ntp", more_ntp), ("grpo", grpo)):
        out["runs"][name] = resumable(workdir, f"mult-rl-{name}-s{seed}", lambda ck: fn(),
                                      part_identity(scale, seed, part="mult_rl", run=name))
    out["grpo_sequences"] = seqs
    return out

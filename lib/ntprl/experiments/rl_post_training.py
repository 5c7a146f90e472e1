"""Chapter 4: RL post-training of transformers after NTP on a mixture below the threshold."""

from __future__ import annotations

import copy
import math
from functools import partial

from ..metrics import chain_reading
from ..models import ARCHITECTURES
from ..progress import bar as progress_bar
from ..scale import Scale
from ..tasks import ParityTask
from ..train import ntp, rl
from .common import (EVAL_SEED, MORE_NTP_SEED, RECAL_SEED, Part, eval_fn, first_step, load_model,
                     make_model, measure, part_identity, pretrain, reached_target, resumable,
                     run_parts)


def rl_run(task, scale: Scale, state: dict, algo: str, seed: int = 0, *, progress: bool = True,
           checkpoint=None, **settings) -> dict:
    """One RL run from the weights ``state``, with the scale's RL sizes (``settings`` override
    any :func:`ntprl.train.rl.train` argument; ``checkpoint`` is its checkpoint file, to resume
    from). Returns its settings and history."""
    model = load_model(task, scale, state, seed)
    kw = dict(lr=scale.rl_lr, prompts_per_step=scale.rl_prompts,
              samples_per_prompt=scale.rl_samples, star_samples=scale.star_samples,
              star_steps=scale.star_steps, star_batch=scale.batch_size,
              eval_every=scale.rl_eval_every, eval_fn=eval_fn(task, scale, seed), seed=seed)
    kw.update(settings)
    steps = kw.pop("steps", scale.star_rounds if algo == "star" else scale.rl_steps)
    hist = rl.train(model, task, algo, steps, progress=progress, desc=f"{algo} {settings}",
                    checkpoint=checkpoint, **kw)
    shown = {k: v for k, v in kw.items() if k not in ("eval_fn", "stop_when")}
    return {"algo": algo, "steps": steps, "settings": shown, "history": hist}


def rl_start(scale: Scale, seed: int = 0, *, progress: bool = True,
             workdir=None) -> tuple[ParityTask, dict, dict | None]:
    """The NTP checkpoint chapter 4's RL starts from: ``(task, final weights, early weights)``
    of NTP on D(p_cot = ``scale.rl_p_cot``) at d = ``scale.rl_d`` for ``scale.rl_ntp_steps``
    steps, the early weights taken at ``scale.rl_early_step``. Memoised in-process and, with a
    ``workdir``, on disk (:func:`~.common.pretrain`), so every experiment of the chapter, and
    its ablation exercise, shares one run."""
    task = ParityTask(scale.rl_d, scale.rl_p_cot)
    state, early = pretrain(task, scale, scale.rl_ntp_steps, seed, early_step=scale.rl_early_step,
                            progress=progress, workdir=workdir)
    return task, state, early


def rl_post_training_parts(scale: Scale) -> tuple[str, ...]:
    """The names of :func:`rl_post_training`'s runs at ``scale``, in the order of its results
    (and of the computation, in one process; worker processes start the STaR runs first)."""
    names = ["ntp"] + [f"{a}-{r}" for a in ("grpo", "reinforce", "star") for r in ("e2e", "cot")]
    names += [f"{a}-e2e-T{t}" for t in scale.rl_temperatures if t != 1.0 for a in ("grpo", "star")]
    return tuple(names + ["grpo-early"])


def rl_post_training(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None,
                     parts: tuple[str, ...] | None = None) -> dict:
    """Chapter 4: from one NTP checkpoint at d = ``scale.rl_d``, p_cot = ``scale.rl_p_cot`` <
    1/3, (a) more NTP for the same number of sequences vs (b) GRPO (the headline and the length
    heat map); STaR, REINFORCE and GRPO with the e2e and cot rewards; sampling temperatures; the
    STaR map; RL started from an early NTP checkpoint.

    ``parts`` runs only the named runs (see :func:`rl_post_training_parts`; in one process,
    in the order given): a long run can do its headline first and the rest later with the
    same ``workdir`` (finished parts are read back, never recomputed)."""
    known = rl_post_training_parts(scale)
    parts = known if parts is None else tuple(parts)
    unknown = [p for p in parts if p not in known]
    if unknown or not parts:
        raise ValueError(f"parts={parts!r} is not allowed: choose among {known}")
    task, state, early = rl_start(scale, seed, progress=progress, workdir=workdir)
    start = eval_fn(task, scale, seed)(load_model(task, scale, state, seed), 0)
    out = {"experiment": "rl_post_training", "scale": scale.name, "d": scale.rl_d,
           "p_cot": scale.rl_p_cot, "ntp_steps": scale.rl_ntp_steps, "start": start, "runs": {}}
    seqs = scale.rl_steps * scale.rl_prompts * scale.rl_samples  # GRPO's, and more_ntp's
    fns = {"ntp": partial(more_ntp, task, scale, state, seed)}
    for algo in ("grpo", "reinforce", "star"):
        for reward in ("e2e", "cot"):
            fns[f"{algo}-{reward}"] = partial(rl_run, task, scale, state, algo, seed,
                                              progress=False, reward=reward)
    for temp in scale.rl_temperatures:
        if temp != 1.0:
            for algo in ("grpo", "star"):
                fns[f"{algo}-e2e-T{temp}"] = partial(rl_run, task, scale, state, algo, seed,
                                                     progress=False, temperature=temp)
    if early is not None:
        fns["grpo-early"] = partial(rl_run, task, scale, early, "grpo", seed, progress=False)
    names = [n for n in parts if n in fns]  # grpo-early: only with an early checkpoint
    runs = out["runs"]
    runs.update(zip(names, run_parts(
        [Part(f"rl-{n}-s{seed}", fns[n],
              part_identity(scale, seed, part="rl_post_training", run=n),
              cost=3 if n.startswith("star") else 1) for n in names],
        workdir, progress=progress, desc="rl_post_training")))
    if early is not None and "grpo-early" in runs:
        out["early_start"] = eval_fn(task, scale, seed)(load_model(task, scale, early, seed), 0)
    out["grpo_sequences"] = seqs
    return out


def more_ntp(task, scale: Scale, state: dict, seed: int = 0, *, checkpoint=None) -> dict:
    """:func:`rl_post_training`'s control: NTP from the weights ``state`` for as many
    sequences as GRPO samples in ``scale.rl_steps`` steps, evaluated as often."""
    seqs = scale.rl_steps * scale.rl_prompts * scale.rl_samples
    ntp_steps = max(1, seqs // scale.batch_size)
    model = load_model(task, scale, state, seed)
    every = max(1, ntp_steps // max(1, scale.rl_steps // scale.rl_eval_every))
    hist = ntp.train(model, task, ntp_steps, scale.batch_size, scale.lr,
                     seed=seed + MORE_NTP_SEED, eval_every=every,
                     eval_fn=eval_fn(task, scale, seed), checkpoint=checkpoint, progress=False)
    return {"algo": "ntp", "steps": ntp_steps, "sequences": ntp_steps * scale.batch_size,
            "history": hist}


def star_samples_for(scale: Scale, p_cot: float) -> int:
    """Samples per STaR round of :func:`rounds_vs_p` at ``p_cot``: ``scale.star_samples``, or
    more where that would keep fewer than ``scale.rounds_min_long`` long answers on average."""
    return max(scale.star_samples, math.ceil(scale.rounds_min_long / p_cot))


def rounds_vs_p(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 4: STaR rounds until greedy accuracy reaches 95%, for each p_cot of
    ``scale.rounds_p_grid``. With ``scale.rounds_from_scratch`` (the ``paper`` preset) each
    start model is trained by NTP from scratch on D(p_cot) for ``scale.rl_ntp_steps`` steps,
    as in the paper. Otherwise (a shortcut of ours) it is the NTP model of ``rl_p_cot``
    re-calibrated by ``scale.recal_steps`` further NTP steps on D(p_cot): the chain is already
    learned, only its share moves. Theorem 2 starts from a model that has learned the chain;
    from scratch, a fixed NTP budget may not learn it at the rarest p_cot (at the ``gpu``
    preset's 3000 steps, p_cot = 0.02 did not, nor at 20000 in bf16 or float32, three seeds:
    stored runs ``rounds_vs_p_from_scratch``, ``rounds_vs_p_from_scratch_p02`` and
    ``..._p02_fp32``).
    Each round samples :func:`star_samples_for` answers: at least
    ``scale.rounds_min_long / p_cot``, so the rare long answers a round keeps are enough to
    fit."""
    base = None
    if not scale.rounds_from_scratch:
        base_task = ParityTask(scale.d, scale.rl_p_cot)
        base, _ = pretrain(base_task, scale, scale.rl_ntp_steps, seed,
                           early_step=scale.rl_early_step, progress=progress, workdir=workdir)
    out = {"experiment": "rounds_vs_p", "scale": scale.name, "d": scale.d,
           "from_scratch": scale.rounds_from_scratch, "runs": []}
    out["runs"] = run_parts(
        [Part(f"rounds-p{p:.4f}-s{seed}",
              partial(rounds_part, ParityTask(scale.d, p), scale, base, seed, workdir=workdir),
              part_identity(scale, seed, part="rounds", p_cot=p), cost=1 / p)
         for p in scale.rounds_p_grid], workdir, progress=progress, desc="rounds_vs_p")
    return out


def rounds_part(task, scale: Scale, base: dict | None, seed: int = 0, *, workdir=None,
                checkpoint=None) -> dict:
    """One p_cot of :func:`rounds_vs_p`: the start model (NTP from scratch when ``base`` is
    None, else ``base`` re-calibrated to ``task.p_cot``), then STaR rounds until greedy
    accuracy reaches the target. Cached whole: ``checkpoint`` is unused, an interrupted part
    restarts."""
    if base is None:
        state, _ = pretrain(task, scale, scale.rl_ntp_steps, seed, progress=False,
                            workdir=workdir)
        model = load_model(task, scale, state, seed)
    else:
        model = load_model(task, scale, base, seed)
        ntp.train(model, task, scale.recal_steps, scale.batch_size, scale.lr,
                  seed=seed + RECAL_SEED, decay_frac=0.5, progress=False)
    state = copy.deepcopy(model.state_dict())
    start = eval_fn(task, scale, seed)(model, 0)
    samples = star_samples_for(scale, task.p_cot)
    run = rl_run(task, scale, state, "star", seed, progress=False, steps=scale.rounds_max,
                 eval_every=1, star_samples=samples, stop_when=reached_target)
    hist = run["history"]
    return {"p_cot": task.p_cot, "start": start, "rounds": first_step(hist),
            "max_rounds": scale.rounds_max, "samples_per_round": samples, "history": hist}


def leap2(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 4 ablation (paper Fig. 15): NTP alone on leap-2 chains (every other running
    parity) against full chains, at each p_cot of ``scale.leap2_p_grid``, and a short-only
    control (p_cot = 0), at d = ``scale.leap2_d`` for ``scale.leap2_steps`` steps each.

    The idealised derivation (NTP learns the chain, nothing of the short map) gives the same
    1/3 threshold for both formats; a format can beat it only if the model also learns the
    *short* answer. So each run records greedy accuracy and greedy length (length 1: the
    short route) next to the sampled numbers that say whether the chain was learned."""
    d = scale.leap2_d
    out = {"experiment": "leap2", "scale": scale.name, "d": d, "steps": scale.leap2_steps,
           "runs": []}
    grid = [("full", 0.0)] + [(c, p) for c in ("full", "leap2") for p in scale.leap2_p_grid]
    out["runs"] = run_parts(
        [Part(f"leap2-{chain}-p{p:.4f}-s{seed}",
              partial(leap2_part, ParityTask(d, p, chain), scale, seed, workdir=workdir),
              part_identity(scale, seed, part="leap2", chain=chain, p_cot=p))
         for chain, p in grid], workdir, progress=progress, desc="leap2")
    return out


def leap2_part(task, scale: Scale, seed: int = 0, *, workdir=None, checkpoint=None) -> dict:
    """One run of :func:`leap2`: NTP from scratch on ``task`` for ``scale.leap2_steps`` steps
    (resumable through ``workdir``, see :func:`~.common.pretrain`; ``checkpoint`` is unused),
    then :func:`~.common.measure`."""
    state, _ = pretrain(task, scale, scale.leap2_steps, seed, progress=False, workdir=workdir)
    return {"chain": task.chain if task.p_cot > 0 else "none", "p_cot": task.p_cot,
            "final": measure(load_model(task, scale, state, seed), task, scale, seed)}


TEMPERATURE_RUNS = (("grpo", "e2e"), ("reinforce", "e2e"), ("star", "e2e"), ("star", "cot"))


def temperature_controls(scale: Scale, seed: int = 0, *, progress: bool = True,
                         workdir=None) -> dict:
    """Chapter 4, *sampling temperature* (paper: temperature changes the speed, not the trend,
    except STaR at a high temperature with the end-to-end reward): from the NTP checkpoint of
    :func:`rl_post_training` (d = ``scale.rl_d``, p_cot = ``scale.rl_p_cot``), GRPO and
    REINFORCE with the e2e reward and STaR with the e2e and the cot reward, at each temperature
    of ``scale.rl_temperatures``. STaR is evaluated after every round, so a success that later
    collapses is visible; the others every ``scale.rl_eval_every`` steps. Run it with several
    seeds (each seed trains its own NTP checkpoint)."""
    task, state, _ = rl_start(scale, seed, progress=progress, workdir=workdir)
    out = {"experiment": "temperature_controls", "scale": scale.name, "d": scale.rl_d,
           "p_cot": scale.rl_p_cot, "ntp_steps": scale.rl_ntp_steps,
           "start": eval_fn(task, scale, seed)(load_model(task, scale, state, seed), 0),
           "runs": {}}
    grid = [(a, r, t) for t in scale.rl_temperatures for a, r in TEMPERATURE_RUNS]
    names = [f"{algo}-{reward}-T{temp}" for algo, reward, temp in grid]
    out["runs"] = dict(zip(names, run_parts(
        [Part(f"temp-{name}-s{seed}",
              partial(rl_run, task, scale, state, algo, seed, progress=False, reward=reward,
                      temperature=temp,
                      eval_every=1 if algo == "star" else scale.rl_eval_every),
              part_identity(scale, seed, part="temperature_controls", run=name),
              cost=3 if algo == "star" else 1)
         for name, (algo, reward, temp) in zip(names, grid)],
        workdir, progress=progress, desc="temperature_controls")))
    return out


def rl_start_sweep(scale: Scale, seed: int = 0, *, progress: bool = True,
                   workdir=None) -> dict:
    """Chapter 4, *RL started too early* (paper: length grows for almost every checkpoint, but
    generalisation needs the chain): GRPO from NTP checkpoints taken at each step of
    ``scale.rl_start_steps`` (from "chain not learned" to "chain learned") of one NTP run at
    d = ``scale.rl_d``, p_cot = ``scale.rl_p_cot`` (constant lr, no decay). For each: the
    checkpoint's greedy and sampled numbers, then the RL history (greedy accuracy, sampled
    length, complete-chain shares every ``scale.rl_eval_every`` steps). Each checkpoint's record
    also reads its chain *steps* with teacher forcing (:func:`~ntprl.metrics.chain_reading`:
    ``chain_step_acc``, ``chain_step_exact``), which sampled accuracy, a property of whole
    answers, does not separate from the route."""
    task = ParityTask(scale.rl_d, scale.rl_p_cot)
    steps = sorted(set(scale.rl_start_steps))

    def run(_checkpoint):  # cached whole; an interrupted sweep starts again
        model = make_model(task, scale, seed)
        snaps = {}

        def keep(m, step):
            if step in steps:
                snaps[step] = {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
            return {}

        ntp.train(model, task, steps[-1], scale.batch_size, scale.lr, seed=seed,
                  warmup_steps=scale.warmup_steps, eval_every=math.gcd(*steps), eval_fn=keep,
                  progress=False)
        out = []
        for s in progress_bar(steps, desc="rl_start_sweep", disable=not progress):
            model = load_model(task, scale, snaps[s], seed)
            start = eval_fn(task, scale, seed)(model, 0)
            steps_read = chain_reading(model, task, scale.eval_n, seed=seed + EVAL_SEED)
            start.update(chain_step_acc=steps_read["chain_token_acc"],
                         chain_step_exact=steps_read["chain_exact"])
            hist = rl_run(task, scale, snaps[s], "grpo", seed, progress=False)["history"]
            out.append({"ntp_step": s, "start": start, "history": hist})
        return out

    runs = resumable(workdir, f"rl-start-sweep-s{seed}", run,
                     part_identity(scale, seed, part="rl_start_sweep", steps=steps))
    return {"experiment": "rl_start_sweep", "scale": scale.name, "d": scale.rl_d,
            "p_cot": scale.rl_p_cot, "rl_steps": scale.rl_steps, "runs": runs}


def architectures(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 4, *another architecture* (the paper's experiments use GPT-2- and Mistral-style
    decoders of depth 2, 4 and 8): the chapter's headline, NTP on D(p_cot =
    ``scale.rl_p_cot``) at d = ``scale.rl_d`` for ``scale.rl_ntp_steps`` steps and then GRPO
    with the end-to-end reward for ``scale.rl_steps`` steps, for each architecture of
    :data:`ntprl.models.ARCHITECTURES` at the scale's depth and at twice it (every other
    setting the scale's). Each run records its model's size, the NTP model's greedy and
    sampled numbers, and the GRPO history."""
    grid = [(arch, n) for n in (scale.n_layer, 2 * scale.n_layer) for arch in ARCHITECTURES]
    runs = run_parts(
        [Part(f"arch-{arch}-L{n}-s{seed}",
              partial(architecture_part, scale.with_(arch=arch, n_layer=n), seed,
                      workdir=workdir),
              part_identity(scale, seed, part="architectures", arch=arch, n_layer=n), cost=n)
         for arch, n in grid], workdir, progress=progress, desc="architectures")
    return {"experiment": "architectures", "scale": scale.name, "d": scale.rl_d,
            "p_cot": scale.rl_p_cot, "ntp_steps": scale.rl_ntp_steps,
            "rl_steps": scale.rl_steps, "runs": runs}


def architecture_part(scale: Scale, seed: int = 0, *, workdir=None, checkpoint=None) -> dict:
    """One run of :func:`architectures`, with the model of ``scale`` (its ``arch`` and
    ``n_layer``): :func:`rl_start`'s NTP (resumable through ``workdir``), then GRPO
    (``checkpoint``: its trainer checkpoint)."""
    task, state, _ = rl_start(scale, seed, progress=False, workdir=workdir)
    run = rl_run(task, scale, state, "grpo", seed, progress=False, reward="e2e",
                 checkpoint=checkpoint)
    start = {k: v for k, v in run["history"][0].items() if k != "step"}  # step 0: the NTP model
    return {"arch": scale.arch, "n_layer": scale.n_layer, "n_embd": scale.n_embd,
            "params": load_model(task, scale, state, seed).num_params(), "start": start,
            "history": run["history"]}

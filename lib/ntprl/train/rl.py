"""RL post-training with a correctness reward: STaR, REINFORCE and GRPO.

All three sample the model's own answers with :func:`ntprl.sampling.generate` (batched, KV
cache), score them with a reward function of ``(prompts, responses)``, and push up the
log-probability of the rewarded ones. They differ in how a sample's weight is computed:

``star`` (Zelikman et al. 2022, "rationalisation" omitted)
    One *round* per step: sample ``star_samples`` prompts once each at ``temperature``, keep
    the samples with a positive reward (the book's rewards are 0 or 1: a filter, not a weight),
    and fine-tune on them by next-token
    prediction for ``star_steps`` steps of ``star_batch`` sequences drawn with replacement from
    the kept set. ``star_restart=True`` starts each round from the weights the run began with
    (as in the STaR paper); the default continues from the previous round. Simplifications:
    no rationalisation with hints, no cap on kept samples per prompt.

``reinforce`` (Williams 1992)
    ``samples_per_prompt`` samples per prompt; advantage = reward - *batch-mean* reward (a
    baseline that reduces variance; it includes each sample's own reward, which scales the
    expected gradient by 1 - 1/N for a batch of N samples — a slightly smaller step in the same
    direction, negligible at N = 256; a leave-one-out mean would avoid it); with the default
    ``ppo_epochs=1`` one gradient step per batch on ``-advantage * log pi(token)`` over
    response tokens (more passes apply the same clipped surrogate as GRPO's).

``grpo`` (Shao et al. 2024)
    ``samples_per_prompt`` >= 2 samples per prompt form a *group*; advantage = reward - group
    mean, divided by the group's std when ``adv_norm="group_std"`` (its default). The policy
    loss is PPO's clipped surrogate ``-min(ratio * A, clip(ratio, 1 +- clip_eps) * A)`` over
    ``ppo_epochs`` passes on the same batch; with the default single pass the ratio is exactly 1
    and the objective is the plain policy gradient with group advantages (fully on-policy).
    Simplifications: no value model (none is needed), no reward model (the reward is exact), KL
    to a frozen reference is off by default (``kl_coef=0``; the paper's setting is unknown).

Choices that change *length dynamics*, named so every chapter can state them:

- ``loss_agg`` — how per-token terms become one loss, for N sequences with L_i response
  tokens (EOS included) each:
  ``"token_mean"``: sum over all tokens / sum_i L_i (each token weighs the same, so long
  answers weigh more); ``"seq_mean"``: mean over each sequence's tokens, then over sequences
  (each sequence weighs the same, so a long answer's tokens weigh less: the original GRPO);
  ``"constant"``: sum over all tokens / (N * max_new_tokens) (no length normalisation at all,
  "Dr. GRPO"). STaR's fine-tuning always uses ``"token_mean"`` (plain NTP).
- ``adv_norm`` — ``"none"`` or ``"group_std"`` (GRPO only).
- ``kl_coef`` — weight of a per-token KL estimate (k3) to the weights the run started from.
- ``temperature`` — sampling temperature T of the rollouts. The policy being optimised is the
  one that sampled, softmax(z / T): REINFORCE's and GRPO's log-probabilities, the PPO ratio,
  the KL to the reference (taken at the same T) and the logged entropy all use z / T, as TRL's
  ``GRPOTrainer`` does. At T = 1 this is the model's own distribution; at T != 1 it keeps the
  update on the distribution the samples came from, so a temperature ablation measures one
  effect. STaR's fine-tuning is plain NTP on the kept samples (T does not enter it).
- GRPO's std is the population std of the group (``unbiased=False``) plus ``eps = 1e-6``: a
  group with rewards {0, 1, 1, 1} gets advantages (-1.73, 0.58, 0.58, 0.58). TRL divides by the
  Bessel-corrected std plus 1e-4 (its ``nanstd``), which scales every advantage by
  sqrt((G - 1) / G) relative to ours (0.935 at G = 8): the same direction, a slightly smaller
  step at the same learning rate.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..progress import bar as progress_bar
from ..metrics import full_chain, require_room
from ..sampling import generate
from .common import (CUDA_GRAPHS, OPTIMIZERS, PRECISIONS, TrainStep, atomic_save, autocast,
                     by_length_on, check_context, check_eval, cuda_graph_on, evaluating,
                     load_checkpoint, make_optimizer, one_of, optimizer_step, positive,
                     resolve_precision, run_identity)
from .ntp import length_groups, ntp_loss

ALGOS = ("star", "reinforce", "grpo")
LOSS_AGGS = ("token_mean", "seq_mean", "constant")
ADV_NORMS = ("none", "group_std")


def group_advantages(rewards: torch.Tensor, group_size: int, norm: str = "none",
                     eps: float = 1e-6) -> torch.Tensor:
    """Advantages of GRPO: each reward minus its group's mean (optionally over its std).

    ``rewards`` has shape ``(n_groups * group_size,)`` with the samples of one prompt adjacent.
    A group whose rewards are all equal gets zero advantage (it carries no signal).
    """
    if norm not in ADV_NORMS:
        raise ValueError(f"adv_norm={norm!r} is not allowed: choose one of {ADV_NORMS}")
    if not isinstance(group_size, int) or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"group_size={group_size!r} is not allowed: it must be a positive "
                         f"integer dividing the {rewards.numel()} rewards")
    g = rewards.float().view(-1, group_size)
    adv = g - g.mean(dim=1, keepdim=True)
    if norm == "group_std":
        adv = adv / (g.std(dim=1, keepdim=True, unbiased=False) + eps)
    return adv.reshape(-1)


def token_weights(mask: torch.Tensor, loss_agg: str, max_new_tokens: int) -> torch.Tensor:
    """Per-token weights (B, T) that turn per-token terms into one loss, per ``loss_agg``.

    ``mask`` marks the tokens that count (response tokens, EOS included). The weights sum to 1
    for ``token_mean`` and ``seq_mean``; for ``constant`` they sum to
    (tokens / (N * max_new_tokens)).
    """
    if loss_agg not in LOSS_AGGS:
        raise ValueError(f"loss_agg={loss_agg!r} is not allowed: choose one of {LOSS_AGGS}")
    m = mask.float()
    n = m.shape[0]
    if loss_agg == "token_mean":
        return m / m.sum().clamp(min=1)
    if loss_agg == "seq_mean":
        return m / m.sum(dim=1, keepdim=True).clamp(min=1) / n
    return m / (n * max_new_tokens)


def _reward_fn(task, reward):
    if callable(reward):
        return reward
    if reward == "e2e":
        return task.reward_e2e
    if reward == "cot":
        return task.reward_cot
    raise ValueError(f"reward={reward!r} is not allowed: use 'e2e', 'cot' or a callable")


@dataclass
class Rollout:
    """One batch of the model's own answers: ``group_size`` samples of each prompt, adjacent."""

    tokens: torch.Tensor     # (N, P + L) prompts and responses, on the model's device
    mask: torch.Tensor       # (N, P + L) True on response tokens up to and including EOS
    prompts: torch.Tensor    # (N, P) the prompt of each row (CPU)
    responses: torch.Tensor  # (N, L) the responses, PAD after EOS (CPU)
    rewards: torch.Tensor    # (N,) float rewards (CPU)
    group_size: int


def rollout(model, task, n_prompts: int, group_size: int, max_new_tokens: int,
            temperature: float, reward_fn: Callable, generator: torch.Generator) -> Rollout:
    """Sample ``group_size`` answers to each of ``n_prompts`` fresh prompts and score them."""
    prompts = task.prompts(n_prompts, generator).repeat_interleave(group_size, dim=0)
    tokens, mask = generate(model, prompts, max_new_tokens, temperature, generator,
                            eos_id=task.EOS, pad_id=task.PAD)
    responses = tokens[:, task.prompt_len:].cpu()
    rewards = reward_fn(prompts, responses)
    if not isinstance(rewards, torch.Tensor) or tuple(rewards.shape) != (len(prompts),):
        shape = tuple(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards)
        raise ValueError(f"reward returned {shape}: it must return a tensor of shape "
                         f"({len(prompts)},), one reward per response")
    return Rollout(tokens, mask, prompts, responses, rewards.float(), group_size)


def rollout_stats(task, ro: Rollout, max_new_tokens: int) -> dict:
    """What a step's rollouts looked like: reward, length, long and truncated fractions, the
    length histogram and, with groups (``group_size > 1``), the share of groups whose rewards
    are all equal (no GRPO signal)."""
    lengths = task.response_length(ro.responses)
    stats = {"reward": ro.rewards.mean().item(), "len_mean": lengths.float().mean().item(),
             "long_frac": task.is_long(ro.responses).float().mean().item(),
             "full_frac": full_chain(task, ro.responses).float().mean().item(),
             "truncated_frac": (~task.has_eos(ro.responses)).float().mean().item(),
             "len_hist": torch.bincount(lengths, minlength=max_new_tokens + 1).tolist()}
    if ro.group_size > 1:
        grouped = ro.rewards.view(-1, ro.group_size)
        same = grouped.max(1).values == grouped.min(1).values
        stats["zero_var_frac"] = same.float().mean().item()
    return stats


def policy_logprobs(model, tokens: torch.Tensor, temperature: float, precision: str = "auto",
                    *, pad_id: int | None = None, never: int | None = None):
    """Log-probabilities under the sampling policy softmax(z / T): of each next token of
    ``tokens`` (B, T - 1), and of the whole vocabulary at each position (B, T - 1, V). The
    forward pass runs in ``precision`` (:func:`~ntprl.train.common.autocast`); the
    log-softmax in float32.

    ``never``: a token the sampler never writes (the task's PAD: :func:`ntprl.sampling.generate`
    sets its logit to -inf). It is left out of the softmax here too, so the policy being
    optimised is exactly the one that sampled; its column of the vocabulary log-probabilities
    is -inf, and a position whose next token *is* ``never`` (the PAD after EOS, outside every
    response) gets log-probability 0.

    With ``pad_id`` the model runs by length (:func:`~ntprl.train.ntp.length_groups`): each
    group of rows trimmed to its longest row, so no compute goes to the PAD after a short
    answer. The positions past a row's last token then hold 0 (a row's own positions are the
    same, up to float rounding, since causal attention never looks right)."""
    if pad_id is not None:
        T, parts, alls, order = tokens.shape[1], [], [], []
        for rows, n in length_groups(tokens, pad_id):
            logp, logp_all = policy_logprobs(model, tokens[rows, :n], temperature, precision,
                                             never=never)
            parts.append(F.pad(logp, (0, T - n)))
            alls.append(F.pad(logp_all, (0, 0, 0, T - n)))
            order.append(rows)
        back = torch.argsort(torch.cat(order))  # the groups' rows, back in the batch's order
        return torch.cat(parts)[back], torch.cat(alls)[back]
    with autocast(model, precision):
        logits = model(tokens)
    z = logits[:, :-1].float() / temperature
    if never is not None:  # out of the softmax, as in the sampler (not in place: z is needed)
        out = torch.zeros(z.shape[-1], device=z.device)
        out[never] = float("-inf")
        z = z + out
    logp_all = F.log_softmax(z, -1)
    logp = logp_all.gather(-1, tokens[:, 1:, None]).squeeze(-1)
    if never is not None:
        logp = logp.masked_fill(tokens[:, 1:] == never, 0.0)
    return logp, logp_all


# chapter 4 shows this function on the page: its lines stay within 88 columns
def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor,
                weights: torch.Tensor, clip_eps: float,
                ref_logp: torch.Tensor | None = None,
                kl_coef: float = 0.0) -> torch.Tensor:
    """The policy-gradient loss of REINFORCE and GRPO, for per-token log-probabilities
    ``logp`` (B, T) of the sampled tokens, their values ``old_logp`` when sampled, one
    advantage per sequence ``adv`` (B,) and the ``weights`` (B, T) of
    :func:`token_weights`:

        sum_t w_t * [ -min(r_t * A, clip(r_t, 1 - eps, 1 + eps) * A) + kl_coef * k3_t ],

    where r_t = exp(logp - old_logp) (1 on the first pass: then the gradient is
    exactly -A * grad logp) and k3_t = exp(ref - logp) - (ref - logp) - 1 >= 0
    estimates the KL to the reference policy (its log-probabilities ``ref_logp``)."""
    ratio = torch.exp(logp - old_logp)
    a = adv[:, None]
    per_token = -torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    if ref_logp is not None and kl_coef:
        log_r = ref_logp - logp
        per_token = per_token + kl_coef * (torch.exp(log_r) - log_r - 1)
    return (per_token * weights).sum()


def policy_gradient_update(model, opt, ro: Rollout, adv: torch.Tensor, *, temperature: float,
                           loss_agg: str, max_new_tokens: int, clip_eps: float, ppo_epochs: int,
                           grad_clip: float | None, ref=None, kl_coef: float = 0.0,
                           precision: str = "auto", pad_id: int | None = None,
                           never: int | None = None) -> float:
    """``ppo_epochs`` optimiser steps of :func:`policy_loss` on one rollout (REINFORCE, GRPO).
    Returns the mean entropy of the sampling policy over the response tokens. With ``pad_id``
    the forward passes run by length; ``never`` (the task's PAD) is left out of the policy's
    softmax as the sampler leaves it out (:func:`policy_logprobs`)."""
    device = ro.tokens.device
    adv, targets = adv.to(device), ro.mask[:, 1:]
    w = token_weights(targets, loss_agg, max_new_tokens)
    ref_logp = None
    if ref is not None and kl_coef:
        with torch.no_grad():
            ref_logp, _ = policy_logprobs(ref, ro.tokens, temperature, precision,
                                          pad_id=pad_id, never=never)
    old_logp, entropy = None, None
    for _ in range(ppo_epochs):
        logp, logp_all = policy_logprobs(model, ro.tokens, temperature, precision,
                                         pad_id=pad_id, never=never)
        if old_logp is None:
            old_logp = logp.detach()
            entropy = _mean_entropy(logp_all.detach(), targets)
        loss = policy_loss(logp, old_logp, adv, w, clip_eps, ref_logp, kl_coef)
        optimizer_step(opt, loss, model, grad_clip)
    return entropy


def star_update(model, opt, ro: Rollout, *, star_steps: int, star_batch: int,
                grad_clip: float | None, generator: torch.Generator,
                precision: str = "auto", pad_id: int | None = None,
                cuda_graph: str = "auto") -> int:
    """STaR's fine-tuning: NTP on the rewarded samples (``star_steps`` batches of
    ``star_batch`` drawn with replacement). Returns how many samples were kept. With
    ``pad_id`` each batch runs by length (:func:`~ntprl.train.ntp.ntp_loss`); ``cuda_graph``
    as in :func:`ntprl.train.ntp.train` (on a GPU the steps replay one recorded graph)."""
    keep = (ro.rewards > 0).to(ro.tokens.device)
    kept_tok, kept_mask = ro.tokens[keep], ro.mask[keep]
    if not len(kept_tok):
        return 0
    lr = float(opt.param_groups[0]["lr"])
    step = TrainStep(lambda tok, mask: ntp_loss(model, tok, mask, pad_id,
                                                by_length=pad_id is not None,
                                                precision=precision),
                     model, opt, grad_clip,
                     graph=cuda_graph_on(cuda_graph, model, opt, pad_id is not None))
    for _ in range(star_steps):
        idx = torch.randint(0, len(kept_tok), (star_batch,), generator=generator)
        idx = idx.to(kept_tok.device)
        step(lr, kept_tok[idx], kept_mask[idx])
    return len(kept_tok)


def train(model, task, algo: str, steps: int, *, lr: float = 3e-4, prompts_per_step: int = 32,
          samples_per_prompt: int = 8, temperature: float = 1.0,
          reward: str | Callable = "e2e", loss_agg: str = "token_mean",
          adv_norm: str | None = None, clip_eps: float = 0.2, ppo_epochs: int = 1,
          kl_coef: float = 0.0, star_samples: int = 512, star_steps: int = 50,
          star_batch: int = 128, star_restart: bool = False, optimizer: str = "adamw",
          max_new_tokens: int | None = None, grad_clip: float | None = 1.0, seed: int = 0,
          eval_every: int = 0, eval_fn: Callable | None = None,
          stop_when: Callable[[dict], bool] | None = None,
          checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 10,
          precision: str = "auto", by_length: str = "auto", cuda_graph: str = "auto",
          progress: bool = True, desc: str | None = None) -> list[dict]:
    """RL post-training of ``model`` on ``task`` (see the module docstring for each algorithm).

    Each step is: :func:`rollout` (sample and score), then the algorithm's update
    (:func:`policy_gradient_update` for REINFORCE and GRPO, :func:`star_update` for STaR),
    then, every ``eval_every`` steps, ``eval_fn``.

    Args:
        algo: ``"star"``, ``"reinforce"`` or ``"grpo"``.
        steps: RL steps (for STaR: rounds).
        lr: learning rate.
        optimizer: ``"adamw"`` (betas 0.9/0.95, no weight decay) or ``"sgd"`` (plain SGD, as
            in the theory and for the linear model).
        prompts_per_step, samples_per_prompt: rollouts per step (reinforce/grpo); GRPO needs
            ``samples_per_prompt >= 2``.
        temperature: sampling temperature of the rollouts (> 0).
        reward: ``"e2e"`` (answer correct), ``"cot"`` (every token correct), or a callable
            ``reward(prompts, responses) -> (n,)`` float tensor.
        loss_agg: ``"token_mean"`` | ``"seq_mean"`` | ``"constant"`` (module docstring).
        adv_norm: ``"none"`` | ``"group_std"``; default ``"group_std"`` for GRPO, ``"none"`` else
            (REINFORCE always uses the batch-mean baseline and ignores it).
        clip_eps, ppo_epochs: PPO-style clipping and passes per batch (GRPO and REINFORCE;
            with one pass the ratio is 1 and the clipping never acts).
        kl_coef: weight of the KL penalty to the starting weights (0: off).
        star_samples, star_steps, star_batch, star_restart: STaR's round (module docstring).
        max_new_tokens: generation budget; default ``task.max_response_len``. Shorter raises.
        grad_clip: clip the global gradient norm to this value (None: no clipping).
        seed: seeds prompts and sampling.
        eval_every, eval_fn: call ``eval_fn(model, step)`` every ``eval_every`` steps (and at
            steps 0 and ``steps``); its dict is merged into that step's record.
        stop_when: called with each evaluated record; returning True ends the run early.
        checkpoint, checkpoint_every: save/resume as in :func:`ntprl.train.ntp.train` (a
            checkpoint of a run with any other setting is refused).
        precision: forward passes of the updates in ``"auto"`` (bf16 autocast where the device
            multiplies bf16 natively, else float32: :func:`~ntprl.train.common.autocast`),
            ``"fp32"`` or ``"bf16"``; sampling is always float32.
        by_length: ``"yes"``: every update's forward passes run once per group of equally long
            answers, trimmed to their length (:func:`policy_logprobs`, and
            :func:`~ntprl.train.ntp.ntp_loss` for STaR): the same loss up to float rounding,
            without the compute a padded batch spends on the PAD after short answers;
            ``"no"``: one padded batch; ``"auto"``: by length on the CPU only, as
            :func:`ntprl.train.ntp.train`.
        cuda_graph: STaR's fine-tuning steps on a GPU replay one recorded CUDA graph per round
            (``"auto"``), as :func:`ntprl.train.ntp.train`'s steps do; ``"no"``: eager steps.
            (A policy-gradient update's batch changes shape with the answers' lengths: it
            always runs eagerly.)

    Returns:
        The history: one record per step with ``step``, ``reward`` (mean rollout reward),
        ``len_mean`` (mean response length), ``long_frac``, ``full_frac`` (complete chains),
        ``entropy`` (mean per-token entropy
        of the sampling policy), ``zero_var_frac`` (groups with equal rewards), ``truncated_frac``,
        ``gen_s`` and ``update_s`` (wall time split), ``len_hist`` (response-length histogram)
        and, for STaR, ``kept`` (samples that passed the filter); plus ``eval_fn``'s metrics.
    """
    one_of("algo", algo, ALGOS)
    for name, value in (("steps", steps), ("prompts_per_step", prompts_per_step),
                        ("samples_per_prompt", samples_per_prompt),
                        ("star_samples", star_samples), ("star_steps", star_steps),
                        ("star_batch", star_batch), ("ppo_epochs", ppo_epochs),
                        ("checkpoint_every", checkpoint_every)):
        positive(name, value)
    positive("lr", lr, float)
    positive("clip_eps", clip_eps, float)
    if grad_clip is not None:
        positive("grad_clip", grad_clip, float)
    if algo == "grpo" and samples_per_prompt < 2:
        raise ValueError(f"samples_per_prompt={samples_per_prompt} is not allowed for GRPO: a "
                         "group needs at least 2 samples")
    if not (isinstance(temperature, (int, float)) and 0 < temperature < float("inf")):
        raise ValueError(f"temperature={temperature!r} is not allowed: RL samples need a "
                         "finite temperature > 0")
    one_of("loss_agg", loss_agg, LOSS_AGGS)
    adv_norm = adv_norm or ("group_std" if algo == "grpo" else "none")
    one_of("adv_norm", adv_norm, ADV_NORMS)
    if algo != "grpo" and adv_norm != "none":
        raise ValueError(f"adv_norm={adv_norm!r} is not allowed with algo={algo!r}: only GRPO "
                         "normalises its advantages (by its groups' std); use 'none'")
    one_of("optimizer", optimizer, OPTIMIZERS)
    one_of("precision", precision, PRECISIONS)
    one_of("cuda_graph", cuda_graph, CUDA_GRAPHS)
    if not (isinstance(kl_coef, (int, float)) and kl_coef >= 0):
        raise ValueError(f"kl_coef={kl_coef!r} is not allowed: it must be >= 0")
    if algo == "star" and kl_coef:
        raise ValueError(f"kl_coef={kl_coef!r} is not allowed with algo='star': STaR fine-tunes "
                         "by next-token prediction, with no KL term (use 0)")
    check_eval(eval_every, eval_fn)
    check_context(model, task)
    pad_id = task.PAD if by_length_on(by_length, next(model.parameters()).device) else None
    used = resolve_precision(precision, next(model.parameters()).device)  # fixed for the run
    max_new_tokens = task.max_response_len if max_new_tokens is None else max_new_tokens
    require_room(task, max_new_tokens)
    reward_fn = _reward_fn(task, reward)

    opt = make_optimizer(model, optimizer, lr)
    gen = torch.Generator().manual_seed(seed)
    identity = run_identity(
        model, task, trainer="rl", algo=algo, steps=steps, lr=lr, optimizer=optimizer,
        prompts_per_step=prompts_per_step, samples_per_prompt=samples_per_prompt,
        temperature=temperature, reward=reward, loss_agg=loss_agg, adv_norm=adv_norm,
        clip_eps=clip_eps, ppo_epochs=ppo_epochs, kl_coef=kl_coef, star_samples=star_samples,
        star_steps=star_steps, star_batch=star_batch, star_restart=star_restart,
        max_new_tokens=max_new_tokens, grad_clip=grad_clip, seed=seed, eval_every=eval_every,
        precision=precision, precision_used=used, by_length=by_length)
    start_weights = copy.deepcopy(model.state_dict())  # KL reference and STaR restarts
    history: list[dict] = []
    start = 0
    ck = load_checkpoint(checkpoint, identity)
    if ck is not None:  # weights and optimiser state move to the model's device on loading
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        start, history = ck["step"], ck["history"]
    ref = None
    if kl_coef > 0:
        ref = copy.deepcopy(model)
        ref.load_state_dict(start_weights)
        ref.eval().requires_grad_(False)

    def save(step):
        if checkpoint is not None:
            atomic_save({"identity": identity, "model": model.state_dict(),
                         "opt": opt.state_dict(), "gen": gen.get_state(), "step": step,
                         "history": history}, checkpoint)

    def evaluate_into(rec, step):
        rec.update(eval_fn(model, step))
        if stop_when is not None and stop_when(rec):
            rec["stopped"] = True  # marks the record that ended the run (also across a resume)
        return rec

    if start == 0 and eval_every:
        history.append(evaluate_into({"step": 0}, 0))
    bar = progress_bar(total=steps, initial=start, desc=desc or algo.upper(), disable=not progress,
               leave=False)
    stopped = bool(history) and history[-1].get("stopped", False)
    for step in range(start, steps):
        if stopped:
            break
        t0 = time.perf_counter()
        if algo == "star":
            ro = rollout(model, task, star_samples, 1, max_new_tokens, temperature, reward_fn, gen)
        else:
            ro = rollout(model, task, prompts_per_step, samples_per_prompt, max_new_tokens,
                         temperature, reward_fn, gen)
        t1 = time.perf_counter()
        rec = {"step": step + 1, **rollout_stats(task, ro, max_new_tokens)}
        model.train()
        if algo == "star":
            with torch.no_grad(), evaluating(model):  # the policy that sampled, before a restart
                _, logp_all = policy_logprobs(model, ro.tokens, temperature, used,
                                              pad_id=pad_id, never=task.PAD)
                rec["entropy"] = _mean_entropy(logp_all, ro.mask[:, 1:])
            if star_restart:
                model.load_state_dict(start_weights)
                opt = make_optimizer(model, optimizer, lr)
            rec["kept"] = star_update(model, opt, ro, star_steps=star_steps,
                                      star_batch=star_batch, grad_clip=grad_clip, generator=gen,
                                      precision=used, pad_id=pad_id,
                                      cuda_graph=cuda_graph)
        else:
            if algo == "grpo":
                adv = group_advantages(ro.rewards, samples_per_prompt, adv_norm)
            else:
                adv = ro.rewards - ro.rewards.mean()
            rec["entropy"] = policy_gradient_update(
                model, opt, ro, adv, temperature=temperature, loss_agg=loss_agg,
                max_new_tokens=max_new_tokens, clip_eps=clip_eps, ppo_epochs=ppo_epochs,
                grad_clip=grad_clip, ref=ref, kl_coef=kl_coef, precision=used,
                pad_id=pad_id, never=task.PAD)
        rec["gen_s"], rec["update_s"] = t1 - t0, time.perf_counter() - t1
        if eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            evaluate_into(rec, step + 1)
        history.append(rec)
        stopped = rec.get("stopped", False)
        bar.set_postfix({k: round(v, 3) for k, v in rec.items()
                         if k in ("reward", "len_mean", "greedy_acc")})
        bar.update(1)
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps or stopped:
            save(step + 1)
    bar.close()
    return history


def _mean_entropy(logp: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean entropy of the next-token distributions ``logp`` (B, T, V) at the ``mask``ed targets."""
    p = logp.exp()
    ent = -torch.where(p > 0, p * logp, torch.zeros_like(logp)).sum(-1)  # 0 log 0 = 0
    return (ent * mask).sum().item() / mask.sum().clamp(min=1).item()

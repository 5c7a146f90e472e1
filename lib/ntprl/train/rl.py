"""RL post-training with a correctness reward: STaR, REINFORCE and GRPO.

All three sample the model's own answers with :func:`ntprl.sampling.generate` (batched, KV
cache), score them with a reward function of ``(prompts, responses)``, and push up the
log-probability of the rewarded ones. They differ in how a sample's weight is computed:

``star`` (Zelikman et al. 2022, "rationalisation" omitted)
    One *round* per step: sample ``star_samples`` prompts once each at ``temperature``, keep
    the samples with reward 1 (a filter, not a weight), and fine-tune on them by next-token
    prediction for ``star_steps`` steps of ``star_batch`` sequences drawn with replacement from
    the kept set. ``star_restart=True`` starts each round from the weights the run began with
    (as in the STaR paper); the default continues from the previous round. Simplifications:
    no rationalisation with hints, no cap on kept samples per prompt.

``reinforce`` (Williams 1992)
    ``samples_per_prompt`` samples per prompt; advantage = reward - *batch-mean* reward (a
    constant baseline that only reduces variance); one gradient step per batch on
    ``-advantage * log pi(token)`` over response tokens.

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
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..metrics import require_room
from ..sampling import generate
from .ntp import OPTIMIZERS, _atomic_save, _positive, make_optimizer, sequence_loss

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
    g = rewards.float().view(-1, group_size)
    adv = g - g.mean(dim=1, keepdim=True)
    if norm == "group_std":
        adv = adv / (g.std(dim=1, keepdim=True, unbiased=False) + eps)
    return adv.reshape(-1)


def token_weights(mask: torch.Tensor, loss_agg: str, max_new_tokens: int) -> torch.Tensor:
    """Per-token weights (B, T) that turn per-token terms into one loss, per ``loss_agg``.

    ``mask`` marks the tokens that count (response tokens, EOS included). The weights sum to 1
    for ``token_mean`` and ``seq_mean``; for ``constant`` they sum to (tokens / (N * max_new_tokens)).
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


def train(model, task, algo: str, steps: int, *, lr: float = 3e-4,
          prompts_per_step: int = 32, samples_per_prompt: int = 8, temperature: float = 1.0,
          reward: str | Callable = "e2e", loss_agg: str = "token_mean", adv_norm: str | None = None,
          clip_eps: float = 0.2, ppo_epochs: int = 1, kl_coef: float = 0.0,
          star_samples: int = 512, star_steps: int = 50, star_batch: int = 128,
          star_restart: bool = False, optimizer: str = "adamw", max_new_tokens: int | None = None,
          grad_clip: float | None = 1.0,
          seed: int = 0, eval_every: int = 0, eval_fn: Callable | None = None,
          stop_when: Callable[[dict], bool] | None = None, checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 10,
          progress: bool = True, desc: str | None = None) -> list[dict]:
    """RL post-training of ``model`` on ``task`` (see the module docstring for each algorithm).

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
        clip_eps, ppo_epochs: PPO-style clipping and passes per batch (GRPO).
        kl_coef: weight of the KL penalty to the starting weights (0: off).
        star_samples, star_steps, star_batch, star_restart: STaR's round (module docstring).
        max_new_tokens: generation budget; default ``task.max_response_len``. Shorter raises.
        seed: seeds prompts and sampling.
        eval_every, eval_fn: call ``eval_fn(model, step)`` every ``eval_every`` steps (and at
            steps 0 and ``steps``); its dict is merged into that step's record.
        stop_when: called with each evaluated record; returning True ends the run early.
        checkpoint, checkpoint_every: save/resume as in :func:`ntprl.train.ntp.train`.

    Returns:
        The history: one record per step with ``step``, ``reward`` (mean rollout reward),
        ``len_mean`` (mean response length), ``long_frac``, ``entropy`` (mean per-token entropy
        of the sampling policy), ``zero_var_frac`` (groups with equal rewards), ``truncated_frac``,
        ``gen_s`` and ``update_s`` (wall time split), ``len_hist`` (response-length histogram)
        and, for STaR, ``kept`` (samples that passed the filter); plus ``eval_fn``'s metrics.
    """
    if algo not in ALGOS:
        raise ValueError(f"algo={algo!r} is not allowed: choose one of {ALGOS}")
    _positive("steps", steps)
    _positive("lr", lr, float)
    _positive("prompts_per_step", prompts_per_step)
    _positive("samples_per_prompt", samples_per_prompt)
    _positive("star_samples", star_samples)
    _positive("star_steps", star_steps)
    _positive("star_batch", star_batch)
    _positive("ppo_epochs", ppo_epochs)
    _positive("checkpoint_every", checkpoint_every)
    if algo == "grpo" and samples_per_prompt < 2:
        raise ValueError(f"samples_per_prompt={samples_per_prompt} is not allowed for GRPO: a "
                         "group needs at least 2 samples")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} is not allowed: RL samples need temperature > 0")
    if loss_agg not in LOSS_AGGS:
        raise ValueError(f"loss_agg={loss_agg!r} is not allowed: choose one of {LOSS_AGGS}")
    adv_norm = adv_norm or ("group_std" if algo == "grpo" else "none")
    if adv_norm not in ADV_NORMS:
        raise ValueError(f"adv_norm={adv_norm!r} is not allowed: choose one of {ADV_NORMS}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not allowed: choose one of {OPTIMIZERS}")
    if kl_coef < 0:
        raise ValueError(f"kl_coef={kl_coef!r} is not allowed: it must be >= 0")
    if not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"eval_every={eval_every!r} is not allowed: it must be an integer >= 0")
    if eval_every and eval_fn is None:
        raise ValueError("eval_every > 0 needs an eval_fn")
    max_new_tokens = task.max_response_len if max_new_tokens is None else max_new_tokens
    require_room(task, max_new_tokens)
    reward_fn = _reward_fn(task, reward)

    device = next(model.parameters()).device
    opt = make_optimizer(model, optimizer, lr)
    gen = torch.Generator().manual_seed(seed)
    start_weights = copy.deepcopy(model.state_dict())  # KL reference and STaR restarts
    history: list[dict] = []
    start = 0
    run_id = {"algo": algo, "lr": lr, "seed": seed, "task": repr(task), "optimizer": optimizer}
    if checkpoint is not None and os.path.exists(checkpoint):
        # on the CPU (the generator state must stay a CPU tensor; load_state_dict moves the
        # weights and optimiser state to the model's device), and tensors/plain Python only
        ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if ck["run"] != run_id:
            raise ValueError(f"checkpoint={str(checkpoint)!r} belongs to another run: {ck['run']} != {run_id}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        start_weights, start, history = ck["start_weights"], ck["step"], ck["history"]
    ref = None
    if kl_coef > 0:
        ref = copy.deepcopy(model)
        ref.load_state_dict(start_weights)
        ref.eval().requires_grad_(False)

    def save(step):
        if checkpoint is not None:
            _atomic_save({"run": run_id, "model": model.state_dict(), "opt": opt.state_dict(),
                          "gen": gen.get_state(), "step": step, "history": history,
                          "start_weights": start_weights}, checkpoint)

    def evaluate_into(rec, step):
        rec.update(eval_fn(model, step))
        if stop_when is not None and stop_when(rec):
            rec["stopped"] = True  # marks the record that ended the run (also across a resume)
        return rec

    if start == 0 and eval_every:
        history.append(evaluate_into({"step": 0}, 0))
    P = task.prompt_len
    bar = tqdm(total=steps, initial=start, desc=desc or algo.upper(), disable=not progress, leave=False)
    stopped = bool(history) and history[-1].get("stopped", False)
    for step in range(start, steps):
        if stopped:
            break
        # ---- rollouts ----------------------------------------------------------------------
        t0 = time.perf_counter()
        n_prompts, k = (star_samples, 1) if algo == "star" else (prompts_per_step, samples_per_prompt)
        prompts = task.prompts(n_prompts, gen).repeat_interleave(k, dim=0)
        tokens, mask = generate(model, prompts, max_new_tokens, temperature, gen,
                                eos_id=task.EOS, pad_id=task.PAD)
        responses = tokens[:, P:].cpu()
        rewards = reward_fn(prompts, responses).float()
        lengths = task.response_length(responses)
        t1 = time.perf_counter()
        rec = {"step": step + 1, "reward": rewards.mean().item(),
               "len_mean": lengths.float().mean().item(),
               "long_frac": task.is_long(responses).float().mean().item(),
               "truncated_frac": (~task.has_eos(responses)).float().mean().item(),
               "len_hist": torch.bincount(lengths, minlength=max_new_tokens + 1).tolist()}
        model.train()
        # ---- update ------------------------------------------------------------------------
        if algo == "star":
            keep = rewards > 0
            rec["kept"] = int(keep.sum())
            rec["entropy"] = _entropy(model, tokens, mask, temperature)  # the policy that sampled
            if star_restart:
                model.load_state_dict(start_weights)
                opt = make_optimizer(model, optimizer, lr)
            if rec["kept"]:
                kept_tok, kept_mask = tokens[keep.to(tokens.device)], mask[keep.to(mask.device)]
                for _ in range(star_steps):
                    idx = torch.randint(0, len(kept_tok), (star_batch,), generator=gen).to(kept_tok.device)
                    loss = sequence_loss(model(kept_tok[idx]), kept_tok[idx], kept_mask[idx])
                    _step(opt, loss, model, grad_clip)
        else:
            if algo == "grpo":
                adv = group_advantages(rewards, k, adv_norm)
            else:
                adv = rewards - rewards.mean()
            grouped = rewards.view(-1, k)
            rec["zero_var_frac"] = (grouped.max(1).values == grouped.min(1).values).float().mean().item()
            adv = adv.to(device)
            w = token_weights(mask[:, 1:], loss_agg, max_new_tokens)
            old_lp = None
            for _ in range(ppo_epochs):
                logits = model(tokens)[:, :-1].float() / temperature  # the sampling policy
                logp_all = F.log_softmax(logits, -1)
                lp = logp_all.gather(-1, tokens[:, 1:, None]).squeeze(-1)
                if old_lp is None:
                    old_lp = lp.detach()
                    rec["entropy"] = _mean_entropy(logp_all, mask[:, 1:])
                ratio = torch.exp(lp - old_lp)
                a = adv[:, None]
                surrogate = torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
                per_token = -surrogate
                if ref is not None:
                    with torch.no_grad():
                        ref_logits = ref(tokens)[:, :-1].float() / temperature
                        ref_lp = F.log_softmax(ref_logits, -1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
                    per_token = per_token + kl_coef * (torch.exp(ref_lp - lp) - (ref_lp - lp) - 1)
                loss = (per_token * w).sum()
                _step(opt, loss, model, grad_clip)
        rec["gen_s"], rec["update_s"] = t1 - t0, time.perf_counter() - t1
        if eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            evaluate_into(rec, step + 1)
        history.append(rec)
        stopped = rec.get("stopped", False)
        bar.set_postfix({k_: round(v, 3) for k_, v in rec.items() if k_ in ("reward", "len_mean", "greedy_acc")})
        bar.update(1)
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps or stopped:
            save(step + 1)
    bar.close()
    return history


def _step(opt, loss, model, grad_clip):
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()


def _mean_entropy(logp: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean entropy of the next-token distributions ``logp`` (B, T, V) at the ``mask``ed targets."""
    ent = -(logp.exp() * logp).sum(-1)
    return (ent * mask).sum().item() / mask.sum().clamp(min=1).item()


@torch.no_grad()
def _entropy(model, tokens, mask, temperature: float = 1.0) -> float:
    """Mean entropy of the sampling policy softmax(z / T) over the response tokens of ``tokens``."""
    logits = model(tokens)[:, :-1].float() / temperature
    return _mean_entropy(F.log_softmax(logits, -1), mask[:, 1:])

"""Next-token prediction on fresh samples of a task (pre-training in the paper's story).

Every step draws a new batch from ``task.sample`` (online data, no fixed training set) and
takes one AdamW step on the cross-entropy of the *response* tokens, EOS included: the prompt is
given, not predicted, and PAD is never a target. The trainer knows nothing about the model
beyond ``logits = model(tokens)``.

A run is a pure function of its seed: the data stream comes from one ``torch.Generator`` whose
state is checkpointed with the weights, the optimiser and the history, so a run resumed from a
checkpoint ends with the same weights and metrics as an uninterrupted one. (This holds for the
book's models, which have no dropout: dropout draws from torch's global generator, which is
neither seeded from ``seed`` nor checkpointed.)
"""

from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn.functional as F

from ..progress import bar as progress_bar
from .common import (OPTIMIZERS, PRECISIONS, TrainStep, atomic_save, autocast, by_length_on,
                     check_context, check_eval, cuda_graph_on, load_checkpoint, make_optimizer,
                     one_of, positive, resolve_precision, run_identity)


def response_mask(tokens: torch.Tensor, prompt_len: int, pad_id: int) -> torch.Tensor:
    """True on response tokens (EOS included), False on the prompt and on PAD. Shape of tokens."""
    mask = tokens != pad_id
    mask[:, :prompt_len] = False
    return mask


def sequence_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                  reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of predicting ``tokens[:, t]`` from ``logits[:, t-1]`` where ``mask``.

    ``logits`` is the model output on ``tokens`` (B, T, V); ``mask`` (B, T) marks the tokens to be
    predicted. ``reduction="mean"`` averages over all masked tokens of the batch; ``"sum"``
    adds them up (for a batch split into parts, whose sums are divided by the batch's count).
    """
    one_of("reduction", reduction, ("mean", "sum"))
    target_mask = mask[:, 1:]
    lp = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                         tokens[:, 1:].reshape(-1), reduction="none")
    total = (lp * target_mask.reshape(-1)).sum()
    return total if reduction == "sum" else total / target_mask.sum().clamp(min=1)




def length_groups(tokens: torch.Tensor, pad_id: int, max_groups: int = 4):
    """The rows of a right-padded batch grouped by length, each group trimmed to its longest
    row: a list of ``(row indices, length)``. Rows of equal length share a group; with more
    than ``max_groups`` distinct lengths, rows sorted by length are cut into ``max_groups``
    groups of equal size. A row's length runs to its last non-PAD token."""
    real = tokens != pad_id
    positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
    lengths = (real * positions).max(dim=1).values
    distinct = torch.unique(lengths)
    if len(distinct) <= max_groups:
        return [((lengths == n).nonzero().squeeze(1), int(n)) for n in distinct]
    order = torch.argsort(lengths)
    return [(rows, int(lengths[rows].max())) for rows in order.tensor_split(max_groups)]


def ntp_loss(model, tokens: torch.Tensor, mask: torch.Tensor, pad_id: int, *,
             by_length: bool, precision: str = "auto") -> torch.Tensor:
    """The NTP loss of one batch (mean over its ``mask``ed tokens). With ``by_length`` the
    model runs once per :func:`length_groups` group, trimmed to that group's length, so no
    compute goes to trailing PAD: the same loss (causal attention never looks right, so a
    row's logits do not depend on the PAD after it) up to float rounding."""
    if not by_length:
        with autocast(model, precision):
            logits = model(tokens)
        return sequence_loss(logits, tokens, mask)
    total = tokens.new_zeros((), dtype=torch.float32)
    for rows, n in length_groups(tokens, pad_id):
        part, part_mask = tokens[rows, :n], mask[rows, :n]
        with autocast(model, precision):
            logits = model(part)
        total = total + sequence_loss(logits, part, part_mask, reduction="sum")
    return total / mask[:, 1:].sum().clamp(min=1)


def lr_at(step: int, steps: int, lr: float, warmup_steps: int, decay_frac: float) -> float:
    """Learning rate for ``step`` (0-based): linear warm-up, constant, then a linear decay to 0
    over the last ``decay_frac`` of the run."""
    if warmup_steps and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = int(round(decay_frac * steps))
    if decay_steps and step >= steps - decay_steps:
        return lr * (steps - step) / decay_steps
    return lr


def train(model, task, steps: int, batch_size: int, lr: float, *, seed: int = 0,
          optimizer: str = "adamw", weight_decay: float = 0.0,
          betas: tuple[float, float] = (0.9, 0.95), grad_clip: float | None = 1.0,
          warmup_steps: int = 0, decay_frac: float = 0.0, log_every: int = 50,
          eval_every: int = 0, eval_fn: Callable | None = None,
          stop_when: Callable[[dict], bool] | None = None,
          checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 500,
          precision: str = "auto", by_length: str = "auto", cuda_graph: str = "auto",
          progress: bool = True, desc: str = "NTP") -> list[dict]:
    """Train ``model`` by next-token prediction on fresh batches of ``task``.

    Args:
        steps: optimiser steps (each on a new batch of ``batch_size`` sequences).
        lr: AdamW learning rate (peak, if there is warm-up or decay).
        seed: seeds the data stream; model initialisation is the caller's business.
        optimizer: ``"adamw"`` (default) or ``"sgd"`` (plain SGD, no momentum: the optimiser of
            the theory, and the better one for the linear model, whose many irrelevant features
            Adam's per-weight normalisation would move as fast as the relevant ones).
        weight_decay, betas: AdamW settings (``weight_decay`` applies to SGD too).
        grad_clip: clip the global gradient norm to this value (None: no clipping).
        warmup_steps: linear warm-up steps from 0 to ``lr``.
        decay_frac: fraction of the final steps over which the lr decays linearly to 0. Length
            calibration is only as sharp as the optimiser's noise: decay when you measure it.
        log_every: record the mean training loss every this many steps.
        eval_every: call ``eval_fn(model, step)`` every this many steps (and at steps 0 and
            ``steps``); 0 disables evaluation. Its dict is merged into that step's record.
        stop_when: called with each evaluated record; returning True ends training early.
        checkpoint: path of a checkpoint file. When it exists the run resumes from it (refused,
            naming the difference, when it holds a run with other settings, task, model or
            starting weights); it is written every ``checkpoint_every`` steps and at the end.
        precision: ``"auto"`` (bf16 autocast where the device multiplies bf16 natively: a CUDA
            GPU or a CPU with AVX512-BF16/AMX; else float32; ``$NTPRL_PRECISION`` overrides),
            ``"fp32"`` or ``"bf16"``: see :func:`ntprl.train.common.autocast`.
        by_length: ``"yes"``: run the model once per group of equally long rows, each trimmed
            to its length (:func:`ntp_loss`; at p_cot = 0.2 most rows are short and a padded
            batch spends most of its compute on PAD); ``"no"``: one padded batch; ``"auto"``:
            by length on the CPU (compute-bound: fewer tokens, less time), one batch on a GPU
            (where small models are bound by kernel launches, which groups multiply).
        cuda_graph: ``"auto"`` (default): on a CUDA GPU, record the training step once as a
            CUDA graph and replay it (:class:`~ntprl.train.common.TrainStep`; the same
            arithmetic, 1.8x the eager step for the paper's model on an H200, whose eager
            steps wait on Python launching kernels); ``"no"``: eager steps; ``"yes"``: like
            ``"auto"`` but a ``ValueError`` says why when it cannot (see
            :func:`~ntprl.train.common.cuda_graph_on`). It does not enter the checkpoint's
            identity: a run may resume with the other setting.
        progress: show a tqdm progress bar.

    Returns:
        The history: a list of records ``{"step", "samples", "loss", "lr", **eval metrics}``.
    """
    positive("steps", steps)
    positive("batch_size", batch_size)
    positive("lr", lr, float)
    positive("log_every", log_every)
    positive("checkpoint_every", checkpoint_every)
    check_eval(eval_every, eval_fn)
    one_of("optimizer", optimizer, OPTIMIZERS)
    one_of("precision", precision, PRECISIONS)
    if not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps={warmup_steps!r} is not allowed: "
                         "it must be an integer >= 0")
    if not 0.0 <= decay_frac <= 1.0:
        raise ValueError(f"decay_frac={decay_frac!r} is not allowed: it must lie in [0, 1]")
    if grad_clip is not None:
        positive("grad_clip", grad_clip, float)
    check_context(model, task)

    device = next(model.parameters()).device
    used = resolve_precision(precision, device)  # "fp32" or "bf16", fixed for the run
    grouped = by_length_on(by_length, device)
    opt = make_optimizer(model, optimizer, lr, betas=betas, weight_decay=weight_decay)
    graphed = cuda_graph_on(cuda_graph, model, opt, grouped)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    start, loss_sum, loss_n, stopped = 0, 0.0, 0, False
    identity = run_identity(model, task, trainer="ntp", steps=steps, batch_size=batch_size, lr=lr,
                            seed=seed, optimizer=optimizer, weight_decay=weight_decay,
                            betas=betas, grad_clip=grad_clip, warmup_steps=warmup_steps,
                            decay_frac=decay_frac, log_every=log_every, eval_every=eval_every,
                            precision=precision, precision_used=used, by_length=by_length)
    ck = load_checkpoint(checkpoint, identity)
    if ck is not None:  # weights and optimiser state move to the model's device on loading
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        start, history, loss_sum, loss_n, stopped = (ck["step"], ck["history"], ck["loss_sum"],
                                                     ck["loss_n"], ck["stopped"])

    def save(step):
        if checkpoint is not None:
            atomic_save({"identity": identity, "model": model.state_dict(),
                         "opt": opt.state_dict(), "gen": gen.get_state(), "step": step,
                         "history": history, "loss_sum": float(loss_sum), "loss_n": loss_n,
                         "stopped": stopped}, checkpoint)

    def evaluate_into(record, step):
        if eval_fn is not None and eval_every:
            record.update(eval_fn(model, step))
            return stop_when is not None and bool(stop_when(record))
        return False

    if start == 0 and eval_every:
        rec = {"step": 0, "samples": 0, "loss": None,
               "lr": lr_at(0, steps, lr, warmup_steps, decay_frac)}
        stopped = evaluate_into(rec, 0)
        history.append(rec)

    def batch_loss(tokens):  # the NTP loss of one batch, as the step below minimises it
        return ntp_loss(model, tokens, response_mask(tokens, task.prompt_len, task.PAD),
                        task.PAD, by_length=grouped, precision=used)

    # after loading: the graph's learning rate tensor replaces the loaded one
    train_step = TrainStep(batch_loss, model, opt, grad_clip, graph=graphed)
    model.train()
    bar = progress_bar(total=steps, initial=start, desc=desc, disable=not progress or stopped,
                       leave=False)
    step = start
    while step < steps and not stopped:
        cur_lr = lr_at(step, steps, lr, warmup_steps, decay_frac)
        tokens = task.sample(batch_size, gen).to(device, non_blocking=True)
        loss = train_step(cur_lr, tokens)
        step += 1
        # the running sum stays on the device: no GPU -> CPU wait at every step
        loss_sum, loss_n = loss_sum + loss, loss_n + 1  # train_step's loss is detached
        do_log = step % log_every == 0 or step == steps
        do_eval = bool(eval_every) and (step % eval_every == 0 or step == steps)
        if do_log or do_eval:
            rec = {"step": step, "samples": step * batch_size,
                   "loss": float(loss_sum) / max(loss_n, 1), "lr": cur_lr}
            loss_sum, loss_n = 0.0, 0
            stopped = evaluate_into(rec, step) if do_eval else False
            model.train()
            history.append(rec)
            bar.set_postfix({k: round(v, 3) for k, v in rec.items()
                             if k in ("loss", "greedy_acc", "sampled_long_frac") and v is not None})
        bar.update(1)
        if step % checkpoint_every == 0 or step == steps or stopped:
            save(step)
    bar.close()
    return history

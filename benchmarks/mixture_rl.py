"""What RL on a mixture gains from following the tokens: finished rows leave the sampler's
batch, and updates run by length.

After NTP on D(p_cot) with p_cot below 1/3 most answers are one token long, yet a padded batch
computes every row to the longest answer. This script trains one small model of each kind on
``ParityTask(d, p_cot)`` (a GPT of the ``fast`` size for ``--gpt-steps`` NTP steps; the linear
model of chapter 3 for ``--linear-steps``), then times, each way, interleaved ``--repeats``
times (median printed):

    sampling      ``generate`` of ``--samples`` answers at T = 1: finished rows dropped from
                  the batch (``compact=True``, the default) vs kept (``compact=False``);
    GRPO update   one ``rl.policy_gradient_update`` on a rollout of 32 x 8 answers: by length
                  (``pad_id``) vs one padded batch;
    STaR update   ``rl.star_update`` (30 steps of 128 for the GPT; 20 SGD steps of 2048 for the
                  linear model, chapter 3's setting): by length vs padded.

Both ways give the same samples and the same updates up to float rounding (the tests pin it).

    python benchmarks/mixture_rl.py
    python benchmarks/mixture_rl.py --processes 3   # three fresh processes: median and spread
"""

from __future__ import annotations

import argparse
import copy
import statistics

import fresh
import torch

from ntprl.experiments import make_linear, make_model
from ntprl.metrics import evaluate
from ntprl.sampling import generate
from ntprl.scale import get
from ntprl.tasks import ParityTask
from ntprl.train import ntp, rl


def timed(fn, repeats: int) -> float:
    return statistics.median(fresh.times(fn, repeats))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--p-cot", type=float, default=0.2)
    ap.add_argument("--gpt-steps", type=int, default=300)
    ap.add_argument("--linear-steps", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    fresh.add_options(ap)
    args = ap.parse_args(argv)
    if args.processes > 1:
        return fresh.repeat(__file__, ap, args)
    scale, task = get("fast"), ParityTask(args.d, args.p_cot)
    gpt = make_model(task, scale)
    ntp.train(gpt, task, args.gpt_steps, scale.batch_size, scale.lr, seed=0, progress=False)
    lin = make_linear(task)
    ntp.train(lin, task, args.linear_steps, scale.linear_batch, scale.linear_lr, seed=0,
              decay_frac=0.5, progress=False)
    long_share = {name: evaluate(m, task, 2000, seed=1, modes=("sampled",))["sampled_long_frac"]
                  for name, m in (("gpt", gpt), ("linear", lin))}
    prompts = task.prompts(args.samples, torch.Generator().manual_seed(2))
    ro = rl.rollout(gpt, task, 32, 8, task.max_response_len, 1.0, task.reward_e2e,
                    torch.Generator().manual_seed(3))
    adv = rl.group_advantages(ro.rewards, 8, "group_std")
    star_ro = {name: rl.rollout(m, task, n, 1, task.max_response_len, 1.0, task.reward_e2e,
                                torch.Generator().manual_seed(4))
               for name, m, n in (("gpt", gpt, 2048), ("linear", lin, scale.linear_star_samples))}

    def sample(compact):
        return lambda: generate(gpt, prompts, task.max_response_len, 1.0,
                                torch.Generator().manual_seed(5), eos_id=task.EOS,
                                pad_id=task.PAD, compact=compact)

    def grpo(pad_id):
        def step():
            m = copy.deepcopy(gpt)
            opt = torch.optim.AdamW(m.parameters(), lr=3e-4)
            rl.policy_gradient_update(m, opt, ro, adv, temperature=1.0, loss_agg="token_mean",
                                      max_new_tokens=task.max_response_len, clip_eps=0.2,
                                      ppo_epochs=1, grad_clip=1.0, pad_id=pad_id)
        return step

    def star(name, pad_id):
        model, steps, batch = (gpt, 30, 128) if name == "gpt" else (
            lin, 20, scale.linear_star_batch)

        def update():
            m = copy.deepcopy(model)
            opt = (torch.optim.AdamW(m.parameters(), lr=1e-3) if name == "gpt" else
                   torch.optim.SGD(m.parameters(), lr=scale.linear_sgd_lr))
            rl.star_update(m, opt, star_ro[name], star_steps=steps, star_batch=batch,
                           grad_clip=1.0, generator=torch.Generator().manual_seed(6),
                           pad_id=pad_id)
        return update

    rows = {}
    for label, fast, slow in (
            ("sampling", sample(True), sample(False)),
            ("GRPO update", grpo(task.PAD), grpo(None)),
            ("STaR update (GPT)", star("gpt", task.PAD), star("gpt", None)),
            ("STaR update (linear)", star("linear", task.PAD), star("linear", None))):
        rows[label] = (timed(fast, args.repeats), timed(slow, args.repeats))
    if args.json:
        import json

        print(json.dumps({f"{k}: speed-up": b / a for k, (a, b) in rows.items()}))
        return rows
    print(f"d = {args.d}, p_cot = {args.p_cot}; sampled long share: GPT "
          f"{long_share['gpt']:.2f} ({args.gpt_steps} NTP steps), linear "
          f"{long_share['linear']:.2f} ({args.linear_steps}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for k, (a, b) in rows.items():
        print(f"  {k:22s} following the tokens {a * 1e3:8.1f} ms, padded {b * 1e3:8.1f} ms: "
              f"{b / a:5.2f}x")
    return rows


if __name__ == "__main__":
    main()

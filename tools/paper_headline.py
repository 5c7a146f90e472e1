"""The paper's d = 50 headline on one GPU, most important part first, saved after each part.

    python tools/paper_headline.py --out DIR [--budget-s 480] [--scale paper]

Runs ``rl_post_training`` at the ``paper`` scale (d = 50, p_cot = 0.25, a 4-layer width-256
GPT trained by NTP on ``rl_ntp_steps`` x 256 ~ 10^7 fresh sequences, then RL) part by part,
in the order of what the book shows first: NTP, GRPO (e2e reward), more NTP instead of RL,
STaR, REINFORCE, then the rest. After each part it writes
``DIR/NAME-SCALE-seed0.json`` (``--name``, default ``rl_post_training``: a results file with
provenance, ready to be copied to ``lib/ntprl/runs/``) holding every part finished so far,
the wall time of each, and a note naming the parts left out. It starts no part once
``--budget-s`` seconds have passed, so a device session with a fixed time still returns a
labelled partial run. Checkpoints go to ``--work`` (default ``DIR/work``; a rerun with the
same folder resumes).

The same experiment at d = 50 with the ``gpu`` preset's 2-layer width-128 model, on a CPU:

    python tools/paper_headline.py --scale gpu --name rl_post_training_d50 --out DIR \
        --budget-s 2100 --set rl_d=50 rl_ntp_steps=2000 rl_steps=60 eval_n=1000

and the parts that run's budget left out, as a second results file (``--parts``; the NTP
start is trained again from the same seed):

    python tools/paper_headline.py --scale gpu --name rl_post_training_d50_rest --out DIR \
        --budget-s 3600 --set rl_d=50 rl_ntp_steps=2000 rl_steps=60 eval_n=1000 \
        --parts grpo-e2e-T1.5 star-e2e-T1.5 grpo-early
"""

from __future__ import annotations

import argparse
import pathlib
import re
import time

import torch

from ntprl import results, scale as scales
from ntprl.experiments.common import pretrain
from ntprl.experiments.rl_post_training import rl_post_training, rl_post_training_parts
from ntprl.tasks import ParityTask

FIRST = ("grpo-e2e", "ntp", "star-e2e", "reinforce-e2e")
SHOWN = ("step", "greedy_acc", "greedy_len_mean", "greedy_full_frac", "sampled_len_mean")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default=None, help="checkpoint folder (default OUT/work)")
    ap.add_argument("--scale", default="paper")
    ap.add_argument("--budget-s", type=float, default=480.0,
                    help="start no new part after this many seconds")
    ap.add_argument("--name", default="rl_post_training",
                    help="the results file's experiment name: another one keeps a variant "
                         "(e.g. d = 50 from a smaller preset) apart from the preset's own run")
    ap.add_argument("--parts", nargs="+", default=None, metavar="PART",
                    help="run only these parts (default: every part of the preset), e.g. the "
                         "ones an earlier, budget-limited run left out")
    ap.add_argument("--set", nargs="+", action="extend", default=[], metavar="FIELD=VALUE",
                    help="override scale fields, e.g. rl_ntp_steps=8000 (recorded in the "
                         "results file's config and note)")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9_]+", args.name):
        ap.error(f"--name {args.name!r}: use ASCII letters, digits and '_'")
    scale = scales.get(args.scale)
    try:
        changes = scales.parse_overrides(scale, args.set)
        scale = scale.with_(**changes)
    except ValueError as e:  # a field's value the scale refuses (arch=llama) too
        ap.error(str(e))
    out = pathlib.Path(args.out)
    work = pathlib.Path(args.work) if args.work else out / "work"
    path = out / f"{args.name}-{scale.name}-seed0.json"
    order = list(FIRST) + [p for p in rl_post_training_parts(scale) if p not in FIRST]
    if args.parts is not None:
        unknown = [p for p in args.parts if p not in order]
        if unknown:
            ap.error(f"--parts: no part {', '.join(unknown)}; choose among {' '.join(order)}")
        order = [p for p in order if p in args.parts]
    t0 = time.perf_counter()
    print(f"{results.device_name()}, torch {torch.__version__}; scale {scale.name}: d = "
          f"{scale.rl_d}, p_cot = {scale.rl_p_cot}, {scale.rl_ntp_steps} NTP steps x "
          f"{scale.batch_size}", flush=True)
    task = ParityTask(scale.rl_d, scale.rl_p_cot)
    pretrain(task, scale, scale.rl_ntp_steps, 0, early_step=scale.rl_early_step,
             progress=False, workdir=work)  # the same call as rl_post_training's, memoised for it
    ntp_s = time.perf_counter() - t0  # near 0 when a finished NTP is read back
    timing = {"ntp_pretrain_s": round(ntp_s, 1)}
    print(f"NTP: {timing['ntp_pretrain_s']} s "
          f"({scale.rl_ntp_steps / max(ntp_s, 1e-9):.0f} steps/s)", flush=True)
    done: list[str] = []
    for name in order:
        if time.perf_counter() - t0 > args.budget_s:
            break
        t1 = time.perf_counter()
        res = rl_post_training(scale, 0, progress=False, workdir=work, parts=(*done, name))
        done.append(name)
        timing[f"{name}_s"] = round(time.perf_counter() - t1, 1)
        res["timing"] = timing
        left = [p for p in order if p not in done]
        note = (f"Made by tools/paper_headline.py on one {results.device_name()} (torch "
                f"{torch.__version__}) within a {args.budget_s:.0f} s budget"
                + (f", with {changes} changed from the preset" if changes else "")
                + (", only the parts named by --parts" if args.parts is not None else "")
                + ": parts in the order "
                f"run: {', '.join(done)}"
                + (f"; not run: {', '.join(left)}." if left else "; complete."))
        results.save(path, res, experiment=args.name, scale=scale.name, seed=0,
                     config=scale.config(), wall_s=time.perf_counter() - t0,
                     note=note, precision=scales.precision(), source="rl_post_training")
        last = res["runs"][name]["history"][-1]
        shown = {k: round(v, 3) for k, v in last.items() if k in SHOWN}
        print(f"{name}: {timing[f'{name}_s']} s; last record {shown}", flush=True)
    if not done:
        print(f"the NTP start took the whole budget ({args.budget_s:.0f} s): no part ran, "
              f"nothing written; run again with the same --work to go on from it")
        return
    print(f"start: { {k: round(v, 3) for k, v in res['start'].items() if not k.endswith('hist')} }")
    print(f"wrote {path} after {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

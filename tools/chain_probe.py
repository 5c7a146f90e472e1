"""Does NTP on D(p_cot) learn the chain at this d, with this model and learning rate?

    python tools/chain_probe.py --d 50 --p-cot 0.25 --layers 4 --width 256 --heads 8 \
        --lr 1e-3 --budget-s 200 --out probe.json

Trains a fresh GPT by next-token prediction (``ntp.train``, constant learning rate) and every
``--eval-every`` steps records the training loss and, on 512 fresh *long* sequences read with
teacher forcing, the share of chain tokens the model predicts right (argmax) and the share of
sequences whose whole chain it predicts right: a direct reading of "the chain is learned" that
no length choice or sampling noise confounds. It stops after ``--steps`` steps or once
``--budget-s`` seconds have passed, and writes what it measured to ``--out`` (JSON, with the
device and the settings).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ntprl import metrics
from ntprl.models import GPT, GPTConfig
from ntprl.results import device_name
from ntprl.tasks import ParityTask
from ntprl.train import ntp


def chain_reading(model, d: int, n: int = 512, seed: int = 1) -> dict:
    """Teacher-forced argmax accuracy (over every token) on the chain tokens of ``n`` long
    sequences: :func:`ntprl.metrics.chain_reading` with ``bits_only=False``, as stored."""
    return metrics.chain_reading(model, ParityTask(d, 1.0), n, seed=seed, bits_only=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--p-cot", type=float, default=0.25)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=40_000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--budget-s", type=float, default=200.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = ParityTask(args.d, args.p_cot)
    torch.manual_seed(args.seed)
    model = GPT(GPTConfig(vocab_size=4, block_size=task.seq_len, n_layer=args.layers,
                          n_head=args.heads, n_embd=args.width)).to(device)
    t0 = time.perf_counter()

    def probe(m, step):
        m.eval()
        rec = {"wall_s": round(time.perf_counter() - t0, 1), **chain_reading(m, args.d)}
        print(step, rec, flush=True)
        return rec

    hist = ntp.train(model, task, args.steps, args.batch, args.lr, seed=args.seed,
                     warmup_steps=args.warmup, log_every=args.eval_every,
                     eval_every=args.eval_every, eval_fn=probe,
                     stop_when=lambda rec: rec["wall_s"] > args.budget_s, progress=False)
    out = {"device": device_name(), "torch": torch.__version__, "settings": vars(args),
           "history": hist}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    last = hist[-1]
    print(f"{args.out}: step {last['step']}, loss {last['loss']:.4f}, chain token acc "
          f"{last['chain_token_acc']:.3f}, exact {last['chain_exact']:.3f}, "
          f"{last['step'] / last['wall_s']:.0f} steps/s")


if __name__ == "__main__":
    main()

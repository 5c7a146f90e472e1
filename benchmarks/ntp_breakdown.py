"""Where an NTP step's time goes on this machine: drawing the batch on the CPU, copying it to
the device, and the model's forward/backward/optimiser step on a batch already there.

    python benchmarks/ntp_breakdown.py [--paper-model]
"""

from __future__ import annotations

import argparse
import time

import torch

from ntprl.models import GPT, GPTConfig
from ntprl.tasks import ParityTask
from ntprl.train import ntp
from ntprl.train.common import autocast, make_optimizer, optimizer_step


def timed(fn, n, device):
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paper-model", action="store_true")
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args(argv)
    layers, width, heads, batch, d, p = (4, 256, 8, 256, 50, 0.25) if args.paper_model else \
        (2, 128, 4, 128, 32, 0.2)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = ParityTask(d, p)
    gen = torch.Generator().manual_seed(0)
    model = GPT(GPTConfig(vocab_size=4, block_size=task.seq_len, n_layer=layers, n_head=heads,
                          n_embd=width)).to(device)
    tokens = task.sample(batch, gen).to(device)
    mask = ntp.response_mask(tokens, task.prompt_len, task.PAD)
    print(f"{torch.get_num_threads()} CPU threads; {layers} layers, width {width}, batch {batch},"
          f" d = {d}")
    cpu_batch = task.sample(batch, gen)
    rows = {"task.sample (CPU)": lambda: task.sample(batch, gen),
            "copy to device": lambda: cpu_batch.to(device, non_blocking=True),
            "pin + copy": lambda: cpu_batch.pin_memory().to(device, non_blocking=True)
            if device.type == "cuda" else None}
    for precision in ("fp32", "bf16"):
        opt = make_optimizer(model, "adamw", 1e-3)

        def step(precision=precision, opt=opt):
            with autocast(model, precision):
                logits = model(tokens)
            optimizer_step(opt, ntp.sequence_loss(logits, tokens, mask), model, 1.0)
        rows[f"model step {precision} (batch on device)"] = step

        def fwd(precision=precision):
            with torch.no_grad(), autocast(model, precision):
                model(tokens)
        rows[f"forward only {precision}"] = fwd
    rows["task.sample, 1 CPU thread"] = lambda: task.sample(batch, gen)
    for name, fn in rows.items():
        if name == "task.sample, 1 CPU thread":
            torch.set_num_threads(1)
        print(f"{name:34s} {timed(fn, args.n, device):8.3f} ms", flush=True)


if __name__ == "__main__":
    main()

"""Speed of next-token-prediction training: ``ntprl.train.ntp.train`` against a plain padded
loop and against Hugging Face ``GPT2LMHeadModel`` trained on the same batches.

Every variant trains a model of the same size on fresh batches of ``ParityTask(d, p_cot)``
(drawn on the CPU, as the trainer does) and reports *trained tokens per second* (the
non-PAD tokens of the batches: prompt, response and EOS), steps per second and, on a GPU, the
model-FLOPs utilisation (MFU: 6 N + 12 L C T FLOPs per padded token, over the rate of a large
bf16 matrix product measured in the same run). Variants run interleaved, ``--repeats`` times,
and the median and spread of each are printed; ratios are medians measured in this one process.

    python benchmarks/ntp_step.py                      # CPU defaults: d = 32, p_cot = 0.2
    python benchmarks/ntp_step.py --paper-model        # the paper's model, d = 50, batch 256
    python benchmarks/ntp_step.py --paper-model --compile   # add a torch.compile variant

Variants:
    padded loop   float32, AdamW, one GPU->CPU sync per step (``loss.item()``): what a first
                  training loop looks like, and what ``ntp.train`` did before version 0.3;
    ntprl         ``ntp.train`` with its defaults (on a GPU: bf16 autocast, fused AdamW, the
                  loss kept on the device between log steps, and the step recorded once as a
                  CUDA graph and replayed; every repeat pays its own 3 eager steps and
                  recording; on a CPU: the batch run by length, in bf16 autocast where the
                  CPU multiplies bf16 natively);
    ntprl fp32    (on a CPU with native bf16) the same in float32;
    ntprl eager   (on a GPU) the same with ``cuda_graph="no"``: every kernel launched from
                  Python (the default before CUDA graphs);
    HF GPT-2      ``GPT2LMHeadModel`` of the same size and ``ntp.train``'s precision, labels
                  -100 on the prompt and PAD (the same loss), same optimiser (and, where
                  ``ntprl fp32`` runs, ``HF GPT-2 fp32``: the same in float32);
    ntprl+compile (``--compile``) ``ntp.train`` on ``torch.compile(model)``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ntprl.models import GPT, GPTConfig
from ntprl.tasks import ParityTask
from ntprl.train import ntp
from ntprl.train.common import autocast, make_optimizer, resolve_precision


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bf16_peak_tflops(device) -> float | None:
    """TFLOP/s of a large bf16 matrix product on ``device`` (None on the CPU)."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return 10 * 2 * 8192 ** 3 / (time.perf_counter() - t0) / 1e12


def padded_loop(model, task, steps, batch, lr, gen, device):
    """The plain loop: float32, unfused AdamW, ``loss.item()`` every step."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95))
    model.train()
    for _ in range(steps):
        tokens = task.sample(batch, gen).to(device)
        loss = ntp.sequence_loss(model(tokens), tokens,
                                 ntp.response_mask(tokens, task.prompt_len, task.PAD))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()


def hf_loop(model, task, steps, batch, lr, gen, device, precision="auto"):
    """GPT2LMHeadModel on the same batches, the same loss and optimiser, ntp.train's precision
    (or ``precision``)."""
    opt = make_optimizer(model, "adamw", lr)
    model.train()
    loss_sum = 0.0
    for _ in range(steps):
        tokens = task.sample(batch, gen).to(device, non_blocking=True)
        labels = tokens.masked_fill(~ntp.response_mask(tokens, task.prompt_len, task.PAD), -100)
        with autocast(model, precision):
            logits = model(input_ids=tokens).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                               labels[:, 1:].reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_sum = loss_sum + loss.detach()
    float(loss_sum)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--p-cot", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paper-model", action="store_true",
                    help="4 layers, width 256, 8 heads, batch 256, d = 50, p_cot = 0.25, "
                         "200 steps a repeat")
    ap.add_argument("--compile", action="store_true", help="add a torch.compile variant")
    ap.add_argument("--no-hf", action="store_true", help="skip the Hugging Face variant")
    args = ap.parse_args(argv)
    if args.paper_model:
        args.layers, args.width, args.heads = 4, 256, 8
        args.batch, args.d, args.p_cot = 256, 50, 0.25
        args.steps = max(args.steps, 200)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = ParityTask(args.d, args.p_cot)
    cfg = GPTConfig(vocab_size=4, block_size=task.seq_len, n_layer=args.layers,
                    n_head=args.heads, n_embd=args.width)

    def ours():
        torch.manual_seed(0)
        return GPT(cfg).to(device)

    # tokens: count the non-PAD tokens of the batches every variant trains on
    gen = torch.Generator().manual_seed(0)
    real = sum(int((task.sample(args.batch, gen) != task.PAD).sum()) for _ in range(50)) / 50
    padded = args.batch * task.seq_len
    n = GPT(cfg).num_params() - cfg.block_size * cfg.n_embd - cfg.vocab_size * cfg.n_embd
    flops_step = (6 * n + 12 * cfg.n_layer * cfg.n_embd * task.seq_len) * padded
    peak = bf16_peak_tflops(device)

    variants = {
        "padded loop": lambda s, g: padded_loop(ours(), task, s, args.batch, 1e-3, g, device),
        "ntprl": lambda s, g: ntp.train(ours(), task, s, args.batch, 1e-3,
                                        seed=int(g.initial_seed()), log_every=s,
                                        progress=False),
    }
    if device.type == "cpu" and resolve_precision("auto", device) == "bf16":
        variants["ntprl fp32"] = lambda s, g: ntp.train(
            ours(), task, s, args.batch, 1e-3, seed=int(g.initial_seed()), log_every=s,
            precision="fp32", progress=False)
    if device.type == "cuda":
        variants["ntprl eager"] = lambda s, g: ntp.train(
            ours(), task, s, args.batch, 1e-3, seed=int(g.initial_seed()), log_every=s,
            cuda_graph="no", progress=False)
    if not args.no_hf:
        try:
            from transformers import GPT2Config, GPT2LMHeadModel

            def hf():
                torch.manual_seed(0)
                return GPT2LMHeadModel(GPT2Config(
                    vocab_size=4, n_positions=task.seq_len, n_embd=args.width,
                    n_layer=args.layers, n_head=args.heads, bos_token_id=2, eos_token_id=2,
                    pad_token_id=3)).to(device)
            variants["HF GPT-2"] = lambda s, g: hf_loop(hf(), task, s, args.batch, 1e-3, g,
                                                        device)
            if "ntprl fp32" in variants:  # HF's bf16 attention backward is slow on a CPU
                variants["HF GPT-2 fp32"] = lambda s, g: hf_loop(hf(), task, s, args.batch,
                                                                 1e-3, g, device, "fp32")
        except ImportError:
            print("transformers is not installed: skipping the Hugging Face variant")
    if args.compile:
        variants["ntprl+compile"] = lambda s, g: ntp.train(
            torch.compile(ours()), task, s, args.batch, 1e-3, seed=int(g.initial_seed()),
            log_every=s, cuda_graph="no", progress=False)

    print(f"device: {torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'} "
          f"({torch.get_num_threads()} CPU threads), torch {torch.__version__}, ntp.train's "
          f"precision: {resolve_precision('auto', device)}")
    print(f"model: {args.layers} layers, width {args.width}, {args.heads} heads "
          f"({n / 1e6:.2f} M non-embedding parameters); d = {args.d}, p_cot = {args.p_cot}, "
          f"batch {args.batch}: {real:.0f} real of {padded} padded tokens a step")
    if peak:
        print(f"bf16 matrix product: {peak:.0f} TFLOP/s (the MFU denominator)")
    warm = max(3, args.steps // 10)
    times = {k: [] for k in variants}
    for name, fn in variants.items():  # warm-up (and compilation) outside the timings
        t0 = time.perf_counter()
        fn(warm, torch.Generator().manual_seed(1))
        print(f"warm-up of {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    for r in range(args.repeats):
        for name, fn in variants.items():
            sync(device)
            t0 = time.perf_counter()
            fn(args.steps, torch.Generator().manual_seed(100 + r))
            sync(device)
            times[name].append(time.perf_counter() - t0)
        report(times, args, real, flops_step, peak, f"after repeat {r + 1} of {args.repeats}")


def report(times, args, real, flops_step, peak, when):
    """The table of medians so far (printed after every repeat: a run cut short still tells)."""
    print(f"\n{when}:\n{'variant':16s} {'tokens/s':>12s} {'steps/s':>9s} {'spread':>8s}"
          + (f" {'MFU':>6s}" if peak else ""))
    med = {}
    for name, ts in times.items():
        t = statistics.median(ts) / args.steps
        med[name] = t
        spread = (max(ts) - min(ts)) / statistics.median(ts)
        line = f"{name:16s} {real / t:12,.0f} {1 / t:9.1f} {spread:7.0%}"
        if peak:
            line += f" {flops_step / t / 1e12 / peak:6.1%}"
        print(line)
    base = med["padded loop"]
    print("ratios (median time per step):")
    for name, t in med.items():
        if name != "padded loop":
            print(f"  {name} / padded loop: {base / t:.2f}x")
    if "HF GPT-2" in med:
        print(f"  ntprl / HF GPT-2: {med['HF GPT-2'] / med['ntprl']:.2f}x", flush=True)
    if "HF GPT-2 fp32" in med:  # against HF at its faster precision here
        best = min(med["HF GPT-2"], med["HF GPT-2 fp32"])
        print(f"  ntprl / the faster HF GPT-2: {best / med['ntprl']:.2f}x; ntprl fp32 / HF GPT-2 "
              f"fp32: {med['HF GPT-2 fp32'] / med['ntprl fp32']:.2f}x", flush=True)
    if "ntprl eager" in med:
        print(f"  ntprl (CUDA graph) / ntprl eager: {med['ntprl eager'] / med['ntprl']:.2f}x",
              flush=True)


if __name__ == "__main__":
    main()

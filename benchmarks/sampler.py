"""Speed of ``ntprl.sampling.generate`` against naive recompute and Hugging Face ``generate``.

Same model size for all three (2 layers, width 128, 4 heads), batch 256, d = 32 prompt bits and
d + 1 = 33 new tokens per row (a full long answer with EOS), greedy decoding, no early stop so
every method writes the same number of tokens. Prints new tokens per second and the ratios,
all measured in this one run. ``--dtype bf16`` casts both models (and so their KV caches) to
bfloat16: the same comparison where a CPU multiplies bf16 natively (AVX512-BF16, AMX).

    python benchmarks/sampler.py                 # one process (--repeats N timing repeats)
    python benchmarks/sampler.py --processes 5   # five fresh processes: median and spread
    python benchmarks/sampler.py --processes 5 --dtype bf16
"""

from __future__ import annotations

import argparse

import fresh
import torch

from ntprl.models import GPT, GPTConfig
from ntprl.sampling import generate
from ntprl.tasks import PAD


def best_time(fn, repeats: int) -> float:
    return min(fresh.times(fn, repeats))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                    help="both models' weights and caches (default fp32)")
    fresh.add_options(ap)
    args = ap.parse_args(argv)
    if args.processes > 1:
        return fresh.repeat(__file__, ap, args)
    torch.manual_seed(0)
    B, d, new = args.batch, args.d, args.d + 1
    cfg = GPTConfig(vocab_size=4, block_size=2 * d + 2, n_layer=2, n_head=4, n_embd=128)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    ours = GPT(cfg).eval().to(dtype)
    prompts = torch.randint(0, 2, (B, d))
    rows = {}
    rows["ntprl generate (KV cache)"] = best_time(
        lambda: generate(ours, prompts, new, eos_id=None, pad_id=PAD), args.repeats)
    rows["naive full recompute"] = best_time(
        lambda: generate(ours, prompts, new, eos_id=None, pad_id=PAD, use_cache=False),
        max(1, args.repeats // 2))
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
        hf = GPT2LMHeadModel(GPT2Config(vocab_size=4, n_positions=cfg.block_size, n_embd=128,
                                        n_layer=2, n_head=4)).eval().to(dtype)
        with torch.no_grad():
            rows["HF GPT2LMHeadModel.generate"] = best_time(lambda: hf.generate(
                prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new,
                min_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=3),
                args.repeats)
    except ImportError:
        print("transformers is not installed: skipping the Hugging Face comparison")
    tps = {k: B * new / v for k, v in rows.items()}
    if args.json:
        import json

        base = tps["ntprl generate (KV cache)"]
        print(json.dumps({**{f"{k} tokens/s": v for k, v in tps.items()},
                          **{f"ratio ntprl / {k}": base / v for k, v in tps.items()
                             if not k.startswith("ntprl")}}))
        return tps
    print(f"batch {B}, d={d}, {new} new tokens/row, {args.dtype}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    for k, v in tps.items():
        print(f"  {k:32s} {v:10,.0f} new tokens/s")
    base = tps["ntprl generate (KV cache)"]
    for k, v in tps.items():
        if not k.startswith("ntprl"):
            print(f"  ntprl / {k:25s} {base / v:6.2f}x")
    return tps


if __name__ == "__main__":
    main()

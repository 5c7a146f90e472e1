"""Speed of GRPO steps, ``ntprl.train.rl`` against TRL's ``GRPOTrainer``: rollouts and
generated tokens (EOS included) per second.

Same model size (a 2-layer, width-128 GPT / GPT-2), same task (d = 32 parity prompts, up to
d + 1 = 33 new tokens), same batch (32 prompts x 8 samples = 256 rollouts a step), temperature
1, no KL, one optimiser step per batch. Both start from random weights and run ``--steps``
steps after one warm-up step; rollouts per second are printed with their ratio, measured in
this one run. TRL is not a dependency of the book: ``pip install trl`` first.

Equal work: two random models would stop at different lengths (each samples EOS at its own
rate), so by default neither may write EOS (ours: its EOS logit is -inf; TRL:
``generation_kwargs={"suppress_tokens": [EOS]}``) and every rollout has exactly d + 1
tokens on both sides; the rewards are then all 0, which changes nothing in the compute of a
step (neither side skips an update on zero advantages). ``--free-length`` lets both stop at
EOS as trained models do (lengths then differ; tokens per second stays comparable).

    python benchmarks/rl_step.py [--steps 3]
    python benchmarks/rl_step.py --processes 3   # median and spread over fresh processes
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import fresh
import torch

from ntprl.models import GPT, GPTConfig
from ntprl.tasks import ParityTask
from ntprl.train import rl

PROMPTS, SAMPLES = 32, 8


class NoEOS(GPT):
    """The GPT with its EOS logit at -inf: it never stops before the length limit."""

    def forward(self, tokens, cache=None, last_only=False):
        logits = super().forward(tokens, cache, last_only)
        logits[..., ParityTask.EOS] = float("-inf")
        return logits


def ours(task, steps, free_length=False):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=4, block_size=task.seq_len, n_layer=2, n_head=4, n_embd=128)
    model = GPT(config) if free_length else NoEOS(config)
    rl.train(model, task, "grpo", 1, prompts_per_step=PROMPTS, samples_per_prompt=SAMPLES,
             progress=False)
    t0 = time.perf_counter()
    hist = rl.train(model, task, "grpo", steps, prompts_per_step=PROMPTS,
                    samples_per_prompt=SAMPLES, progress=False, seed=1)
    dt = time.perf_counter() - t0
    n = PROMPTS * SAMPLES  # tokens written: the response and its EOS (none when truncated)
    tokens = sum(n * (r["len_mean"] + 1 - r["truncated_frac"]) for r in hist)
    return steps * n / dt, tokens / dt


def trl_grpo(task, steps, free_length=False):
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    vocab = {"0": 0, "1": 1, "<eos>": 2, "<pad>": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=4, n_positions=task.seq_len, n_embd=128,
                                       n_layer=2, n_head=4, bos_token_id=2, eos_token_id=2,
                                       pad_token_id=3))
    prompts = task.prompts(PROMPTS * (steps + 1) * 2, torch.Generator().manual_seed(0))
    data = Dataset.from_dict({"prompt": [" ".join(map(str, p.tolist())) for p in prompts]})

    def reward(prompts, completions, **kw):
        out = []
        for p, c in zip(prompts, completions):
            bits = [int(b) for b in p.split()]
            words = c.split()
            out.append(float(bool(words) and words[-1] in "01" and int(words[-1]) == sum(bits) % 2))
        return out

    class Clock(TrainerCallback):
        times, lengths = [], []

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:  # EOS included (TRL's mask)
                self.lengths.append(logs["completions/mean_length"])

    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, per_device_train_batch_size=PROMPTS * SAMPLES,
                          num_generations=SAMPLES, max_completion_length=task.max_response_len,
                          max_steps=steps + 1, learning_rate=3e-4, beta=0.0, temperature=1.0,
                          logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                          dataloader_num_workers=0, seed=0,
                          generation_kwargs={} if free_length else {"suppress_tokens": [2]})
        clock = Clock()
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data,
                              processing_class=tokenizer, callbacks=[clock])
        trainer.train()
    t = clock.times
    dt = t[-1] - t[0]
    mean_len = sum(clock.lengths[1:]) / max(1, len(clock.lengths[1:])) if clock.lengths else 0.0
    return steps * PROMPTS * SAMPLES / dt, steps * PROMPTS * SAMPLES * mean_len / dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--free-length", action="store_true",
                    help="let both sides stop at EOS (unequal lengths)")
    fresh.add_options(ap)
    args = ap.parse_args(argv)
    if args.processes > 1:
        return fresh.repeat(__file__, ap, args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    task = ParityTask(args.d, 0.25)
    a, a_tok = ours(task, args.steps, args.free_length)
    try:
        b, b_tok = trl_grpo(task, args.steps, args.free_length)
    except ImportError as e:
        print(f"TRL is not installed ({e}); `pip install trl` to compare")
        return
    if args.json:
        import json

        print(json.dumps({"ntprl rollouts/s": a, "TRL rollouts/s": b, "ntprl tokens/s": a_tok,
                          "TRL tokens/s": b_tok, "ratio rollouts/s": a / b,
                          "ratio tokens/s": a_tok / b_tok if b_tok else float("nan")}))
        return
    print(f"ntprl.train.rl (GRPO)      {a:8.1f} rollouts/s  {a_tok:9.0f} tokens/s")
    print(f"TRL GRPOTrainer            {b:8.1f} rollouts/s  {b_tok:9.0f} tokens/s")
    print(f"ratio ntprl / TRL          {a / b:8.2f}x rollouts, "
          f"{a_tok / b_tok if b_tok else float('nan'):.2f}x tokens  (d={args.d}, "
          f"{PROMPTS}x{SAMPLES} rollouts a step, "
          f"{'free lengths' if args.free_length else 'every rollout d + 1 tokens'}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()

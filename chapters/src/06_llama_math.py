# %% [markdown]
# # 6. Llama on grade-school math: SFT on a long/short mixture, then GRPO
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ntprl/rl-after-ntp-book/blob/main/chapters/06_llama_math.ipynb)
#
# Chapters 2–4 showed the phenomenon on parity, where we control everything. The paper
# {cite}`tsilivis2025rl` ends with the same recipe on a pre-trained language model: fine-tune
# Llama on GSM8K {cite}`cobbe2021gsm8k` word problems whose targets are a *mixture* — with
# probability $p_{cot}$ the worked solution ("long"), otherwise the bare final answer
# ("short") — and then post-train with GRPO {cite}`shao2024deepseekmath` and a reward for the
# right number only. The prediction carries over from parity: supervised fine-tuning leaves the
# model mostly answering short (and often wrong), and RL, which only ever rewards correct
# numbers, moves it to the long route, raising accuracy *and* response length.
#
# This chapter runs the whole path with Hugging Face `transformers`, TRL and PEFT
# {cite}`vonwerra2022trl` through `ntprl.llm`. On a CPU (`smoke`, `fast`) it runs on a tiny
# *random* Llama built in code, with a character tokenizer and a dozen hand-written problems
# shipped with the library: every line executes, but the numbers mean nothing (the model has
# never read a word). On a GPU (`gpu`, `paper`) the same cells train a real pre-trained model
# on the real GSM8K.
#
# **Learning goals.** After this chapter you can
# - build a long/short SFT mixture from GSM8K and read answers back robustly;
# - run SFT with a completion-only loss and GRPO with a correctness reward using TRL, with
#   LoRA when memory is short;
# - name the GRPO settings that move response length (loss aggregation, advantage
#   normalisation, KL, temperature) and where they live in TRL;
# - read accuracy, response length and long fraction before and after RL.
#
# **Compute.** `ntprl.llm.PRESETS` holds one configuration per scale:
#
# | scale | model | where | time and GPU memory (estimated, not yet measured on a GPU) |
# | --- | --- | --- | --- |
# | `smoke`, `fast` | tiny random Llama (0.1M parameters) | any CPU | under a minute |
# | `gpu` | `HuggingFaceTB/SmolLM2-360M` (Llama architecture, ungated), LoRA, fp16 | a Colab T4 | about 15 minutes, ~10 GB |
# | `paper` | `meta-llama/Llama-3.2-3B` (gated), full fine-tuning, bf16 | one A100/H100 80 GB | a few hours, ~60 GB |
#
# What has been run: the whole path on CPUs (CI runs it), and on an NVIDIA H200 with the tiny
# model in bf16 with and without LoRA and in fp16. The `gpu` and `paper` presets with their
# real models have **not** been run yet: the GPU machine available to us could not download
# models, so their times and memory are estimates and no stored run ships.

# %% tags=["hide-output"]
# Setup. In Colab this installs the book's library with its LLM extra (transformers, TRL, PEFT,
# datasets); torch is already there.
import sys

if "google.colab" in sys.modules:
    %pip install -q "ntprl[llm] @ git+https://github.com/ntprl/rl-after-ntp-book@main#subdirectory=lib"

import re
import subprocess

import matplotlib.pyplot as plt
import torch

import ntprl
from ntprl import checks, llm, plots, results
from ntprl.llm import gsm8k

scale = ntprl.scale.setup(seed=0)  # $NTPRL_SCALE, else "gpu" with CUDA, else "fast"
cfg = llm.config(scale.name)
print(f"LLM preset {cfg.name!r}: {cfg.model} — {cfg.expected}")

# %% [markdown]
# On a GPU, first see what you have. The `gpu` preset is sized for a 16 GB T4 with LoRA; the
# `paper` preset for an 80 GB card (both estimates: neither has run on such a card yet). (For the gated `meta-llama` models, accept the licence on the
# model's page on huggingface.co, then log in: in Colab,
# `from huggingface_hub import login; login()`. `ntprl.llm.load_model` stops with a clear
# message if you have no token.) To train Meta's own small Llama instead of SmolLM2 on a T4,
# use `cfg = llm.config("gpu", model="meta-llama/Llama-3.2-1B")` after logging in.

# %%
if torch.cuda.is_available():
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout)
    free, total = torch.cuda.mem_get_info()
    print(f"GPU memory: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB; "
          f"LoRA on: {llm.recipe.use_lora(cfg)}")
else:
    print("No GPU: this run uses the tiny random Llama on the CPU (numbers are not meaningful).")

# %% [markdown]
# ## The mixture
#
# A GSM8K solution reasons in a few lines, with calculator notes `<<48/2=24>>` that we strip,
# and ends in `#### N`. The long target is that solution; the short one is `#### N` alone. A
# share $p_{cot}$ of the SFT problems get the long target. The prompt is the plain
# `Question: … Answer:` of `gsm8k.PROMPT_TEMPLATE` for base models (the tokenizer's chat template
# for instruct models), and the target follows after one space.

# %%
model, tokenizer = llm.load_model(cfg)
sft_problems, rl_problems, test = llm.load_splits(cfg)
mixture = gsm8k.make_mixture(sft_problems, cfg.p_cot, cfg.seed, tokenizer)
print(f"{len(sft_problems)} SFT problems, {len(rl_problems)} GRPO prompts, {len(test)} test problems; "
      f"long share of the mixture {sum(m['long'] for m in mixture) / len(mixture):.2f} (p_cot = {cfg.p_cot})")
long_ex = next(m for m in mixture if m["long"])
short_ex = next(m for m in mixture if not m["long"])
print("--- a long target ---")
print(long_ex["prompt"] + long_ex["completion"])
print("--- a short target ---")
print(short_ex["prompt"] + short_ex["completion"])

# %% [markdown]
# Reading answers back is where evaluations silently go wrong, so `gsm8k.extract_answer` takes
# the number after the *last* `####`, else the last number in the text, and normalises it
# (commas, `$`, signs, trailing zeros). `gsm8k.is_long` calls a response long when it reasons
# before its answer (a number or at least four words before the final answer).

# %%
for text in ["#### 1,234", "She pays $12.50 in total.", "3 + 4 = 7\n#### 7", "#### 7", "I think 7"]:
    print(f"{text!r:32s} -> answer {gsm8k.extract_answer(text)!r:8s} long: {gsm8k.is_long(text)}")

# %% [markdown]
# ## Supervised fine-tuning on the mixture
#
# `llm.sft` wraps TRL's `SFTTrainer`: prompt-completion examples, a loss on the completion and
# its EOS only (ending the answer is learned too), cosine learning rate, LoRA adapters
# {cite}`hu2022lora` (merged
# back afterwards) when `llm.recipe.use_lora(cfg)` says so. Then greedy evaluation on test
# problems: accuracy, mean response length in tokens, long fraction.

# %%
before = llm.evaluate(model, tokenizer, test, cfg)
model, sft_log = llm.sft(model, tokenizer, mixture, cfg)
after_sft = llm.evaluate(model, tokenizer, test, cfg)
for name, ev in [("before SFT", before), ("after SFT", after_sft)]:
    print(f"{name:11s} greedy accuracy {ev['greedy_acc']:.3f}, mean length {ev['len_mean']:.1f} tokens, "
          f"long fraction {ev['long_frac']:.2f}")

# %% [markdown]
# ## GRPO with a correctness reward
#
# `llm.grpo` wraps TRL's `GRPOTrainer`. For each prompt it samples `cfg.num_generations`
# answers at `cfg.temperature`, scores each 1 if its final number is right and 0 otherwise, and
# pushes up the answers that beat their group's mean. The choices that move response length
# are named fields of `llm.LLMConfig`, passed to TRL unchanged:
#
# | field | TRL argument | what it does to length |
# | --- | --- | --- |
# | `loss_type` (`"dr_grpo"`) | `loss_type` | `"grpo"` averages within each answer, so a long wrong answer is penalised less per token than a short one (a length bias); `"dr_grpo"` divides by a constant and `"dapo"` by the token count of the batch, neither biased |
# | `scale_rewards` (`"group"`) | `scale_rewards` | dividing by the group's std up-weights prompts that are almost always solved or almost never |
# | `beta` (`0.0`) | `beta` | a KL penalty to the SFT model pulls the answers back towards the SFT model's, lengths included |
# | `temperature` (`1.0`) | `temperature` | hotter sampling explores the long route more often, and breaks it more often |
#
# A second reward function with weight 0 logs the long fraction of the samples at every step.

# %%
model, grpo_log = llm.grpo(model, tokenizer, rl_problems, cfg)
after_grpo = llm.evaluate(model, tokenizer, test, cfg)
steps = [r for r in grpo_log if "rewards/correctness/mean" in r]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
for ax, key, label in zip(axes, ["rewards/correctness/mean", "completions/mean_length",
                                 "rewards/long_answer/mean"],
                          ["sampled accuracy (reward)", "sampled length (tokens)", "sampled long fraction"]):
    ax.plot([r["step"] for r in steps], [r.get(key, float("nan")) for r in steps], "o-",
            color=plots.COLORS["rl"])
    ax.set(xlabel="GRPO step", ylabel=label)
fig.suptitle(f"GRPO on {cfg.model} (scale {cfg.name})")
fig.tight_layout()

# %%
rows = [("before SFT", before), ("after SFT", after_sft), ("after GRPO", after_grpo)]
print(f"{'':11s} {'greedy acc':>10s} {'length':>8s} {'long':>6s}")
for name, ev in rows:
    print(f"{name:11s} {ev['greedy_acc']:10.3f} {ev['len_mean']:8.1f} {ev['long_frac']:6.2f}")
for name, ev in [("after SFT", after_sft), ("after GRPO", after_grpo)]:
    ex = ev["examples"][0]
    print(f"\n--- {name}: {ex['question'][:80]}…\n{ex['response'][:400]}\n(gold {ex['gold']}, "
          f"{'right' if ex['correct'] else 'wrong'})")

# %%
if scale.name in ("gpu", "paper"):
    assert after_grpo["greedy_acc"] > after_sft["greedy_acc"], (after_sft["greedy_acc"], after_grpo["greedy_acc"])
    assert after_grpo["len_mean"] > after_sft["len_mean"], (after_sft["len_mean"], after_grpo["len_mean"])
    print("✓ GRPO raised greedy accuracy and mean response length over the SFT model")
else:
    print("CPU scale: a random tiny model, so no claim is checked here; the path ran end to end.")

# %% [markdown]
# At `smoke`/`fast` the numbers above are those of a random model and carry no meaning. The
# claims — GRPO raises greedy accuracy above the SFT model's, and lengthens the answers — are
# checked only at the GPU scales, by the assert above.
#
# ### A stored GPU run
#
# When the library ships a stored run of this recipe (`python -m ntprl run llama_gsm8k --scale gpu`
# on a GPU, saved under `lib/ntprl/runs/`), it is plotted here, labelled with its GPU and scale.

# %%
stored = results.stored("llama_gsm8k")
if stored is None:
    print("This version of ntprl ships no stored GPU run of `llama_gsm8k`: no GPU run with a "
          "downloadable model has been made for it yet, so only the live run above is shown.")
else:
    res = stored["result"]
    ax = plots.label_run(plt.subplots(figsize=(5, 3.2))[1], stored)
    names = ["after SFT", "after GRPO"]
    ax.bar(names, [res["sft"]["eval"]["greedy_acc"], res["grpo"]["eval"]["greedy_acc"]],
           color=[plots.COLORS["ntp"], plots.COLORS["rl"]])
    ax.set(ylabel="greedy accuracy on GSM8K test")

# %% [markdown]
# ## Exercises
#
# :::{exercise}
# :label: ex6-extract
# Write your own answer extractor `my_extract(text)`: the number after the last `####`, else
# the last number in the text, as a string without commas, `$` or trailing zeros (`"3.50"` →
# `"3.5"`, `"7.0"` → `"7"`); `None` when there is no number. It is checked against
# `gsm8k.extract_answer` on a dozen tricky cases.
# :::
#
# :::{solution-start} ex6-extract
# :class: dropdown
# :::

# %% tags=["solution"]
def my_extract(text):
    """The last '#### N' if any, else the last number; normalised."""
    number = r"-?\$?\d[\d,]*(?:\.\d+)?|-?\$?\.\d+"
    marked = re.findall(r"####\s*(" + number + ")", text)
    found = marked or re.findall(number, text)
    if not found:
        return None
    s = found[-1].replace("$", "").replace(",", "")
    s = ("-0" + s[1:]) if s.startswith("-.") else ("0" + s) if s.startswith(".") else s
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s

# %% [markdown]
# :::{solution-end}
# :::

# %%
checks.check(my_extract, gsm8k.extract_answer,
             ["#### 18", "####18", "#### 1,234", "#### -5", "#### $42", "#### 3.50", "#### 7.0",
              "The answer is 12.", "so 3 + 4 = 7 apples", "#### 12\n#### 13", "no number", "#### .5"])

# %% [markdown]
# :::{exercise}
# :label: ex6-target
# Build the long training target yourself: write `my_long_target(solution)` that takes a GSM8K
# solution, removes every calculator note `<<…>>`, and ends with a newline and `#### N` (the
# solution's answer without commas, as `gsm8k.gold_answer` gives it). It is checked against
# `gsm8k.long_target` on the problems of this run and on a few tricky solutions.
# :::
#
# :::{solution-start} ex6-target
# :class: dropdown
# :::

# %% tags=["solution"]
def my_long_target(solution):
    """Reasoning without <<...>> notes, then '\n#### N'."""
    reasoning, answer = solution.rsplit("####", 1)
    reasoning = re.sub(r"<<[^<>]*>>", "", reasoning).rstrip()
    return f"{reasoning}\n#### {gsm8k.normalize_number(answer)}"

# %% [markdown]
# :::{solution-end}
# :::

# %%
tricky = ["She pays 3 * $4 = $<<3*4=12>>12.\n#### 12",
          "It is 1,000 + 200 = <<1000+200=1200>>1,200 m.\nThen 1200/4=<<1200/4=300>>300\n#### 1,200",
          "No notes here.\n#### -7"]
checks.check(my_long_target, gsm8k.long_target, tricky + [p["answer"] for p in sft_problems[:20]])

# %% [markdown]
# **Going further (on a GPU, open-ended).** Chapter 2 says NTP on a mixture is calibrated: the
# SFT model should go long with probability about $p_{cot}$ when sampling, and answer short
# under greedy decoding when $p_{cot}$ is small. Predict the long fraction after SFT and after
# GRPO for `llm.config("gpu", p_cot=0.1)` and for `p_cot=0.5`, then run them. Which parts of
# the parity story carry over to a pre-trained model, which do not, and why might a model that
# has read worked solutions in pre-training behave differently even at $p_{cot} = 0$?
#
# ## Summary
#
# - The long/short mixture, the correctness reward and the long fraction are a few lines each
#   in `ntprl.llm.gsm8k`; the training loops are TRL's, with every length-relevant choice
#   named in `llm.LLMConfig`.
# - The paper's prediction for a pre-trained model: GRPO after SFT on a mixture raises accuracy
#   and response length. This book has not yet measured it on a GPU: the assert above checks
#   it whenever the chapter runs at the `gpu` or `paper` scale.

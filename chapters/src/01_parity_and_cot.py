# %% [markdown]
# # 1. Parity and chain-of-thought mixtures
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/ntprl/rl-after-ntp-book/blob/main/chapters/student/01_parity_and_cot.ipynb)
# (the exercises without their solutions; or open [the full chapter, with solutions](https://colab.research.google.com/github/ntprl/rl-after-ntp-book/blob/main/chapters/01_parity_and_cot.ipynb))
#
# This chapter sets up the problem the whole book is about. Parity — the XOR of $d$ bits — is
# a function that gradient-based learners find exponentially hard to learn from input–answer
# pairs, and easy to learn when every example spells out the intermediate steps. Real
# pre-training data is a *mixture*: mostly bare answers, occasionally worked solutions. The
# paper {cite}`tsilivis2025rl` turns that observation into a precise model, the mixture
# $\mathcal{D}(p_{cot})$, which the rest of the book studies.
#
# **Learning goals.** After this chapter you can
# - say why parity without intermediate steps is hard for a gradient-trained model, and see it
#   happen;
# - write the running-parity chain of thought and explain why each of its steps is easy;
# - describe the mixture $\mathcal{D}(p_{cot})$ and generate from it with `ntprl`.
#
# **Compute.** One switch, `NTPRL_SCALE`, sets the size of every experiment (see
# {doc}`../book/intro`):
#
# | scale | where | this chapter |
# | --- | --- | --- |
# | `smoke` | CI | < 1 minute (numbers meaningless, code paths only) |
# | `fast` | 2-core laptop CPU | 3–5.5 minutes (3.0 measured on a CPU with bf16 instructions, at most 5.2 in float32) |
# | `gpu` | a Colab T4 | about 10 minutes on a T4 (estimated); 5 minutes measured on an H200 |
# | `paper` | one large GPU | about an hour |
#
# **Before you start.** Python and PyTorch tensors; what a decoder-only language model is and how next-token prediction trains it; XOR.
#
# **Working time.** about 1.5 hours of reading and exercises, beside the compute time above.
#
# **Further reading.** why parity is hard for gradient methods {cite}`shalev2017failures,daniely2020learning,barak2022hidden`; how sub-tasks and scratchpads make it easy {cite}`wies2023subtask,nye2021scratchpad,abbe2024far,kim2025transformers`.

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

import itertools

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
from ntprl import checks, plots
from ntprl.experiments import parity_hardness
from ntprl.tasks import EOS, PAD, ParityTask

scale = ntprl.scale.setup(None if SCALE == "auto" else SCALE, seed=0)
workdir = WORKDIR or None  # experiments cache and resume their parts here

# %% [markdown]
# ## The parity problem
#
# The input is $d$ uniform random bits $x_1, \dots, x_d \in \{0, 1\}$; the target is their
# parity $y = x_1 \oplus x_2 \oplus \dots \oplus x_d$, 1 when the number of ones is odd.
# (The paper writes bits as $\pm 1$ and parity as their product; with $0/1$ tokens and XOR
# it is the same function.)
#
# Why is this hard? Look at what any *part* of the input says about $y$. Flip one bit you
# have not looked at and $y$ flips too, so for every proper subset $S$ of the bits,
# $y$ is independent of $x_S$: knowing 99 of 100 bits tells you nothing. A learner that
# improves by following correlations between features and the label — which is what a
# gradient does — gets no signal until it considers all $d$ bits at once, and there are
# exponentially many ways to combine them. This is the classical hardness of parity for
# gradient methods {cite}`shalev2017failures,daniely2020learning`; even in the best case SGD
# needs on the order of $d^{k}$ steps for a $k$-sparse parity {cite}`barak2022hidden`.
#
# We can check the independence exactly, by enumerating all $2^d$ inputs: the correlation
# between $(-1)^y$ and the "character" $(-1)^{\sum_{i \in S} x_i}$ of any subset $S$ is 0 unless
# $S$ is the whole input.

# %%
d_small = 8
X = torch.tensor(list(itertools.product([0, 1], repeat=d_small)))  # all 2^d inputs
y_pm = 1 - 2 * ParityTask.parity(X)                                # (-1)^parity


def correlation(subset):
    """E[(-1)^y (-1)^{sum of x_i over the subset}] over all inputs."""
    chi = 1 - 2 * (X[:, list(subset)].sum(1) % 2)
    return (y_pm * chi).float().mean().item()


by_size = {
    k: max(abs(correlation(S)) for S in itertools.combinations(range(d_small), k))
    for k in range(1, d_small + 1)
}
print("largest |correlation| with a subset of size k:", by_size)
assert all(by_size[k] == 0 for k in range(1, d_small)) and by_size[d_small] == 1

# %% [markdown]
# ## The chain of thought: running parities
#
# Now give the model the intermediate results. The **running parities** are
# $s_1 = x_1$ and $s_i = s_{i-1} \oplus x_i$; the last one, $s_d$, is the answer. Each step
# depends on just two tokens, the previous running parity and one input bit, so each is a tiny
# function of the context that a transformer picks up quickly
# {cite}`wies2023subtask,kim2025transformers`. Abbe et al. {cite}`abbe2024far` train such
# running-parity scratchpads up to $d = 200$.
#
# In `ntprl` a sequence is the prompt of $d$ bits followed directly by a response (there is
# no separator: the prompt length is fixed). A **long** response is the chain
# $s_1 \dots s_d$ then `EOS`; a **short** response is $s_d$ alone then `EOS`. `PAD` fills
# the rest of a batch row and is never a training target.

# %%
task = ParityTask(d=8, p_cot=1.0)
x = torch.tensor([[1, 0, 1, 1, 0, 0, 1, 0]])
print("prompt      ", x[0].tolist())
print("chain s_1..d", task.chain_of(x)[0].tolist(),
      "  parity:", ParityTask.parity(x).item())
for p, name in ((1.0, "long "), (0.0, "short")):
    t = ParityTask(8, p)
    print(name, t.pretty(t.sample(1, torch.Generator().manual_seed(1))[0]))
print("tokens: 0, 1 = bits,", f"EOS = {EOS}, PAD = {PAD}")

# %% [markdown]
# ## How much data does each route need?
#
# Here is the contrast the paper builds on, measured. We train the same small transformer
# (`ntprl.models.GPT`, sized by the scale: 2 layers of width 128 at `fast`) by next-token
# prediction on fresh samples, either on **short-only** data
# ($p_{cot} = 0$: prompt, answer) or on **full chains** ($p_{cot} = 1$). Every
# `hardness_eval_every` steps we measure greedy accuracy on fresh prompts and stop at the first
# check at or above 95%. Every run has the same budget, `scale.hardness_max_steps` steps; a
# run that has not learned by then is marked as such — its true cost is *at least* the budget.
#
# The loop lives in `ntprl.experiments.parity_hardness`, so the same code runs here and from
# the command line.

# %%
hardness = parity_hardness(scale, seed=0, workdir=workdir)
budget = hardness["max_steps"] * hardness["batch_size"]  # samples in one run's budget
for kind in ("short", "chain"):
    print(f"{kind:5s}", [(r["d"], r["samples"] if r["samples"] else f">{budget}")
                         for r in hardness[kind]])

# %% tags=["hide-input"]
ax = plots.hardness(hardness)
ax.set_title("Samples to learn d-bit parity: bare answers vs chains");

# %% [markdown]
# With bare answers, the samples needed grow with $d$, and past a small $d$ the model does
# not learn within the budget at all: it stays at chance (50%). With the chain, the same
# model learns every $d$ in the grid, up to at least twice the largest $d$ short-only
# training learned, within a small fraction of the budget (at most a quarter of it, asserted below).
#
# Small $d$ deserves a caveat: there are only $2^d$ distinct inputs (16 at $d = 4$, 256 at
# $d = 8$), and once the budget shows each of them many times, short-only training can
# succeed by memorising a lookup table. So at small $d$ a success says little about learning
# parity, and a failure is one of optimisation, not of too little data. The main transformer
# experiments of chapters 2 and 4 use $d \ge 16$, where there are $2^{16} = 65\,536$
# inputs; where the book goes smaller (chapter 3's cost curve starts at $d = 8$, chapter 4's
# leap-2 runs use $d = 8$), it says why.
#
# The claims of this section, checked on the numbers just computed (at every scale but
# `smoke`, whose runs are too short to mean anything):

# %%
short, chain = hardness["short"], hardness["chain"]
if scale.checks_claims:
    # 1. with the chain, every d in the grid is learned within the budget
    assert all(r["steps"] is not None for r in chain), chain
    # 2. without it, the budget binds: some d is not learned at all ...
    failed = [r["d"] for r in short if r["steps"] is None]
    assert failed, ("short-only training learned every d: "
                    "the budget is too large to show the contrast")
    # ... and once a d fails, every larger d fails too (difficulty grows with d) ...
    assert all(r["steps"] is None for r in short if r["d"] >= min(failed)), short
    # ... where it ends at chance, not part-way
    stuck = [r["final_acc"] for r in short if r["steps"] is None]
    assert all(abs(a - 0.5) <= 0.08 for a in stuck), short
    # 3. where short-only succeeds, its cost grows with d
    learned = [r["samples"] for r in short if r["samples"] is not None]
    assert learned == sorted(learned), short
    # 4. the chain learns every d of its grid, the largest included, within a quarter
    #    of the budget that short-only training exhausts from d = min(failed) on, and
    #    its largest d is at least twice the largest d short-only training learned
    assert max(r["samples"] for r in chain) <= budget / 4, (chain, budget)
    short_best = max([r["d"] for r in short if r["steps"] is not None], default=0)
    assert max(r["d"] for r in chain) >= 2 * short_best, (chain, short)
    print(f"✓ short-only fails from d = {min(failed)} on; the chain learns up to "
          f"d = {max(r['d'] for r in chain)}, each d within a quarter of the budget")

# %% [markdown]
# ## The mixture $\mathcal{D}(p_{cot})$
#
# Pre-training corpora are neither all-chain nor all-answer. The paper models them as a
# mixture: each training sequence independently carries the long chain with probability
# $p_{cot}$ and the short answer otherwise. Both routes end in the same correct answer, so
# the data never disagrees with itself; the question of the next chapters is *which route a
# model trained on this mixture takes when it answers*.
#
# `ParityTask(d, p_cot)` samples from $\mathcal{D}(p_{cot})$:

# %%
mix = ParityTask(d=16, p_cot=0.25)
batch = mix.sample(10_000, torch.Generator().manual_seed(0))
long_share = mix.is_long(batch[:, mix.prompt_len:]).float().mean().item()
for row in batch[:6]:
    print(mix.pretty(row))
print(f"\nshare of long sequences in 10,000 samples: {long_share:.3f} "
      f"(p_cot = {mix.p_cot})")
# a sanity check of the sampler, at every scale
assert abs(long_share - mix.p_cot) < 0.02

# %% [markdown]
# ### Explore the mixture
#
# Move the slider to change $p_{cot}$ and draw new sequences. (The widget needs a running
# kernel — in Colab or Jupyter. On the static page, the printed samples after it show the same
# thing at three values of $p_{cot}$.)

# %% tags=["remove-output"]
import ipywidgets as widgets


def show_samples(p_cot=0.25, d=12, seed=0):
    t = ParityTask(d, p_cot)
    seqs = t.sample(8, torch.Generator().manual_seed(seed))
    n_long = int(t.is_long(seqs[:, d:]).sum())
    print(f"p_cot = {p_cot:.2f}: {n_long} of 8 sequences are long")
    for s in seqs:
        print("  ", t.pretty(s))


widgets.interact(
    show_samples,
    p_cot=widgets.FloatSlider(value=0.25, min=0, max=1, step=0.05),
    d=widgets.IntSlider(value=12, min=4, max=24),
    seed=widgets.IntSlider(value=0, min=0, max=20),
);

# %%
# Static fallback for the rendered page: the same explorer at three values of p_cot
for p in (0.1, 1 / 3, 0.7):
    show_samples(p, d=12, seed=1)

# %% [markdown]
# ## Exercises
#
# :::{exercise}
# :label: ex1-running-parity
# Write `running_parity(x)`: given a LongTensor of prompts of shape `(n, d)` with 0/1 bits,
# return the running parities $s_1, \dots, s_d$ as a LongTensor of the same shape. Use no loop
# over rows (and do not call `ParityTask.chain_of`, which computes the same: the check
# refuses it). The check cell compares your function with its own reference on random
# prompts of several sizes.
# :::
#
# :::{solution-start} ex1-running-parity
# :class: dropdown
# :::

# %% tags=["solution"]
def running_parity(x):
    """Running parities s_i = x_1 XOR ... XOR x_i of each row of x."""
    return torch.cumsum(x, dim=1) % 2

# %% [markdown]
# :::{solution-end}
# :::

# %%
checks.ex1_running_parity(running_parity)

# %% [markdown]
# :::{exercise}
# :label: ex1-sequence
# Write `make_sequence(x, long)`: given one prompt `x` (a list of $d$ bits) and whether the
# response is long, return the full token list the task would produce *without padding*:
# the prompt, then the chain or the answer, then `EOS`. For example
# `make_sequence([1, 1, 0], True) == [1, 1, 0, 1, 0, 0, EOS]`.
# :::
#
# :::{solution-start} ex1-sequence
# :class: dropdown
# :::

# %% tags=["solution"]
def make_sequence(x, long):
    """Prompt + (running parities if long, else the parity alone) + EOS, as a list."""
    chain, s = [], 0
    for bit in x:
        s ^= bit
        chain.append(s)
    return list(x) + (chain if long else chain[-1:]) + [EOS]

# %% [markdown]
# :::{solution-end}
# :::

# %%
checks.ex1_sequence(make_sequence)

# %% [markdown]
# :::{exercise}
# :label: ex1-predict
# *Predict, then check.* Suppose a model trained on $\mathcal{D}(p_{cot})$ had learned the long
# route perfectly and the short route not at all, and that it reproduces the mixture: it writes
# the whole chain with probability $p_{cot}$. Sampling from it, what is its accuracy? Write it as a
# function `sampled_accuracy(p)` of $p = p_{cot}$. (Hint: a short answer from a model that
# knows nothing of the short map is a coin flip.) Chapter 2 measures this on trained models.
# :::
#
# :::{solution-start} ex1-predict
# :class: dropdown
# :::

# %% tags=["solution"]
def sampled_accuracy(p):
    """Long answers are always right (prob. p); short ones are right half the time."""
    return p + (1 - p) / 2

# %% [markdown]
# :::{solution-end}
# :::

# %%
checks.ex1_predict(sampled_accuracy)

# %% [markdown]
# ## Concept questions
#
# For discussion; they have no single numeric answer and no check.
#
# 1. A chain step $s_i = s_{i-1} \oplus x_i$ depends on two earlier tokens. Why does that make it learnable by gradient descent when the short answer, which depends on all $d$ bits, is not?
# 2. A model that never learned the short map answers short questions right half the time. With half of its training data long, what accuracy do you expect from sampling, and from greedy decoding? (Chapter 2 gives the answer.)
# 3. The chapter's budget counts *samples*. Why is that the right unit to compare the short-only and the chain runs, rather than steps or wall time?

# %% [markdown]
# ## Summary
#
# - Parity hides all its signal in the full set of bits, so learning it from bare answers is
#   hard, and measurably so: the samples needed explode with $d$.
# - A chain of running parities breaks it into $d$ two-token steps, each easy; with chains the
#   same model learns large $d$ quickly.
# - The mixture $\mathcal{D}(p_{cot})$ holds both kinds of demonstration. Next chapter: train
#   on it by next-token prediction, and watch the model learn the long route — and almost
#   never use it.


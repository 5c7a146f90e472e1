"""ntprl: next-token prediction, then reinforcement learning.

The library of the book that reproduces Tsilivis, Malach, Ullrich & Kempe (2025), *How
Reinforcement Learning After Next-Token Prediction Facilitates Learning*. One idea a module:

- ``ntprl.tasks``       parity with chain-of-thought mixtures D(p_cot); n-digit multiplication
- ``ntprl.models``      a small GPT with a KV cache; chapter 3's autoregressive linear model
- ``ntprl.sampling``    one batched greedy/temperature sampler
- ``ntprl.train.ntp``   next-token prediction on fresh batches
- ``ntprl.train.rl``    RL post-training: STaR, REINFORCE, GRPO
- ``ntprl.theory``      closed forms: calibration, the 1/3 threshold, the STaR map and rounds
- ``ntprl.metrics``     greedy/sampled accuracy, long fraction, response length
- ``ntprl.experiments`` the book's experiments as functions of a ``Scale``
- ``ntprl.results``     stored runs (``ntprl/runs/``) and their provenance
- ``ntprl.scale``       the four scales: smoke | fast | gpu | paper
- ``ntprl.plots``       the book's figure style and recurring plots
- ``ntprl.checks``      self-checks for exercises; ``ntprl.grading`` grades a class's notebooks
- ``ntprl.llm``         chapter 6: a pre-trained model, SFT then GRPO (transformers, TRL, PEFT)
"""

__version__ = "0.2.0"  # the one place the version is written (CHANGELOG.md: how to release)

from . import checks, experiments, metrics, models, plots, sampling, scale, tasks  # noqa: E402,F401
from .train import ntp  # noqa: E402,F401

"""ntprl: next-token prediction, then reinforcement learning.

The library of the book that reproduces Tsilivis, Malach, Ullrich & Kempe (2025), *How
Reinforcement Learning After Next-Token Prediction Facilitates Learning*. One idea a module:

- ``ntprl.tasks``       parity with chain-of-thought mixtures D(p_cot)
- ``ntprl.models``      a small GPT with a KV cache
- ``ntprl.sampling``    one batched greedy/temperature sampler
- ``ntprl.train.ntp``   next-token prediction on fresh batches
- ``ntprl.metrics``     greedy/sampled accuracy, long fraction, response length
- ``ntprl.experiments`` the book's experiments as functions of a ``Scale``
- ``ntprl.scale``       the four scales: smoke | fast | gpu | paper
- ``ntprl.plots``       the book's figure style and recurring plots
- ``ntprl.checks``      self-checks for exercises
"""

__version__ = "0.2.0"  # the one place the version is written (CHANGELOG.md: how to release)

from . import checks, experiments, metrics, models, plots, sampling, scale, tasks  # noqa: E402,F401
from .train import ntp  # noqa: E402,F401

"""One switch, four sizes: ``smoke | fast | gpu | paper``.

Every chapter and experiment reads its sizes from a :class:`Scale`. Pick one with
``ntprl.scale.get(name)``, or set the environment variable ``NTPRL_SCALE``; the default is
``gpu`` when CUDA is available, else ``fast``.

- ``smoke``: CI. Tiny runs that execute every code path; each chapter in well under a minute.
  Claim asserts are skipped (``scale.checks_claims`` is False); shape/sanity asserts still run.
- ``fast``: a laptop CPU (2 cores). Each chapter in <= 10 minutes; d around 16-24; the paper's
  phenomena show and the claim asserts run.
- ``gpu``: one free-Colab-class GPU (a T4). Each chapter in <= 15 minutes, closer to the paper.
- ``paper``: the paper's own settings on one GPU, for the CLI; hours are fine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch

ENV_VAR = "NTPRL_SCALE"


@dataclass(frozen=True)
class Scale:
    name: str
    description: str            # what it is for and the expected wall time per chapter
    checks_claims: bool         # run the asserts on the paper's claims
    # -- the model (a GPT; chapters may override) --------------------------------------------
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    # -- NTP training ------------------------------------------------------------------------
    batch_size: int = 128       # fresh sequences per optimiser step
    lr: float = 1e-3            # AdamW learning rate
    eval_n: int = 1000          # prompts per evaluation
    seeds: int = 1              # independent repeats where a figure shows seeds
    # -- chapter 1: samples needed to learn parity, short-only vs full chain -----------------
    hardness_ds_short: tuple[int, ...] = (4, 6, 8, 10)
    hardness_ds_chain: tuple[int, ...] = (4, 8, 16, 24, 32)
    hardness_max_steps: int = 2000   # budget per run; short-only runs past it count as "not learned"
    hardness_eval_every: int = 100   # steps between greedy-accuracy checks
    hardness_target: float = 0.95    # greedy accuracy that counts as learned

    def with_(self, **changes) -> "Scale":
        """A copy with some fields changed (e.g. ``scale.with_(seeds=1)``)."""
        return replace(self, **changes)


PRESETS = {
    "smoke": Scale(
        name="smoke", checks_claims=False,
        description="CI: every code path on tiny runs; well under a minute per chapter on a CPU.",
        n_layer=1, n_head=2, n_embd=32, batch_size=32, eval_n=64,
        hardness_ds_short=(3, 4), hardness_ds_chain=(4, 6), hardness_max_steps=20,
        hardness_eval_every=10),
    "fast": Scale(
        name="fast", checks_claims=True,
        description="2-core laptop CPU: <= 10 minutes per chapter; d around 16-24.",
        eval_n=512),
    "gpu": Scale(
        name="gpu", checks_claims=True,
        description="one T4-class GPU (Colab): <= 15 minutes per chapter; d up to 50.",
        batch_size=256, eval_n=2000, seeds=2,
        hardness_ds_short=(4, 6, 8, 10, 12), hardness_ds_chain=(4, 8, 16, 32, 50, 64),
        hardness_max_steps=5000, hardness_eval_every=100),
    "paper": Scale(
        name="paper", checks_claims=True,
        description="the paper's settings on one GPU, for the CLI: hours; runs resume.",
        n_layer=4, n_embd=256, n_head=8, batch_size=256, eval_n=4000, seeds=3,
        hardness_ds_short=(4, 6, 8, 10, 12, 14), hardness_ds_chain=(4, 8, 16, 32, 50, 64, 100),
        hardness_max_steps=50_000, hardness_eval_every=250),
}
NAMES = tuple(PRESETS)


def default_name() -> str:
    """``$NTPRL_SCALE`` if set, else ``gpu`` with CUDA, else ``fast``."""
    return os.environ.get(ENV_VAR) or ("gpu" if torch.cuda.is_available() else "fast")


def get(name: str | None = None) -> Scale:
    """The preset called ``name`` (default: :func:`default_name`)."""
    name = default_name() if name is None else name
    if name not in PRESETS:
        raise ValueError(f"scale={name!r} is not allowed: choose one of {NAMES} "
                         f"(argument or ${ENV_VAR})")
    return PRESETS[name]


def device() -> torch.device:
    """The device chapters train on: CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

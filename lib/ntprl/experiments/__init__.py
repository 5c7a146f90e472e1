"""The book's experiments, as functions of a :class:`~ntprl.scale.Scale` and a seed.

Each experiment returns a plain, JSON-serialisable dict, so the same code runs from a notebook,
a test or the command line, and its result can be stored and plotted later. One module a
chapter; what they share is in :mod:`.common`; the registry of names is below.

    common            make_model, pretrain, measure, steps_to_learn, the resumable-part cache,
                      run_parts (an experiment's independent parts in worker processes)
    mixtures          chapters 1-2: parity_hardness, threshold, more_data
    linear            chapter 3: linear_theory
    rl_post_training  chapter 4: rl_start, rl_post_training, rounds_vs_p, leap2, rl_start_sweep,
                      temperature_controls, architectures
    multiplication    chapter 5: mult_hardness, mult_threshold, mult_rl
    llm               chapter 6: llama_gsm8k, llm_sums
"""

from __future__ import annotations

import inspect

from ..scale import Scale
from .common import (TARGET, Part, first_step, load_model, make_model, measure, part_identity,
                     pretrain, resumable, run_parts, steps_to_learn)
from .linear import linear_ntp, linear_theory, make_linear
from .llm import llama_gsm8k, llm_sums
from .mixtures import more_data, parity_hardness, threshold, train_and_measure
from .multiplication import (mixture_model, mult_hardness, mult_measure, mult_rl,
                             mult_threshold)
from .rl_post_training import (architectures, leap2, rl_post_training, rl_post_training_parts,
                               rl_run, rl_start, rl_start_sweep, rounds_vs_p,
                               temperature_controls)

EXPERIMENTS = {"parity_hardness": parity_hardness, "threshold": threshold, "more_data": more_data,
               "linear_theory": linear_theory, "rl_post_training": rl_post_training,
               "rounds_vs_p": rounds_vs_p, "leap2": leap2, "rl_start_sweep": rl_start_sweep,
               "temperature_controls": temperature_controls, "architectures": architectures,
               "mult_hardness": mult_hardness,
               "mult_threshold": mult_threshold, "mult_rl": mult_rl,
               "llama_gsm8k": llama_gsm8k, "llm_sums": llm_sums}
TRL_EXPERIMENTS = ("llama_gsm8k", "llm_sums")  # trained by transformers/TRL (ntprl.llm), not by
                                               # ntprl.train: in ntprl.llm's precision
                                               # (recipe.precision_name), fp16 on a T4


def run(name: str, scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Run the experiment called ``name``; ``workdir`` makes it resumable where it supports it."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment={name!r} is not allowed: choose one of {tuple(EXPERIMENTS)}")
    fn = EXPERIMENTS[name]
    kw = {"workdir": workdir} if "workdir" in inspect.signature(fn).parameters else {}
    return fn(scale, seed=seed, progress=progress, **kw)


__all__ = ["EXPERIMENTS", "Part", "TARGET", "TRL_EXPERIMENTS", "architectures", "first_step",
           "leap2",
           "linear_ntp", "linear_theory",
           "llama_gsm8k", "llm_sums", "load_model", "make_linear", "make_model", "measure",
           "mixture_model", "more_data", "mult_hardness", "mult_measure", "mult_rl",
           "mult_threshold",
           "parity_hardness", "part_identity", "pretrain", "resumable",
           "rl_post_training", "rl_post_training_parts", "rl_run", "rl_start", "rl_start_sweep",
           "rounds_vs_p", "run", "run_parts", "steps_to_learn", "temperature_controls", "threshold",
           "train_and_measure"]

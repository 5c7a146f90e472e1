"""One switch, four sizes: ``smoke | fast | gpu | paper``.

Every chapter and experiment reads its sizes from a :class:`Scale`. Pick one with
``ntprl.scale.get(name)``, or set the environment variable ``NTPRL_SCALE``; the default is
``gpu`` when CUDA is available, else ``fast``.

- ``smoke``: CI. Tiny runs that execute every code path; each chapter in well under a minute.
  Claim asserts on the live runs are skipped (``scale.checks_claims`` is False); shape/sanity
  asserts, and the chapters' asserts on stored runs, still run.
- ``fast``: a laptop CPU (2 cores). Each chapter in <= 10 minutes (chapter 6: 8-15); d = 16; the
  paper's phenomena show and the claim asserts run.
- ``gpu``: one free-Colab-class GPU (a T4). The aim is each chapter in <= 15 minutes (not
  measured on a T4; chapter 6's GSM8K path takes longer), closer to the paper.
- ``paper``: the largest settings, for the CLI on one GPU; hours are fine. The paper's d = 50
  headline (``more_data`` and ``rl_post_training``: a 4-layer, width-256 GPT, one of the
  paper's sizes, trained by NTP on ~10^7 sequences at p_cot = 0.25, then RL), and the
  threshold experiment at the paper's d = 25 with 3 seeds (rounds at d = 25 too, the book's
  choice). Where the paper's setting is unknown (model size at d = 50, optimiser, learning
  rate, RL batch and group sizes) the values are the book's.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import os
import typing
from dataclasses import dataclass, replace

import torch

from .models import ARCHITECTURES

ENV_VAR = "NTPRL_SCALE"
WORKERS_VAR = "NTPRL_WORKERS"  # how many parts of an experiment run at once: see workers()


@dataclass(frozen=True)
class Scale:
    name: str
    description: str            # what it is for and the expected wall time per chapter
    checks_claims: bool         # run the asserts on the paper's claims
    # -- the model (a GPT; chapters may override) --------------------------------------------
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    arch: str = "gpt2"          # "gpt2" (learned positions, LayerNorm, GELU, biases) or
                                # "mistral" (RoPE, RMSNorm, SwiGLU, no biases):
                                # ntprl.models.ARCHITECTURES
    # -- NTP training ------------------------------------------------------------------------
    batch_size: int = 128       # fresh sequences per optimiser step
    lr: float = 1e-3            # AdamW learning rate
    warmup_steps: int = 0       # linear lr warm-up of NTP runs from scratch (pretrain, threshold,
                                # more_data, rl_start_sweep)
    eval_n: int = 1000          # prompts per evaluation
    seeds: int = 1              # independent repeats where a figure shows seeds
    # -- chapter 1: samples needed to learn parity, short-only vs full chain -----------------
    hardness_ds_short: tuple[int, ...] = (4, 6, 8, 10)
    hardness_ds_chain: tuple[int, ...] = (4, 8, 16, 24, 32)
    hardness_max_steps: int = 2000   # budget per run; short-only runs past it count as
                                     # "not learned"
    hardness_eval_every: int = 100   # steps between greedy-accuracy checks
    hardness_target: float = 0.95    # greedy accuracy that counts as learned
    hardness_eval_n: int = 512       # prompts per greedy-accuracy check
    # -- chapter 2: NTP on the mixture -------------------------------------------------------
    d: int = 16                 # input bits of the main experiments
    threshold_p_grid: tuple[float, ...] = (0.1, 0.2, 0.27, 0.3, 0.37, 0.4, 0.5)
    threshold_steps: int = 600  # NTP steps per grid point
    more_data_d: int = 16       # d of the long run at p_cot = 0.25
    more_data_steps: int = 2000
    more_data_eval_every: int = 250
    # -- chapter 4: RL after NTP -------------------------------------------------------------
    rl_d: int = 16              # d of rl_post_training (the headline: NTP, then RL); rounds_vs_p
                                # uses d
    rl_p_cot: float = 0.2       # p_cot of the NTP checkpoint RL starts from (below 1/3)
    rl_ntp_steps: int = 1500    # NTP steps before RL
    rl_start_steps: tuple[int, ...] = (25, 50, 100, 200, 400, 1000)  # NTP checkpoints that
                                # rl_start_sweep starts GRPO from (early to learned chain)
    rl_early_step: int = 100    # an early NTP checkpoint, before the chain is learned (its
                                # sampled accuracy still at chance; chapter 4 checks this)
    rl_lr: float = 3e-4         # RL learning rate
    rl_prompts: int = 32        # prompts per RL step
    rl_samples: int = 8         # samples per prompt (GRPO group size)
    rl_steps: int = 25          # REINFORCE/GRPO steps
    rl_eval_every: int = 5      # RL steps between greedy/sampled evaluations
    star_samples: int = 2048    # samples per STaR round
    star_steps: int = 30        # fine-tuning steps per STaR round
    star_rounds: int = 8        # STaR rounds
    rl_temperatures: tuple[float, ...] = (0.75, 1.0, 1.5)
    rounds_p_grid: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)
    recal_steps: int = 200      # NTP steps that move the base model to each p_cot of the grid
    rounds_from_scratch: bool = False  # rounds_vs_p: train each p_cot's start model by NTP from
                                # scratch (rl_ntp_steps) instead of re-calibrating the base model
    rounds_max: int = 10        # STaR rounds allowed per p_cot
    rounds_min_long: int = 0    # rounds_vs_p: a round samples max(star_samples,
                                # rounds_min_long / p_cot) answers, so that from a rare p_cot it
                                # still keeps about rounds_min_long long ones to fit, not a handful
    leap2_d: int = 8            # d of the leap-2 experiment (small enough that its chain, whose
                                # steps are three-way XORs, is learned within leap2_steps)
    leap2_steps: int = 3000     # NTP steps per leap-2 / full-chain / short-only run
    leap2_p_grid: tuple[float, ...] = (0.1, 0.2, 0.3)
    # -- chapter 5: multiplication ------------------------------------------------------------
    mult_ns: tuple[int, ...] = (1, 2, 3)  # digits of the samples-to-learn experiment
    mult_batch: int = 64        # sequences per NTP step of every chapter-5 run
    mult_max_steps: int = 2500  # budget per samples-to-learn run
    mult_eval_every: int = 100  # steps between greedy-accuracy checks there
    mult_n: int = 3             # digits of the threshold and RL experiments
    mult_recal_steps: int = 600  # NTP steps that move the chain model of n = mult_n (from the
                                 # samples-to-learn run) to each mixture; 0: train each mixture
                                 # from scratch for mult_steps steps instead. 300 were too few:
                                 # in bf16 on one CPU the short answers' first digit was not yet
                                 # learned at p_cot = 0.7 (m = 0.37), and another seed's long
                                 # share was 0.074 off p_cot; 600 gave m >= 0.96 and calibration
                                 # within 0.05 (two seeds in bf16, one in float32)
    mult_steps: int = 20_000    # NTP steps per mixture when mult_recal_steps = 0
    mult_p_grid: tuple[float, ...] = (0.3, 0.4, 0.6, 0.7)
    mult_rl_p: float = 0.3      # p_cot of the NTP model RL starts from (below the threshold)
    mult_rl_steps: int = 30     # GRPO steps
    # -- chapter 3: the autoregressive linear model -------------------------------------------
    linear_d: int = 16          # d of the calibration/threshold and STaR simulations
    linear_steps: int = 2000    # NTP steps (batch linear_batch) per linear model
    linear_batch: int = 256
    linear_lr: float = 0.02     # AdamW for NTP; the lr decays over the last half of NTP
    linear_star_samples: int = 65536  # samples per STaR round (fewer: the round fits noise
                                      # and lags)
    linear_star_batch: int = 2048    # sequences per SGD step of a STaR round
    linear_star_steps: int = 100     # SGD steps per STaR round (lr linear_sgd_lr)
    linear_contrast_p: float = 0.1   # STaR from this p_cot with few and with many samples per round
    linear_contrast_samples: int = 2048
    linear_contrast_rounds: int = 5
    linear_sgd_lr: float = 1.0  # plain SGD, as in the theorem: the steps-vs-d scaling and STaR
    linear_rounds_p: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    linear_ds: tuple[int, ...] = (8, 16, 32, 64)
    linear_max_steps: int = 1000     # budget of SGD steps to learn the chain at each d
    linear_eval_every: int = 25
    linear_short_steps: int = 200    # NTP steps on short-only data at each d

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch={self.arch!r} is not allowed: choose one of "
                             f"{tuple(ARCHITECTURES)}")

    def with_(self, **changes) -> "Scale":
        """A copy with some fields changed (e.g. ``scale.with_(seeds=1)``)."""
        return replace(self, **changes)

    def config(self) -> dict:
        """What a results file records as its ``config``: every field, but one of
        :data:`LATER_FIELDS` at the value runs had before it existed (so a run of the default
        model writes the same config as before)."""
        return _without_later(dataclasses.asdict(self))

    def settings(self) -> dict:
        """:meth:`config` without the prose ``description``, JSON-ready: what makes two runs
        the same run (cached parts, the CLI's results files), so that rewording a description
        invalidates nothing. See :func:`comparable`."""
        return comparable(self.config())


# Fields added after runs were stored and parts cached: left out of Scale.config() and
# settings() while at the value every earlier run had, so that what was made before a field
# existed stays the same run (its cached parts are read back, its results file still answers
# for it, two seeds' configs compare equal across the change)
LATER_FIELDS = {"arch": "gpt2"}


def comparable(config: dict) -> dict:
    """A scale's fields (a :class:`Scale` as a dict, or a results file's ``config``) as
    :meth:`Scale.settings` compares them: without the prose ``description`` and without a
    field of :data:`LATER_FIELDS` at its earlier value, so that two runs' configs can be
    compared whichever version of the library wrote them (``==`` on the results)."""
    return {k: v for k, v in _without_later(config).items() if k != "description"}


def _without_later(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}


PRESETS = {
    "smoke": Scale(
        name="smoke", checks_claims=False,
        description="CI: every code path on tiny runs; well under a minute per chapter on a CPU.",
        n_layer=1, n_head=2, n_embd=32, batch_size=32, eval_n=64, hardness_eval_n=64,
        hardness_ds_short=(3, 4), hardness_ds_chain=(4, 6), hardness_max_steps=20,
        hardness_eval_every=10, d=6, threshold_p_grid=(0.2, 0.5), threshold_steps=10,
        more_data_d=6, more_data_steps=20, more_data_eval_every=10,
        rl_d=6, rl_ntp_steps=20, rl_start_steps=(5, 10, 20), rl_early_step=10, rl_prompts=4,
        rl_samples=4, rl_steps=4,
        rl_eval_every=2,
        star_samples=32, star_steps=2, star_rounds=2, rl_temperatures=(1.0, 1.5),
        rounds_p_grid=(0.1, 0.2), recal_steps=5, rounds_max=2, leap2_p_grid=(0.2,),
        leap2_d=4, leap2_steps=20,
        linear_d=6, linear_steps=20, linear_batch=32, linear_rounds_p=(0.1, 0.2), linear_ds=(4, 6),
        linear_max_steps=20, linear_eval_every=10, linear_short_steps=5, linear_star_steps=2,
        linear_star_samples=64, linear_star_batch=32, linear_contrast_samples=32,
        linear_contrast_rounds=2, mult_ns=(1, 2), mult_batch=16, mult_max_steps=20,
        mult_eval_every=10, mult_n=2, mult_recal_steps=5, mult_p_grid=(0.3, 0.7),
        mult_rl_steps=4),
    "fast": Scale(
        name="fast", checks_claims=True,
        description="2-core laptop CPU: <= 10 minutes per chapter (chapter 6: 8-15); d = 16.",
        eval_n=2000),
    "gpu": Scale(
        name="gpu", checks_claims=True,
        description="one T4-class GPU (Colab): the aim is <= 15 minutes per chapter (not "
                    "measured on a T4; chapter 6 longer); d = 25 (chains learned up to "
                    "d = 64).",
        batch_size=256, eval_n=2000, seeds=2,
        hardness_ds_short=(4, 6, 8, 10, 12), hardness_ds_chain=(4, 8, 16, 32, 50, 64),
        hardness_max_steps=5000, hardness_eval_every=100,
        d=25, threshold_p_grid=(0.1, 0.2, 0.25, 0.3, 0.33, 0.37, 0.4, 0.5, 0.7),
        threshold_steps=1500, more_data_d=25, more_data_steps=6000, more_data_eval_every=500,
        rl_d=25, rl_p_cot=0.25, rl_ntp_steps=3000,
        rl_start_steps=(25, 50, 100, 200, 500, 3000), rl_early_step=50, rl_prompts=64, rl_steps=40,
        star_samples=2048, star_steps=60, star_rounds=10, recal_steps=500, rounds_max=15,
        rounds_min_long=200,  # p_cot = 0.02: 10000 samples a round (about 200 long) not 2048
        # rounds_vs_p re-calibrates the p_cot = 0.25 model (chain learned), not NTP from
        # scratch: 3000 steps from scratch at p_cot = 0.02 left the chain unlearned (long
        # answers 59% right) and STaR never generalised (stored run rounds_vs_p_from_scratch);
        # 20000 steps did not learn it either, in bf16 or float32 (61%; 60%, 43% and 60% in
        # three seeds: rounds_vs_p_from_scratch_p02 and _p02_fp32)
        rounds_from_scratch=False,
        leap2_p_grid=(0.1, 0.2, 0.3), mult_ns=(1, 2, 3, 4), mult_batch=128,
        mult_max_steps=6000, mult_eval_every=250, mult_n=4, mult_recal_steps=500,
        mult_p_grid=(0.2, 0.35, 0.45, 0.55, 0.65, 0.8), mult_rl_steps=40),
    "paper": Scale(
        name="paper", checks_claims=True,
        description="the paper's d (50 for the NTP-then-RL headline, 25 for the sweeps) "
                    "with a 4-layer width-256 GPT, on one GPU, for the CLI: hours; runs "
                    "resume.",
        n_layer=4, n_embd=256, n_head=8, batch_size=256, eval_n=4000, seeds=3,
        # lr 1e-3 left this 4-layer model's d = 50 chain unlearned after 40000 steps; 3e-4
        # after a 200-step warm-up learned it within 1000 (tools/chain_probe.py, stored run
        # chain_probe-paper-seed0.json)
        lr=3e-4, warmup_steps=200,
        hardness_ds_short=(4, 6, 8, 10, 12, 14), hardness_ds_chain=(4, 8, 16, 32, 50, 64, 100),
        hardness_max_steps=50_000, hardness_eval_every=250,
        d=25, threshold_p_grid=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.33, 0.36, 0.4, 0.45, 0.5,
                                0.7, 0.9),
        threshold_steps=10_000, more_data_d=50, more_data_steps=50_000, more_data_eval_every=2500,
        rl_d=50, rl_p_cot=0.25, rl_ntp_steps=40_000, rl_early_step=50, rl_prompts=64,
        rl_start_steps=(50, 100, 200, 500, 2000, 10_000),
        rl_samples=8,
        rl_steps=100, rl_eval_every=5, star_samples=4096, star_steps=200, star_rounds=20,
        rounds_p_grid=(0.01, 0.02, 0.05, 0.1, 0.2), recal_steps=2000, rounds_max=30,
        rounds_min_long=400,
        rounds_from_scratch=True,
        leap2_d=12, leap2_steps=20_000,
        leap2_p_grid=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3), mult_ns=(1, 2, 3, 4, 5, 6, 7),
        mult_batch=256, mult_max_steps=50_000, mult_eval_every=1000, mult_n=7,
        mult_steps=50_000,
        mult_recal_steps=0, mult_p_grid=(0.1, 0.25, 0.4, 0.6, 0.75), mult_rl_p=0.1,
        mult_rl_steps=100),
}
NAMES = tuple(PRESETS)


FIXED_FIELDS = ("name", "description", "checks_claims")  # what a preset is, not its sizes


def parse_overrides(scale: Scale, items: list[str]) -> dict:
    """Field changes written ``FIELD=VALUE`` (a command line's ``--set``), each value parsed
    as the field's type: ``rl_d=50``, ``lr=3e-4``, ``rounds_from_scratch=true``, a tuple as
    comma-separated values, ``leap2_p_grid=0.1,0.2,0.3``. Returns the changes for
    :meth:`Scale.with_`. An unknown field, one of :data:`FIXED_FIELDS`, a value of the wrong
    type, an empty tuple or a number that is not finite raises ``ValueError`` naming the
    field."""
    hints = typing.get_type_hints(Scale)
    fields = [f.name for f in dataclasses.fields(scale) if f.name not in FIXED_FIELDS]
    changes = {}
    for item in items:
        field, eq, text = item.partition("=")
        if not eq or field not in fields:
            close = difflib.get_close_matches(field, fields, n=3)
            raise ValueError(f"--set {item!r} is not allowed: write FIELD=VALUE with FIELD a "
                             "field of the scale (ntprl.scale.Scale, not "
                             f"{', '.join(FIXED_FIELDS)})"
                             + (f"; did you mean {' or '.join(close)}?" if close else ""))
        hint = hints[field]
        kind = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                value = text.lower() in ("true", "1")
            elif typing.get_origin(hint) is tuple:
                value = tuple(kind(v) for v in text.split(","))
            else:
                value = kind(text)
            if any(isinstance(v, float) and not math.isfinite(v)
                   for v in (value if isinstance(value, tuple) else (value,))):
                raise ValueError(text)
        except ValueError:
            what = {bool: "true or false", int: "an integer", float: "a finite number"}[kind]
            if typing.get_origin(hint) is tuple:
                what = f"comma-separated values, each {what} (e.g. 0.1,0.2,0.3)"
            raise ValueError(f"--set {item!r} is not allowed: {field} takes {what}") from None
        changes[field] = value
    return changes


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


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPU quota of this process's control group in cores (``quota / period``), or
    ``None`` when there is none or it cannot be read. A container (Docker's ``--cpus``,
    Kubernetes' CPU limits) sets one while still showing every core of the host; cgroup v2's
    ``cpu.max`` is read first, then v1's ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``."""
    def read(path):
        try:
            with open(os.path.join(root, path)) as f:
                return f.read().split()
        except (OSError, UnicodeDecodeError):
            return None

    try:
        v2 = read("cpu.max")  # "max 100000" or "150000 100000"
        if v2 and len(v2) == 2:
            return None if v2[0] == "max" else int(v2[0]) / int(v2[1])
        for folder in ("cpu", "cpu,cpuacct"):
            quota, period = read(f"{folder}/cpu.cfs_quota_us"), read(f"{folder}/cpu.cfs_period_us")
            if quota and period:
                return None if int(quota[0]) <= 0 else int(quota[0]) / int(period[0])
    except (ValueError, ZeroDivisionError):
        pass
    return None


def cpu_cores() -> int:
    """The CPU cores this process may use: those it may run on (its affinity mask), fewer
    when its control group's quota allows fewer (:func:`cgroup_cpu_limit`, rounded up)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None and limit > 0:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


def workers() -> int:
    """How many parts :func:`~ntprl.experiments.run_parts` computes at once:
    ``$NTPRL_WORKERS`` (a positive integer, or ``auto``, the default). ``auto`` is one worker
    per CPU core when the book trains on the CPU, and 1 (the parts in turn, in this process)
    on a GPU, whose one device the parts would share."""
    value = os.environ.get(WORKERS_VAR, "auto")
    if value == "auto":
        return cpu_cores() if device().type == "cpu" else 1
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{WORKERS_VAR}={value!r} is not allowed: it must be a positive integer "
                         "or 'auto'")
    return int(value)


def precision() -> str:
    """The precision ntprl's trainers run in on the book's :func:`device` when left at
    ``precision="auto"``: ``"bf16"`` or ``"fp32"``
    (:func:`~ntprl.train.common.resolve_precision`, which reads ``$NTPRL_PRECISION``)."""
    from .train.common import resolve_precision

    return resolve_precision("auto", device())


def setup(name: str | None = None, seed: int = 0) -> Scale:
    """What every chapter does first: pick the scale, seed torch, apply the book's figure style,
    and print what this run uses. Returns the :class:`Scale`."""
    import ntprl
    from . import plots
    from .results import device_name, git_commit
    from .train.common import PRECISION_VAR

    scale = get(name)
    torch.manual_seed(seed)
    plots.style()
    print(f"scale: {scale.name} — {scale.description}")
    print(f"device: {device()}, torch {torch.__version__}, ntprl {ntprl.__version__}, seed {seed}")
    print(f"ntprl's trainers in {precision()} (${PRECISION_VAR}; "
          "sampling and evaluation in float32, except in chapter 6, whose TRL runs sample in "
          "their training precision)")
    n = workers()
    if n > 1:
        print(f"parts: {n} at once in worker processes, {max(1, cpu_cores() // n)} thread(s) "
              f"each (${WORKERS_VAR})")
    commit = git_commit()
    print(f"run: {datetime.date.today().isoformat()} on {device_name()}"
          + (f", code at commit {commit[:12]}{'-dirty' if commit.endswith('-dirty') else ''}"
             if commit else ", library installed from a package (no git checkout)"))
    return scale

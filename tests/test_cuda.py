"""The GPU code path: bf16 autocast, fused AdamW and the device-side loss sum (skipped without
CUDA, except the checks that hold on the CPU too). Tests that compare two computations to float
rounding pin float32 (``precision="fp32"``); these check that the bf16 path (the default on a
GPU and on a CPU with native bf16) trains, samples and resumes."""

import contextlib

import pytest
import torch

from ntprl.models import GPT, GPTConfig
from ntprl.models.gpt import attention
from ntprl.sampling import generate
from ntprl.tasks import ParityTask
from ntprl.train import ntp, rl
from ntprl.train.common import (TrainStep, autocast, cuda_graph_on, make_optimizer, native_bf16,
                               resolve_precision)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def small(task, device="cpu", seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=4, block_size=task.seq_len, n_layer=2, n_head=2,
                         n_embd=32)).to(device)


def test_autocast_auto_is_bf16_where_the_device_multiplies_it_natively(monkeypatch):
    task = ParityTask(6, 0.5)
    m = small(task)
    monkeypatch.delenv("NTPRL_PRECISION", raising=False)
    expected = torch.autocast if native_bf16("cpu") else contextlib.nullcontext
    assert isinstance(autocast(m), expected)
    assert resolve_precision("auto", "cpu") == ("bf16" if native_bf16("cpu") else "fp32")
    assert isinstance(autocast(m, "fp32"), contextlib.nullcontext)
    assert isinstance(autocast(m, "bf16"), torch.autocast)
    monkeypatch.setenv("NTPRL_PRECISION", "fp32")  # pins float32 for "auto", not for "bf16"
    assert isinstance(autocast(m), contextlib.nullcontext)
    assert isinstance(autocast(m, "bf16"), torch.autocast)
    monkeypatch.setenv("NTPRL_PRECISION", "bf16")
    assert isinstance(autocast(m), torch.autocast)
    monkeypatch.setenv("NTPRL_PRECISION", "half")
    with pytest.raises(ValueError, match="NTPRL_PRECISION='half'"):
        autocast(m)
    with pytest.raises(ValueError, match="precision='fp16'"):
        autocast(m, "fp16")
    with pytest.raises(ValueError, match="precision="):
        ntp.train(m, task, 2, 4, 1e-3, precision="half", progress=False)
    with pytest.raises(ValueError, match="precision="):
        rl.train(m, task, "grpo", 1, precision="half", progress=False)


def test_cpu_attention_runs_in_float32_under_bf16_autocast():
    """On a CPU the bf16 attention kernel's backward is slow: attention computes in float32
    (inputs and output), the same numbers as outside autocast on the same inputs."""
    q, k, v = (torch.randn(2, 2, 5, 8) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attention(q, k, v, is_causal=True)
    assert y.dtype == torch.float32
    assert torch.equal(y, torch.nn.functional.scaled_dot_product_attention(q, k, v,
                                                                           is_causal=True))
    half = [x.bfloat16() for x in (q, k, v)]  # bf16 inputs (from a linear layer) are upcast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attention(*half, is_causal=True)
    assert torch.equal(y, torch.nn.functional.scaled_dot_product_attention(
        *[x.float() for x in half], is_causal=True))


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
def test_cuda_encoded_decodings_equal_plain_generate():
    """``evaluate`` on a GPU encodes its prompts once for the greedy and the sampled decoding
    (``generate(..., encoded=...)``): the tokens are those of plain ``generate``."""
    from ntprl.sampling import encode

    task = ParityTask(8, 0.5)
    m = small(task, "cuda")
    prompts = task.prompts(64, torch.Generator().manual_seed(0))
    n = task.max_response_len
    enc = encode(m, prompts, n)
    for temperature in (0.0, 1.0):
        kw = dict(eos_id=task.EOS, pad_id=task.PAD)
        a = generate(m, prompts, n, temperature, torch.Generator().manual_seed(1), **kw)
        b = generate(m, prompts, n, temperature, torch.Generator().manual_seed(1), **kw,
                     encoded=enc)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), temperature


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



# ---- the training step recorded as a CUDA graph -------------------------------------------------
def test_cuda_graph_is_refused_where_it_cannot_run_and_the_error_says_why():
    task = ParityTask(6, 0.5)
    m = small(task)
    with pytest.raises(ValueError, match="cuda_graph='yes' is not allowed.*not on a CUDA GPU"):
        ntp.train(m, task, 2, 4, 1e-3, cuda_graph="yes", progress=False)
    with pytest.raises(ValueError, match="cuda_graph='maybe'"):
        ntp.train(m, task, 2, 4, 1e-3, cuda_graph="maybe", progress=False)
    assert not cuda_graph_on("auto", m, make_optimizer(m, "adamw", 1e-3), by_length=False)


def test_a_checkpoint_of_a_recorded_run_resumes_eagerly_on_the_cpu(tmp_path):
    """A recorded run's optimiser state says capturable=True and holds its learning rate in a
    tensor; a CPU AdamW refuses capturable=True, so the eager step must undo both."""
    task = ParityTask(6, 0.4)
    kw = dict(steps=8, batch_size=16, lr=1e-3, seed=3, log_every=2, checkpoint_every=4,
              decay_frac=0.5, eval_every=5, progress=False)
    ref = small(task)
    ref_hist = ntp.train(ref, task, **kw, eval_fn=lambda m, s: {})

    def cut(m, s):
        if s == 5:
            raise RuntimeError("cut")
        return {}

    ck = tmp_path / "ck.pt"
    with pytest.raises(RuntimeError, match="cut"):
        ntp.train(small(task), task, **kw, eval_fn=cut, checkpoint=ck)
    state = torch.load(ck, weights_only=True)
    assert state["step"] == 4
    for group in state["opt"]["param_groups"]:  # as TrainStep(graph=True) leaves them
        group["capturable"], group["lr"] = True, torch.tensor(group["lr"])
    torch.save(state, ck)
    m = small(task)
    hist = ntp.train(m, task, **kw, eval_fn=lambda m, s: {}, checkpoint=ck)
    assert hist == ref_hist
    for a, b in zip(m.parameters(), ref.parameters()):
        assert torch.equal(a, b)


@cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graph_step_equals_the_eager_step(precision):
    """The recorded step follows the learning-rate schedule (warm-up, then decay), clips, and
    lands where eager steps land."""
    task = ParityTask(8, 0.3)
    runs = {}
    for graph in ("yes", "no"):
        m = small(task, "cuda")
        hist = ntp.train(m, task, 40, 64, 3e-3, warmup_steps=6, decay_frac=0.5, grad_clip=0.05,
                         log_every=10, precision=precision, cuda_graph=graph, progress=False)
        runs[graph] = (m, [r["loss"] for r in hist])
    (mg, lg), (me, le) = runs["yes"], runs["no"]
    tol = 1e-4 if precision == "fp32" else 2e-2
    torch.testing.assert_close(torch.tensor(lg), torch.tensor(le), rtol=tol, atol=tol)
    for a, b in zip(mg.parameters(), me.parameters()):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@cuda
def test_train_step_records_once_replays_and_refuses_another_shape():
    task = ParityTask(8, 0.5)
    m = small(task, "cuda")
    opt = make_optimizer(m, "adamw", 1e-3)
    step = TrainStep(lambda t: ntp.ntp_loss(m, t, ntp.response_mask(t, task.prompt_len,
                                                                    task.PAD), task.PAD,
                                            by_length=False), m, opt, 1.0, graph=True)
    gen = torch.Generator().manual_seed(0)
    losses = [float(step(1e-3, task.sample(32, gen).cuda())) for _ in range(8)]
    assert step.recorded is not None and step.graph
    assert all(0 < x < 5 for x in losses)
    before = [p.detach().clone() for p in m.parameters()]
    step(0.0, task.sample(32, gen).cuda())  # a zero learning rate leaves the weights alone
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    with pytest.raises(ValueError, match="shape"):
        step(1e-3, task.sample(16, gen).cuda())


@cuda
def test_cuda_star_round_recorded_equals_eager():
    import copy

    task = ParityTask(8, 0.5)
    m = small(task, "cuda")
    ro = rl.rollout(m, task, 64, 1, task.max_response_len, 1.0,
                    lambda p, r: torch.ones(len(p)), torch.Generator().manual_seed(0))
    out = {}
    for graph in ("yes", "no"):
        mm = copy.deepcopy(m)
        opt = make_optimizer(mm, "adamw", 1e-3)
        kept = rl.star_update(mm, opt, ro, star_steps=12, star_batch=32, grad_clip=1.0,
                              generator=torch.Generator().manual_seed(1), precision="fp32",
                              cuda_graph=graph)
        out[graph] = (kept, mm)
    assert out["yes"][0] == out["no"][0] == 64
    for a, b in zip(out["yes"][1].parameters(), out["no"][1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)

"""The RL update itself: PPO clipping, the KL penalty, one GRPO step under each loss
aggregation, the algorithms on the linear model, and the task interface a second task uses."""

import copy

import pytest
import torch

import ntprl.scale
from ntprl.experiments import make_linear, make_model
from ntprl.metrics import evaluate
from ntprl.sampling import generate
from ntprl.tasks import ParityTask, Task
from ntprl.train import ntp, rl
from ntprl.train.common import make_optimizer

TINY = ntprl.scale.get("smoke")


# ---- policy_loss: the clipped surrogate and the KL estimate --------------------------------------
def test_ppo_clip_stops_the_gradient_outside_the_trust_region():
    old = torch.zeros(2, 3)
    w = torch.full((2, 3), 1 / 6)
    for shift, adv, moves in [(0.5, 1.0, False),   # ratio 1.65 > 1.2 with A > 0: clipped
                              (0.5, -1.0, True),   # A < 0: the min keeps the unclipped term
                              (-0.5, -1.0, False),  # ratio 0.61 < 0.8 with A < 0: clipped
                              (0.1, 1.0, True)]:   # inside [0.8, 1.2]: a gradient
        logp = (old + shift).requires_grad_()
        rl.policy_loss(logp, old, torch.full((2,), adv), w, clip_eps=0.2).backward()
        assert (logp.grad.abs().sum() > 0) == moves, (shift, adv)


def test_first_pass_is_the_plain_policy_gradient():
    logp = torch.randn(4, 5, requires_grad=True)
    adv, w = torch.tensor([1.0, -1.0, 0.5, 0.0]), torch.rand(4, 5)
    rl.policy_loss(logp, logp.detach(), adv, w, clip_eps=0.2).backward()
    assert torch.allclose(logp.grad, -adv[:, None] * w)


def test_kl_penalty_is_zero_at_the_reference_and_pulls_back_to_it():
    torch.manual_seed(0)  # one fixed draw (unseeded, it depended on the tests run before it)
    logits = torch.randn(3, 4, 6)
    tokens = torch.randint(0, 6, (3, 4))
    w = torch.full((3, 4), 1 / 12)
    adv = torch.zeros(3)
    lp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    assert rl.policy_loss(lp, lp, adv, w, 0.2, ref_logp=lp, kl_coef=1.0).item() == 0.0
    # a policy moved away from the reference is pulled back by the penalty alone (A = 0)
    ref_lp = lp
    z = (logits + torch.randn_like(logits)).requires_grad_()
    opt = torch.optim.SGD([z], lr=5.0)

    def dist():
        cur = torch.log_softmax(z, -1).gather(-1, tokens[..., None]).squeeze(-1)
        return cur, (cur - ref_lp).abs().mean().item()

    _, before = dist()
    for _ in range(50):
        cur, _ = dist()
        loss = rl.policy_loss(cur, cur.detach(), adv, w, 0.2, ref_logp=ref_lp, kl_coef=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert dist()[1] < 0.2 * before


def test_kl_run_with_no_signal_stays_at_the_reference():
    """No advantage (every reward 0) and a KL penalty: the first step's gradient is zero."""
    t = ParityTask(5, 0.3)
    m = make_model(t, TINY, 0).cpu()
    start = copy.deepcopy(m.state_dict())
    rl.train(m, t, "grpo", 1, prompts_per_step=4, samples_per_prompt=4, kl_coef=0.5,
             reward=lambda p, r: torch.zeros(len(p)), progress=False)
    assert all(torch.equal(start[k], v) for k, v in m.state_dict().items())


def test_the_kl_term_reaches_the_update_with_the_start_as_reference(monkeypatch):
    """``rl.train(kl_coef=...)`` hands :func:`rl.policy_loss` its ``kl_coef`` and the
    log-probabilities of the *start* weights (the reference), at every step, also after the
    policy has moved (the KL term's pull itself is tested on ``policy_loss`` above)."""
    t = ParityTask(6, 0.5)
    m = make_model(t, TINY, 0).cpu()
    ntp.train(m, t, 30, 32, 3e-3, progress=False)  # both routes, some right: a signal
    start = copy.deepcopy(m)
    calls = []
    real_logprobs, real_loss = rl.policy_logprobs, rl.policy_loss

    def logprobs(model, tokens, *a, **kw):
        if model is m:
            calls.append({"tokens": tokens.clone()})
        return real_logprobs(model, tokens, *a, **kw)

    def loss(logp, old_logp, adv, weights, clip_eps, ref_logp=None, kl_coef=0.0):
        calls[-1].update(logp=logp.detach(), ref=ref_logp, kl_coef=kl_coef)
        return real_loss(logp, old_logp, adv, weights, clip_eps, ref_logp, kl_coef)

    monkeypatch.setattr(rl, "policy_logprobs", logprobs)
    monkeypatch.setattr(rl, "policy_loss", loss)
    rl.train(m, t, "grpo", 3, lr=3e-3, prompts_per_step=8, samples_per_prompt=4,
             kl_coef=0.3, by_length="no", precision="fp32", progress=False)
    steps = [c for c in calls if "kl_coef" in c]
    assert len(steps) == 3 and all(c["kl_coef"] == 0.3 for c in steps)
    for c in steps:
        ref, _ = real_logprobs(start, c["tokens"], 1.0, "fp32", never=t.PAD)
        torch.testing.assert_close(c["ref"], ref.detach(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(steps[-1]["logp"], steps[-1]["ref"], atol=1e-4)  # it moved


def test_rollout_stats_on_a_hand_made_rollout():
    t = ParityTask(4, 0.5)
    E, P = t.EOS, t.PAD
    responses = torch.tensor([
        [1, E, P, P, P],   # short
        [0, 1, 1, 0, E],   # a complete chain (long, full)
        [0, 1, E, P, P],   # a broken chain: long, not full
        [1, 0, 1, 1, 0],   # truncated: no EOS (length 5)
    ])
    prompts = torch.zeros(4, 4, dtype=torch.long)
    ro = rl.Rollout(torch.cat([prompts, responses], 1), None, prompts, responses,
                    torch.tensor([1.0, 1.0, 0.0, 1.0]), group_size=2)
    st = rl.rollout_stats(t, ro, t.max_response_len)
    assert st["len_mean"] == pytest.approx((1 + 4 + 2 + 5) / 4)
    assert st["long_frac"] == 0.75 and st["full_frac"] == 0.25
    assert st["truncated_frac"] == 0.25 and st["reward"] == 0.75
    assert st["len_hist"] == [0, 1, 1, 0, 1, 1]
    assert st["zero_var_frac"] == 0.5  # rewards (1, 1) carry no signal, (0, 1) do


def test_mean_entropy_of_known_distributions():
    V = 4
    uniform3 = torch.full((1, 2, V), float("-inf"))
    uniform3[..., :3] = -torch.log(torch.tensor(3.0))  # PAD left out: uniform over 3 tokens
    sure = torch.full((1, 2, V), float("-inf"))
    sure[..., 0] = 0.0  # one certain token: no entropy
    logp = torch.cat([uniform3, sure])
    mask = torch.tensor([[True, False], [True, True]])
    expect = torch.log(torch.tensor(3.0)).item() / 3  # one uniform target, two certain ones
    assert rl._mean_entropy(logp, mask) == pytest.approx(expect, rel=1e-6)


# ---- one GRPO step raises the rewarded responses' log-probability -----------------------------
@pytest.mark.parametrize("loss_agg", rl.LOSS_AGGS)
def test_one_grpo_step_raises_rewarded_logprob(loss_agg):
    t = ParityTask(6, 0.5)
    m = make_model(t, TINY, 0).cpu()
    ntp.train(m, t, 30, 32, 3e-3, progress=False)  # samples both routes, some right, some wrong
    ro = rl.rollout(m, t, 16, 8, t.max_response_len, 1.0, t.reward_e2e,
                    torch.Generator().manual_seed(0))
    adv = rl.group_advantages(ro.rewards, 8, "group_std")
    assert (adv > 0).any() and (adv < 0).any()

    def seq_logp():
        with torch.no_grad():
            lp, _ = rl.policy_logprobs(m, ro.tokens, 1.0)
        return (lp * ro.mask[:, 1:]).sum(1)

    before = seq_logp()
    opt = make_optimizer(m, "sgd", 0.05)
    rl.policy_gradient_update(m, opt, ro, adv, temperature=1.0, loss_agg=loss_agg,
                              max_new_tokens=t.max_response_len, clip_eps=0.2, ppo_epochs=1,
                              grad_clip=None)
    change = seq_logp() - before
    assert change[adv > 0].mean() > 0 > change[adv < 0].mean(), loss_agg


def test_ppo_epochs_take_more_steps_on_the_same_batch():
    t = ParityTask(5, 0.4)
    runs = {}
    for epochs in (1, 3):
        m = make_model(t, TINY, 0).cpu()
        h = rl.train(m, t, "grpo", 2, prompts_per_step=8, samples_per_prompt=4,
                     ppo_epochs=epochs, lr=1e-3, progress=False)
        runs[epochs] = (m.state_dict(), h)
    # the same rollouts at step 1 (same seed, same start), different weights after the update
    assert runs[1][1][0]["reward"] == runs[3][1][0]["reward"]
    assert any(not torch.equal(runs[1][0][k], runs[3][0][k]) for k in runs[1][0])


# ---- the algorithms on the linear model ------------------------------------------------------
@pytest.mark.parametrize("algo", ["grpo", "reinforce"])
def test_policy_gradient_runs_on_the_linear_model(algo):
    t = ParityTask(6, 0.5)
    m = make_linear(t, 0)
    ntp.train(m, t, 100, 64, 0.05, optimizer="sgd", progress=False)
    start = copy.deepcopy(m.state_dict())
    h = rl.train(m, t, algo, 5, lr=0.05, optimizer="sgd", prompts_per_step=16,
                 samples_per_prompt=4, progress=False, eval_every=5,
                 eval_fn=lambda mm, s: evaluate(mm, t, 64, modes=("greedy",)))
    assert len(h) == 6 and all(0 <= r["reward"] <= 1 for r in h[1:])
    assert any(not torch.equal(start[k], v) for k, v in m.state_dict().items())


# ---- the task interface: a second task plugs in without touching the trainers ---------------
class CopyLast:
    """A toy task with its own token ids: the answer is the last prompt bit; the long route
    copies every bit first. EOS = 5 and PAD = 4 (parity uses 2 and 3), so a trainer or sampler
    that read parity's ids would fail here."""

    EOS, PAD, vocab_size = 5, 4, 6

    def __init__(self, d=4, p_cot=0.5):
        self.d, self.p_cot = d, p_cot
        self.prompt_len, self.long_len, self.max_response_len = d, d, d + 1
        self.seq_len = 2 * d + 1

    def __repr__(self):
        return f"CopyLast(d={self.d}, p_cot={self.p_cot})"

    def prompts(self, n, generator=None):
        return torch.randint(0, 2, (n, self.d), generator=generator)

    def sample(self, n, generator=None):
        x = self.prompts(n, generator)
        long = torch.rand(n, generator=generator) < self.p_cot
        seq = torch.full((n, self.seq_len), self.PAD)
        seq[:, :self.d] = x
        seq[long, self.d:2 * self.d] = x[long]
        seq[long, 2 * self.d] = self.EOS
        seq[~long, self.d] = x[~long, -1]
        seq[~long, self.d + 1] = self.EOS
        return seq

    def _before_eos(self, responses):
        return [r[:r.index(self.EOS)] if self.EOS in r else None for r in responses.tolist()]

    def response_length(self, responses):
        return torch.tensor([len(r) if r is not None else int((row != self.PAD).sum())
                             for r, row in zip(self._before_eos(responses), responses)])

    def has_eos(self, responses):
        return (responses == self.EOS).any(1)

    def is_long(self, responses):
        return self.response_length(responses) >= 2

    def reward_e2e(self, prompts, responses):
        return torch.tensor([float(bool(r) and r[-1] == x[-1]) for r, x in
                             zip(self._before_eos(responses), prompts.tolist())])

    def reward_cot(self, prompts, responses):
        return torch.tensor([float(r in (x, x[-1:])) for r, x in
                             zip(self._before_eos(responses), prompts.tolist())])


def test_parity_task_meets_the_interface():
    assert isinstance(ParityTask(4, 0.5), Task)
    assert isinstance(CopyLast(), Task)
    assert not isinstance(object(), Task)


def test_a_second_task_plugs_into_sampler_trainers_and_metrics():
    t = CopyLast()
    m = make_model(t, TINY, 0).cpu()
    ntp.train(m, t, 150, 64, 3e-3, progress=False)
    tok, mask = generate(m, t.prompts(32), t.max_response_len, 1.0,
                         torch.Generator().manual_seed(0), eos_id=t.EOS, pad_id=t.PAD)
    resp = tok[:, t.d:]
    assert not (resp == 2).any() and not (resp == 3).any()  # parity's ids are never written
    assert t.has_eos(resp).all()
    h = rl.train(m, t, "grpo", 3, prompts_per_step=8, samples_per_prompt=4, progress=False)
    assert len(h) == 3 and h[-1]["reward"] > 0.5
    r = evaluate(m, t, 64)
    assert r["greedy_acc"] > 0.9 and r["greedy_truncated_frac"] == 0.0


# ---- kill -9 and resume ------------------------------------------------------------------------
WORKER = [__import__("sys").executable, str(__import__("pathlib").Path(__file__).with_name(
    "resume_worker.py"))]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
@pytest.mark.parametrize("mode, kill_at", [("ntp", 25), ("grpo", 5)])
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, mode, kill_at, device):
    import subprocess

    def worker(ck, out, *kill):
        return subprocess.run(WORKER + [mode, device, str(tmp_path / ck), str(tmp_path / out),
                                        *map(str, kill)], capture_output=True, text=True)

    assert worker("a.pt", "ref.pt").returncode == 0
    killed = worker("b.pt", "never.pt", kill_at)
    assert killed.returncode == -9 and not (tmp_path / "never.pt").exists(), killed.stderr
    assert (tmp_path / "b.pt").exists()  # a checkpoint from before the kill
    resumed = worker("b.pt", "res.pt")
    assert resumed.returncode == 0, resumed.stderr
    ref, res = (torch.load(tmp_path / f, weights_only=True) for f in ("ref.pt", "res.pt"))
    assert res["history"] == ref["history"]
    for k, v in ref["state"].items():
        assert torch.equal(v, res["state"][k]), k


# ---- RL by length: no compute on the PAD after short answers, the same updates -------------------
def test_policy_logprobs_by_length_equal_the_padded_batch_on_every_response_token():
    task = ParityTask(10, 0.3)
    torch.manual_seed(0)
    m = make_model(task, TINY)
    with torch.no_grad():  # answers of many lengths
        m.head.weight[task.EOS] += 0.3 * m.head.weight[0]
    tok, mask = generate(m, task.prompts(48, torch.Generator().manual_seed(1)),
                         task.max_response_len, 1.0, torch.Generator().manual_seed(2),
                         eos_id=task.EOS, pad_id=task.PAD)
    lengths = mask.sum(1)
    assert len(lengths.unique()) >= 3, lengths
    targets = mask[:, 1:]
    got = []
    for pad_id in (None, task.PAD):
        m.zero_grad()
        logp, logp_all = rl.policy_logprobs(m, tok, 1.3, "fp32", pad_id=pad_id)  # float32:
        # equal to float rounding (bf16, where "auto" picks it, rounds more)
        assert logp.shape == targets.shape and logp_all.shape[:2] == targets.shape
        (logp * targets).sum().backward()
        got.append((logp[targets], logp_all[targets], [p.grad.clone() for p in m.parameters()]))
    (a, a_all, ga), (b, b_all, gb) = got
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a_all, b_all, rtol=1e-5, atol=1e-5)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("algo", ["grpo", "star"])
def test_rl_by_length_trains_like_the_padded_batch(algo):
    task = ParityTask(6, 0.3)
    runs = []
    for by_length in ("yes", "no"):
        torch.manual_seed(0)
        m = make_model(task, TINY)
        hist = rl.train(m, task, algo, 3, lr=1e-3, prompts_per_step=8, samples_per_prompt=4,
                        star_samples=64, star_steps=4, star_batch=16, by_length=by_length,
                        precision="fp32", progress=False)
        runs.append((m.state_dict(), [r["entropy"] for r in hist]))
    (wa, ea), (wb, eb) = runs
    assert ea == pytest.approx(eb, rel=1e-4)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="by_length="):
        rl.train(m, task, algo, 1, by_length=True, progress=False)


@pytest.mark.parametrize("temperature", [0.5, 1.5])
def test_the_policy_is_tempered_as_the_sampler_is(temperature):
    """At T != 1 the sampler draws from softmax(logits / T); the policy RL differentiates must
    be that same distribution, and not the T = 1 one."""
    task = ParityTask(6, 0.5)
    torch.manual_seed(0)
    m = make_model(task, TINY)
    with torch.no_grad():  # logits far from uniform, so that T changes the distribution
        m.head.weight.mul_(40.0)
    prompt = task.prompts(1, torch.Generator().manual_seed(1)).repeat(4000, 1)
    tok, _ = generate(m, prompt, 1, temperature, torch.Generator().manual_seed(2),
                      eos_id=None, pad_id=task.PAD)
    first = tok[:, task.prompt_len]
    freq = torch.bincount(first, minlength=task.vocab_size).float() / len(first)
    at = task.prompt_len - 1
    _, logp_all = rl.policy_logprobs(m, tok, temperature, "fp32", never=task.PAD)
    policy = logp_all[0, at].exp().detach()
    torch.testing.assert_close(freq, policy, atol=0.03, rtol=0)  # 4000 draws: se <= 0.008
    _, untempered = rl.policy_logprobs(m, tok, 1.0, "fp32", never=task.PAD)
    assert (untempered[0, at].exp() - policy).abs().max() > 0.1, (policy, untempered[0, at])


def test_the_trainer_weights_eos_and_no_prompt_or_pad(monkeypatch):
    """In ``rl.train`` itself (not a re-derivation of its shift): the loss weights are > 0 on
    every response token's prediction, EOS included, and 0 where the target is a prompt token
    or PAD."""
    task = ParityTask(4, 0.3)
    seen = {}
    real_logprobs, real_loss = rl.policy_logprobs, rl.policy_loss

    def logprobs(model, tokens, *a, **kw):
        seen.setdefault("tokens", tokens.clone())
        return real_logprobs(model, tokens, *a, **kw)

    def loss(logp, old_logp, adv, weights, *a, **kw):
        seen.setdefault("weights", weights.clone())
        return real_loss(logp, old_logp, adv, weights, *a, **kw)

    monkeypatch.setattr(rl, "policy_logprobs", logprobs)
    monkeypatch.setattr(rl, "policy_loss", loss)
    torch.manual_seed(0)
    rl.train(make_model(task, TINY), task, "grpo", 1, prompts_per_step=16,
             samples_per_prompt=4, temperature=1.0, by_length="no", progress=False)
    targets, w = seen["tokens"][:, 1:], seen["weights"]
    P = task.prompt_len
    assert w.shape == targets.shape
    assert (targets == task.EOS).any() and (targets == task.PAD).any()
    assert (w[targets == task.EOS] > 0).all()
    assert (w[:, P - 1] > 0).all()  # the first response token, predicted at the last prompt one
    assert (w[:, : P - 1] == 0).all() and (w[targets == task.PAD] == 0).all()
    response = torch.zeros_like(targets, dtype=torch.bool)
    response[:, P - 1 :] = True
    assert ((w > 0) == (response & (targets != task.PAD))).all()


def test_the_policy_being_optimised_is_the_one_that_sampled():
    """``generate`` never writes PAD (its logit is -inf there); ``policy_logprobs`` with
    ``never=PAD`` leaves it out of the softmax too, so its probabilities of the first response
    token match the sampler's frequencies, even where the raw model puts much mass on PAD."""
    task = ParityTask(6, 0.5)
    torch.manual_seed(0)
    m = make_model(task, TINY)
    with torch.no_grad():  # a model that puts much of its mass on PAD
        m.head.weight[task.PAD] += 2.0 * m.head.weight[task.EOS]
    prompt = task.prompts(1, torch.Generator().manual_seed(1)).repeat(4000, 1)
    tok, _ = generate(m, prompt, 1, 1.0, torch.Generator().manual_seed(2), eos_id=None,
                      pad_id=task.PAD)
    first = tok[:, task.prompt_len]
    assert (first != task.PAD).all()
    freq = torch.bincount(first, minlength=task.vocab_size).float() / len(first)
    _, logp_all = rl.policy_logprobs(m, tok, 1.0, "fp32", never=task.PAD)
    policy = logp_all[0, task.prompt_len - 1].exp().detach()
    assert policy[task.PAD] == 0 and abs(policy.sum().item() - 1) < 1e-5
    torch.testing.assert_close(freq, policy, atol=0.03, rtol=0)  # 4000 draws: se <= 0.008
    _, raw = rl.policy_logprobs(m, tok, 1.0, "fp32")  # PAD left in: another distribution
    assert raw[0, task.prompt_len - 1].exp()[task.PAD] > 0.05

import functools

import pytest
import torch

import ntprl.scale
from ntprl.experiments import make_model
from ntprl.metrics import evaluate
from ntprl.tasks import EOS, PAD, ParityTask
from ntprl.train import rl

TINY = ntprl.scale.get("smoke")


def tiny(task, seed=0, **overrides):
    return make_model(task, TINY, seed, **overrides).cpu()


def test_group_advantages_are_per_group():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    adv = rl.group_advantages(r, 4)
    assert adv.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0,
                                          -0.5, 0.5, -0.5, 0.5])
    std = rl.group_advantages(r, 4, "group_std")
    assert std[:4].tolist() == pytest.approx([0.75 / 0.4330127, -0.25 / 0.4330127,
                                              -0.25 / 0.4330127, -0.25 / 0.4330127], rel=1e-4)
    assert std[4:8].abs().max() == 0  # an all-equal group carries no signal
    # not the same as one big group
    assert not torch.allclose(adv, r - r.mean())


def test_loss_agg_weights_on_a_hand_made_batch():
    # two responses: 1 token + EOS (2 in mask), 3 tokens + EOS (4 in mask); max_new_tokens 5
    mask = torch.tensor([[0, 0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1, 0]], dtype=torch.bool)
    tm = rl.token_weights(mask, "token_mean", 5)
    assert tm[mask].tolist() == pytest.approx([1 / 6] * 6) and tm[~mask].abs().sum() == 0
    sm = rl.token_weights(mask, "seq_mean", 5)
    assert sm[0][mask[0]].tolist() == pytest.approx([1 / 4] * 2)
    assert sm[1][mask[1]].tolist() == pytest.approx([1 / 8] * 4)
    c = rl.token_weights(mask, "constant", 5)
    assert c[mask].tolist() == pytest.approx([1 / 10] * 6)


def test_the_samplers_response_mask_gives_eos_weight_and_pad_none():
    """The sampler's response mask covers each row's EOS, so ``token_weights`` on it weight
    EOS and never PAD (what ``rl.train`` itself weights: test_rl_updates.py,
    test_the_trainer_weights_eos_and_no_prompt_or_pad)."""
    t = ParityTask(4, 0.2)
    m = tiny(t)
    from ntprl.sampling import generate
    tokens, mask = generate(m, t.prompts(16, torch.Generator().manual_seed(0)),
                            t.max_response_len, 1.0,
                            torch.Generator().manual_seed(0), eos_id=t.EOS, pad_id=t.PAD)
    w = rl.token_weights(mask[:, 1:], "token_mean", t.max_response_len)
    targets = tokens[:, 1:]
    assert (targets == EOS).any()
    assert (w[targets == EOS] > 0).all()
    assert (w[targets == PAD] == 0).all()


def test_star_trains_only_on_rewarded_samples(monkeypatch):
    t = ParityTask(4, 0.5)
    seen = []
    real = rl.ntp_loss

    def spy(model, tokens, mask, pad_id, **kw):
        seen.append(tokens[:, t.prompt_len].clone())
        return real(model, tokens, mask, pad_id, **kw)

    monkeypatch.setattr(rl, "ntp_loss", spy)
    def only_ones(prompts, responses):
        return (responses[:, 0] == 1).float()
    hist = rl.train(tiny(t), t, "star", 2, reward=only_ones, star_samples=64, star_steps=3,
                    star_batch=16, progress=False)
    assert seen and all((s == 1).all() for s in seen)
    assert all(h["kept"] > 0 for h in hist)


def test_star_with_nothing_rewarded_leaves_weights_alone():
    t = ParityTask(4, 0.5)
    m = tiny(t)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    hist = rl.train(m, t, "star", 1, reward=lambda p, r: torch.zeros(len(r)), star_samples=32,
                    progress=False)
    assert hist[0]["kept"] == 0
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize("algo", rl.ALGOS)
def test_same_seed_same_numbers(algo):
    t = ParityTask(5, 0.3)
    kw = dict(prompts_per_step=4, samples_per_prompt=4, star_samples=32, star_steps=2, star_batch=8,
              seed=3, progress=False)
    def strip(h):
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in h]
    a = strip(rl.train(tiny(t), t, algo, 3, **kw))
    b = strip(rl.train(tiny(t), t, algo, 3, **kw))
    assert a == b and len(a) == 3
    for key in ("reward", "len_mean", "long_frac", "entropy", "truncated_frac", "len_hist"):
        assert key in a[0]


class Interrupt(Exception):
    pass


def interrupting(eval_fn, at_step):
    """``eval_fn`` that raises :class:`Interrupt` once, at ``at_step`` (a killed run)."""
    def fn(m, step):
        if step == at_step and not fn.fired:
            fn.fired = True
            raise Interrupt
        return eval_fn(m, step)
    fn.fired = False
    return fn


def test_rl_resume_equals_uninterrupted(tmp_path):
    t = ParityTask(5, 0.3)
    def ev(m, step):
        return evaluate(m, t, 16, modes=("greedy",))
    kw = dict(prompts_per_step=4, samples_per_prompt=4, seed=1, checkpoint_every=2,
              progress=False, kl_coef=0.1, eval_every=1)
    def strip(h):
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in h]
    m_ref = tiny(t)
    ref = rl.train(m_ref, t, "grpo", 6, checkpoint=tmp_path / "a.pt", eval_fn=ev, **kw)
    flaky = interrupting(ev, 5)  # killed after the checkpoint of step 4
    with pytest.raises(Interrupt):
        rl.train(tiny(t), t, "grpo", 6, checkpoint=tmp_path / "b.pt", eval_fn=flaky, **kw)
    m2 = tiny(t)
    resumed = rl.train(m2, t, "grpo", 6, checkpoint=tmp_path / "b.pt", eval_fn=flaky, **kw)
    assert strip(resumed) == strip(ref)
    assert all(torch.equal(a, b) for a, b in zip(m_ref.state_dict().values(),
                                                 m2.state_dict().values()))


@pytest.mark.parametrize("change, field", [
    (dict(samples_per_prompt=2), "samples_per_prompt"), (dict(loss_agg="seq_mean"), "loss_agg"),
    (dict(adv_norm="none"), "adv_norm"), (dict(temperature=0.5), "temperature"),
    (dict(kl_coef=0.2), "kl_coef"), (dict(steps=5), "steps"), (dict(seed=2), "seed"),
    (dict(init_seed=9), "start_weights"), (dict(n_layer=2), "model.config.n_layer"),
])
def test_rl_checkpoint_of_another_run_is_refused(tmp_path, change, field):
    t = ParityTask(5, 0.3)
    kw = dict(prompts_per_step=4, samples_per_prompt=4, seed=1, temperature=1.0, kl_coef=0.0,
              loss_agg="token_mean", adv_norm="group_std", steps=2, progress=False)
    rl.train(tiny(t), t, "grpo", checkpoint=tmp_path / "c.pt", **kw)
    init_seed, n_layer = change.pop("init_seed", 0), change.pop("n_layer", 1)
    kw.update(change)
    with pytest.raises(ValueError, match=rf"belongs to another run \({field}: [^;]* there"):
        rl.train(tiny(t, seed=init_seed, n_layer=n_layer), t, "grpo",
                 checkpoint=tmp_path / "c.pt", **kw)


def scaled_reward(task, weight, prompts, responses):
    return weight * task.reward_e2e(prompts, responses)


def test_a_callable_reward_is_part_of_the_identity(tmp_path):
    """A reward given as a callable is named in the run's identity by what it is, not where it
    sits in memory: an equal ``partial`` made again resumes, another one or another lambda (all
    lambdas share the name ``<lambda>``) is refused."""
    t = ParityTask(4, 0.5)
    kw = dict(prompts_per_step=2, samples_per_prompt=2, steps=2, progress=False,
              checkpoint=tmp_path / "r.pt")
    first = rl.train(tiny(t), t, "grpo", reward=functools.partial(scaled_reward, t, 1.0), **kw)
    again = rl.train(tiny(t), t, "grpo", reward=functools.partial(scaled_reward, t, 1.0), **kw)
    assert [r["step"] for r in again] == [r["step"] for r in first]  # read back, not refused
    with pytest.raises(ValueError, match=r"another run \(reward\.args: \[[^]]*1\.0\] there"):
        rl.train(tiny(t), t, "grpo", reward=functools.partial(scaled_reward, t, 2.0), **kw)
    kw["checkpoint"] = tmp_path / "l.pt"
    rl.train(tiny(t), t, "grpo", reward=lambda p, r: t.reward_e2e(p, r), **kw)
    with pytest.raises(ValueError, match=r"another run \(reward: '[^']*<lambda>#"):
        rl.train(tiny(t), t, "grpo", reward=lambda p, r: 0.5 * t.reward_e2e(p, r), **kw)


@pytest.mark.parametrize("kwargs, field", [
    (dict(algo="ppo"), "algo"),
    (dict(algo="grpo", samples_per_prompt=1), "samples_per_prompt"),
    (dict(loss_agg="sum"), "loss_agg"),
    (dict(adv_norm="batch"), "adv_norm"),
    (dict(algo="reinforce", adv_norm="group_std"), "adv_norm='group_std' is not allowed with "
                                                   "algo='reinforce'"),
    (dict(temperature=0.0), "temperature"),
    (dict(max_new_tokens=3), "max_new_tokens"),
    (dict(reward="partial"), "reward"),
    (dict(kl_coef=-1.0), "kl_coef"),
    (dict(algo="star", kl_coef=0.1), "kl_coef"),
    (dict(steps=0), "steps"),
    (dict(prompts_per_step=0), "prompts_per_step"),
])
def test_bad_rl_settings(kwargs, field):
    t = ParityTask(4, 0.5)
    args = dict(algo="grpo", steps=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        rl.train(tiny(t), t, progress=False, **args)


def test_stop_when_ends_rl_early_and_survives_resume(tmp_path):
    t = ParityTask(4, 0.5)
    kw = dict(prompts_per_step=2, samples_per_prompt=2, eval_every=1, progress=False,
              eval_fn=lambda m, s: {"score": s}, stop_when=lambda r: r["score"] >= 3,
              checkpoint=tmp_path / "s.pt")
    hist = rl.train(tiny(t), t, "grpo", 10, **kw)
    assert [r["step"] for r in hist] == [0, 1, 2, 3] and hist[-1]["stopped"]
    again = rl.train(tiny(t), t, "grpo", 10, **kw)  # resumes a finished run: nothing more to do
    assert [r["step"] for r in again] == [0, 1, 2, 3]

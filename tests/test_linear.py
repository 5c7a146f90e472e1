import itertools

import pytest
import torch

from ntprl.models import LinearAR, LinearARConfig
from ntprl.models.linear import signs
from ntprl.sampling import generate
from ntprl.tasks import EOS, PAD, ParityTask
from ntprl.train import ntp


def model(T=12, std=0.3, seed=0):
    torch.manual_seed(seed)
    return LinearAR(LinearARConfig(block_size=T, init_std=std))


def test_logits_are_a_quadratic_form_of_the_prefix():
    m = model()
    x = torch.randint(0, 3, (4, 12))
    out = m(x)
    v = signs(x)
    t, k = 7, 1
    want = m.bias[t, k] + sum(m.lin[t, k, i] * v[:, i] for i in range(t + 1))
    want = want + sum(m.quad[t, k, i, j] * v[:, i] * v[:, j]
                      for i in range(t + 1) for j in range(i + 1, t + 1))
    assert torch.allclose(out[:, t, k], want, atol=1e-5)
    assert (out[..., PAD] < -1e3).all()
    # causal: changing a later token leaves earlier logits alone
    y = x.clone()
    y[:, 9] = 1 - y[:, 9].clamp(max=1)
    assert torch.allclose(m(y)[:, :9], out[:, :9])


def test_cached_sampling_equals_recompute():
    m = model(T=20)
    prompts = torch.randint(0, 2, (32, 8), generator=torch.Generator().manual_seed(0))
    a = generate(m, prompts, 12, 1.0, torch.Generator().manual_seed(1), eos_id=EOS, pad_id=PAD)
    b = generate(m, prompts, 12, 1.0, torch.Generator().manual_seed(1), eos_id=EOS,
                 pad_id=PAD, use_cache=False)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_last_only_gives_the_last_logits():
    m = model(T=20)
    x = torch.randint(0, 3, (4, 15), generator=torch.Generator().manual_seed(2))
    full = m(x)
    assert torch.allclose(m(x, last_only=True), full[:, -1:])
    cache = m.make_cache(4, 20)
    assert torch.allclose(m(x[:, :9], cache=cache, last_only=True), full[:, 8:9])
    assert torch.allclose(m(x[:, 9:], cache=cache), full[:, 9:])


def test_chain_step_is_one_pairwise_feature():
    """Setting one quadratic weight makes the model write the running parity at step i."""
    d = 5
    task = ParityTask(d, 1.0)
    m = LinearAR(LinearARConfig(block_size=task.seq_len))
    with torch.no_grad():
        for i in range(1, d):  # predict s_{i+1} (0-based i) from position d + i - 1: s_i * x_{i+1}
            t = d + i - 1
            m.quad[t, 0, i, t] = 10.0   # token 0 <-> sign +1 <-> product +1
            m.quad[t, 1, i, t] = -10.0
        m.lin[d - 1, 0, 0] = 10.0       # s_1 = x_1
        m.lin[d - 1, 1, 0] = -10.0
        m.bias[2 * d - 1, 2] = 10.0     # EOS after d chain tokens
    seq = task.sample(64, torch.Generator().manual_seed(0))
    tok, _ = generate(m, seq[:, :d], task.max_response_len, eos_id=EOS, pad_id=PAD)
    assert torch.equal(tok, seq)


def test_parity_is_orthogonal_to_every_feature():
    d = 6
    X = torch.tensor(list(itertools.product([0, 1], repeat=d)))
    v = signs(X)
    parity_sign = v.prod(1)
    feats = [torch.ones(len(X))] + [v[:, i] for i in range(d)] + \
            [v[:, i] * v[:, j] for i in range(d) for j in range(i + 1, d)]
    assert all(abs((f * parity_sign).mean()) < 1e-9 for f in feats)


def test_continue_decision_is_the_feature_r1_x1():
    """After training, the continue-vs-EOS logit at the first response token depends on r_1 x_1."""
    d, p = 8, 0.2
    task = ParityTask(d, p)
    m = LinearAR(LinearARConfig(block_size=task.seq_len))
    ntp.train(m, task, 600, 256, 0.02, decay_frac=0.5, progress=False)
    t = d  # position of r_1: its logits decide the second response token
    eos_vs_bits = m.quad[t, 2, 0, t] - 0.5 * (m.quad[t, 0, 0, t] + m.quad[t, 1, 0, t])
    others = (m.quad[t, 2, 1:d, t]
              - 0.5 * (m.quad[t, 0, 1:d, t] + m.quad[t, 1, 1:d, t])).abs().max()
    assert eos_vs_bits.abs() > 5 * others


@pytest.mark.parametrize("kwargs, field",
                         [(dict(block_size=0), "block_size"), (dict(n_out=4), "n_out")])
def test_bad_linear_config(kwargs, field):
    with pytest.raises(ValueError, match=field):
        LinearARConfig(**kwargs)


def test_linear_model_computes_in_float32_under_the_trainers_bf16_autocast():
    """The theorem's model is exact float32 even where the trainers pick bf16 (precision="auto"
    on a GPU or a bf16-capable CPU): its logits do not change under autocast."""
    task = ParityTask(6, 0.3)
    m = model(T=task.seq_len, std=1.0)
    tokens = task.sample(16, torch.Generator().manual_seed(0))
    want = m(tokens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m(tokens)
    assert got.dtype == torch.float32
    assert torch.equal(got, want)

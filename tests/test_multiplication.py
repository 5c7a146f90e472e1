"""Chapter 5's task: hand-written sequences, the arithmetic of every chain, the mixture share,
rewards and answer parsing, bad input."""

import pytest
import torch

from ntprl.tasks import MultiplicationTask, Task
from ntprl.tasks.multiplication import EOS, EQUALS, MARK, PAD, SEP, TIMES

G = torch.Generator


def test_hand_written_sequences():
    t = MultiplicationTask(2, 0.5)
    x = t.encode_prompts(torch.tensor([54]), torch.tensor([53]))
    assert x.tolist() == [[4, 5, TIMES, 3, 5, EQUALS]]           # digits least significant first
    # S_1 = 54 * 3 = 162 -> 0162, S_2 = 54 * 53 = 2862 (least significant first)
    assert t.chain_of(x).tolist() == [[MARK, 2, 6, 1, 0, SEP, 2, 6, 8, 2]]
    assert t.product_of(x).tolist() == [[2, 6, 8, 2]]
    t3 = MultiplicationTask(3, 0.5)
    x3 = t3.encode_prompts(torch.tensor([123]), torch.tensor([456]))
    # 123*6 = 738, 123*56 = 6888, 123*456 = 56088, six digits each
    assert t3.chain_of(x3).tolist() == [[MARK, 8, 3, 7, 0, 0, 0, SEP, 8, 8, 8, 6, 0, 0, SEP,
                                         8, 8, 0, 6, 5, 0]]
    assert t3.pretty(torch.cat([x3, t3.chain_of(x3), torch.tensor([[EOS]])], 1)[0]) == \
        "123 × 456 = : 000738 | 006888 | 056088 <eos>"
    assert (t.prompt_len, t.long_len, t.max_response_len, t.seq_len) == (6, 10, 11, 17)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_every_chain_is_right_on_thousands_of_samples(n):
    """An independent check in plain Python integers of every running sum and product."""
    t = MultiplicationTask(n, 0.5)
    seq = t.sample(3000, G().manual_seed(n))
    for row in seq.tolist()[:3000]:
        a = int("".join(map(str, reversed(row[:n]))))
        b = int("".join(map(str, reversed(row[n + 1:2 * n + 1]))))
        assert row[n] == TIMES and row[2 * n + 1] == EQUALS
        assert len(str(a)) == n and len(str(b)) == n or n == 1
        resp = row[t.prompt_len:]
        resp = resp[:resp.index(EOS)]
        if resp[0] == MARK:
            sums = [int("".join(map(str, reversed(s)))) for s in _split(resp[1:])]
            assert sums == [a * (b % 10 ** i) for i in range(1, n + 1)]
            assert all(len(s) == 2 * n for s in _split(resp[1:]))
        else:
            assert int("".join(map(str, reversed(resp)))) == a * b and len(resp) == 2 * n
    x, r = seq[:, :t.prompt_len], seq[:, t.prompt_len:]
    assert t.reward_e2e(x, r).all() and t.reward_cot(x, r).all()


def _split(tokens):
    out, cur = [], []
    for tok in tokens:
        if tok == SEP:
            out.append(cur)
            cur = []
        else:
            cur.append(tok)
    return out + [cur]


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_mixture_share(p):
    t = MultiplicationTask(3, p)
    seq = t.sample(4000, G().manual_seed(0))
    share = t.is_long(seq[:, t.prompt_len:]).float().mean().item()
    assert abs(share - p) < 0.03


def test_rewards_and_answers_of_wrong_and_odd_responses():
    t = MultiplicationTask(2, 0.5)
    x = t.encode_prompts(torch.tensor([54, 54, 54, 54, 54]), torch.tensor([53] * 5))
    right_long = [MARK, 2, 6, 1, 0, SEP, 2, 6, 8, 2, EOS]
    rows = [right_long,
            [MARK, 0, 0, 0, 0, SEP, 2, 6, 8, 2, EOS],   # wrong step, right answer
            [2, 6, 8, 2, EOS, PAD, PAD, PAD, PAD, PAD, PAD],  # right short
            [2, 6, 8, 2, 2, 6, 8, PAD, PAD, PAD, PAD],  # no EOS: no answer
            [2, SEP, EOS, PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD]]  # too short, a non-digit
    r = torch.tensor(rows)
    assert t.answer(r).tolist() == [2862, 2862, 2862, -1, -1]
    assert t.reward_e2e(x, r).tolist() == [1, 1, 1, 0, 0]
    assert t.reward_cot(x, r).tolist() == [1, 0, 1, 0, 0]
    assert t.is_long(r).tolist() == [True, True, False, False, False]
    assert t.response_length(r).tolist() == [10, 10, 4, 7, 2]
    assert t.has_eos(r).tolist() == [True, True, True, False, True]


def test_meets_the_task_interface():
    assert isinstance(MultiplicationTask(3, 0.2), Task)


@pytest.mark.parametrize("kwargs, field", [
    (dict(n_digits=0, p_cot=0.5), "n_digits=0"), (dict(n_digits=10, p_cot=0.5), "n_digits=10"),
    (dict(n_digits=2.0, p_cot=0.5), "n_digits=2.0"), (dict(n_digits=3, p_cot=1.5), "p_cot=1.5"),
    (dict(n_digits=3, p_cot=float("nan")), "p_cot=nan"),
])
def test_bad_input(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MultiplicationTask(**kwargs)
    with pytest.raises(ValueError, match="n=0"):
        MultiplicationTask(2, 0.5).prompts(0)


class FixedFirstToken(torch.nn.Module):
    """A 'model' whose next-token distribution is the same everywhere: ``probs``."""

    def __init__(self, probs):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.log(torch.tensor(probs)))

    def forward(self, tokens):
        return self.logits.expand(*tokens.shape, -1)


def test_route_probs_reads_the_first_token():
    from ntprl import theory
    from ntprl.metrics import route_probs
    probs = [1e-9] * 16
    probs[MARK], probs[7], probs[2] = 0.3, 0.6, 0.1
    r = route_probs(FixedFirstToken(probs), MultiplicationTask(2, 0.3), 64)
    assert r["p_long_first"] == pytest.approx(0.3, abs=1e-6)
    assert r["short_top_share"] == pytest.approx(0.6 / 0.7, abs=1e-6)
    assert r["greedy_long_first"] == 0.0
    # the threshold of this model's format: greedy goes long iff p > m / (1 + m) = 0.4615...
    assert 0.3 < theory.divergent_threshold(r["short_top_share"]) < 0.5
    from ntprl.tasks import ParityTask
    with pytest.raises(ValueError, match="task=ParityTask"):
        route_probs(FixedFirstToken([0.25] * 4), ParityTask(4, 0.5), 8)

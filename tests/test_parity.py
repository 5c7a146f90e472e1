import math

import pytest
import torch

from ntprl.tasks import EOS, PAD, ParityTask

E, P = EOS, PAD


def test_long_and_short_layout_by_hand():
    x = torch.tensor([[1, 0, 1, 1]])
    long_ = ParityTask(4, 1.0)
    short = ParityTask(4, 0.0)
    assert long_.chain_of(x).tolist() == [[1, 1, 0, 1]]
    g = torch.Generator().manual_seed(0)
    seq = long_.sample(5, g)
    assert seq.shape == (5, 4 + 4 + 1)
    for row in seq.tolist():
        bits = row[:4]
        s, chain = 0, []
        for b in bits:
            s ^= b
            chain.append(s)
        assert row[4:] == chain + [E]
    for row in short.sample(5, g).tolist():
        assert row[4:] == [sum(row[:4]) % 2, E, P, P, P]


def test_exact_sequences_for_d4():
    # a fixed prompt through the public pieces: chain, short answer, leap-2
    x = torch.tensor([[0, 1, 1, 1]])
    assert ParityTask(4, 1.0).chain_of(x).tolist() == [[0, 1, 0, 1]]
    assert ParityTask(4, 1.0, "leap2").chain_of(x).tolist() == [[1, 1]]      # s2, s4
    assert ParityTask(5, 1.0, "leap2").chain_of(
        torch.tensor([[1, 1, 0, 1, 1]])).tolist() == [[0, 1, 0]]  # s2, s4, s5
    assert ParityTask.parity(x).tolist() == [1]


def test_leap2_sample_layout():
    t = ParityTask(5, 1.0, "leap2")
    assert t.long_len == 3 and t.seq_len == 5 + 4
    for row in t.sample(8, torch.Generator().manual_seed(1)).tolist():
        x = row[:5]
        run = [sum(x[: i + 1]) % 2 for i in range(5)]
        assert row[5:] == [run[1], run[3], run[4], E]


def test_mixture_share():
    t = ParityTask(8, 0.3)
    seq = t.sample(20000, torch.Generator().manual_seed(0))
    frac = t.is_long(seq[:, 8:]).float().mean().item()
    assert abs(frac - 0.3) < 0.015
    assert set(seq.unique().tolist()) <= {0, 1, E, P}


def test_same_seed_same_batch():
    t = ParityTask(10, 0.5)
    a = t.sample(64, torch.Generator().manual_seed(3))
    b = t.sample(64, torch.Generator().manual_seed(3))
    c = t.sample(64, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_answer_length_and_rewards():
    t = ParityTask(4, 0.5)
    x = torch.tensor([[1, 0, 1, 1]] * 7)  # parity 1, chain 1 1 0 1
    r = torch.tensor([
        [1, 1, 0, 1, E],   # correct long
        [1, E, P, P, P],   # correct short
        [0, E, P, P, P],   # wrong short
        [1, 1, 1, 1, E],   # wrong chain, right answer -> e2e yes, cot no
        [1, 1, 0, 1, 1],   # truncated (no EOS): no answer
        [E, P, P, P, P],   # empty: no answer
        [0, 1, E, P, P],   # length 2, right answer, not a valid chain
    ])
    assert t.response_length(r).tolist() == [4, 1, 1, 4, 5, 0, 2]
    assert t.answer(r).tolist() == [1, 1, 0, 1, -1, -1, 1]
    assert t.reward_e2e(x, r).tolist() == [1, 1, 0, 1, 0, 0, 1]
    assert t.reward_cot(x, r).tolist() == [1, 1, 0, 0, 0, 0, 0]
    assert t.is_long(r).tolist() == [True, False, False, True, True, False, True]
    assert t.has_eos(r).tolist() == [True, True, True, True, False, True, True]


def test_rewards_on_the_task_own_samples_are_one():
    for chain in ("full", "leap2"):
        t = ParityTask(7, 0.5, chain)
        seq = t.sample(256, torch.Generator().manual_seed(0))
        x, r = seq[:, :7], seq[:, 7:]
        assert t.reward_e2e(x, r).min() == 1 and t.reward_cot(x, r).min() == 1


def test_pretty():
    t = ParityTask(4, 1.0)
    assert t.pretty([1, 0, 1, 1, 1, 1, 0, 1, E]) == "1 0 1 1 | 1 1 0 1 <eos>"
    assert t.pretty(torch.tensor([1, 0, 1, 1, 1, E, P, P, P])) == "1 0 1 1 | 1 <eos>"


def test_sizes():
    t = ParityTask(6, 0.1)
    assert (t.prompt_len, t.long_len, t.max_response_len, t.seq_len) == (6, 6, 7, 13)


@pytest.mark.parametrize("kwargs, field", [
    (dict(d=4, p_cot=-0.1), "p_cot"),
    (dict(d=4, p_cot=1.5), "p_cot"),
    (dict(d=4, p_cot=math.nan), "p_cot"),
    (dict(d=1, p_cot=0.2), "d="),
    (dict(d=4.0, p_cot=0.2), "d="),
    (dict(d=4, p_cot=0.2, chain="half"), "chain"),
    (dict(d=2, p_cot=0.2, chain="leap2"), "d=2"),
])
def test_bad_task_inputs(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ParityTask(**kwargs)


def test_bad_prompts_and_n():
    t = ParityTask(4, 0.2)
    with pytest.raises(ValueError, match="n="):
        t.prompts(0)
    with pytest.raises(ValueError, match="prompts"):
        t.reward_e2e(torch.zeros(3, 5, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))


def test_full_chain_counts_only_complete_long_answers():
    from ntprl.metrics import full_chain
    from ntprl.tasks import EOS, PAD
    t = ParityTask(4, 0.5)
    r = torch.tensor([[1, 1, 0, 1, EOS],      # complete chain (right or wrong: length d, EOS)
                      [0, 0, 0, 0, EOS],      # complete, wrong
                      [1, 1, EOS, PAD, PAD],  # broken: long (length >= 2) but not complete
                      [1, EOS, PAD, PAD, PAD],  # short
                      [1, 1, 0, 1, 1]])       # no EOS: truncated
    assert full_chain(t, r).tolist() == [True, True, False, False, False]
    assert t.is_long(r).tolist() == [True, True, True, False, True]

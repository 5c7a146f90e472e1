import math

import pytest
import torch

from ntprl import theory
from ntprl.metrics import branch_probs, decoding_tree, format_tree, line_fit
from ntprl.tasks import ParityTask


def test_greedy_threshold_is_one_third():
    assert theory.greedy_accuracy(0.33) == 0.5 and theory.greedy_accuracy(0.34) == 1.0
    assert theory.long_prob(0.3, 0.0) == 0 and theory.long_prob(0.36, 0.0) == 1


def test_star_map_doubles_the_odds():
    for p in (0.01, 0.1, 0.25):
        q = theory.star_map(p)
        assert q / (1 - q) == pytest.approx(2 * p / (1 - p))
    assert theory.star_rounds_to_threshold(0.25) == 1
    assert theory.star_rounds_to_threshold(0.01) == math.ceil(theory.log_odds_rounds(0.01))


@pytest.mark.parametrize("p, rounds", [
    (0.2, 2),      # one round gives exactly 1/3: a tie, not "above"
    (1 / 9, 3),    # two rounds give 1/5 then exactly 1/3
    (1 / 3, 1),    # a tie already: one round to pass it
    (1 / 17, 4), (0.25, 1), (0.34, 0), (0.1, 3), (0.01, 6),
])
def test_rounds_to_pass_one_third_are_exact_on_ties(p, rounds):
    from fractions import Fraction
    assert theory.star_rounds_to_threshold(p) == rounds
    q = Fraction(p).limit_denominator(10**12)  # check against the map itself, exactly
    for _ in range(rounds):
        q = 2 * q / (1 + q)
    assert q > Fraction(1, 3)
    if rounds:
        q = Fraction(p).limit_denominator(10**12)
        for _ in range(rounds - 1):
            q = 2 * q / (1 + q)
        assert q <= Fraction(1, 3)
    if 0 < p <= 1 / 3:  # the closed form floor(log2((1-p)/(2p))) + 1, in exact arithmetic
        e = Fraction(p).limit_denominator(10**12)
        x = (1 - e) / (2 * e)
        k = 0
        while 2 ** (k + 1) <= x:
            k += 1
        assert rounds == k + 1
    with pytest.raises(ValueError, match="p_cot"):
        theory.first_token_prob(1.2)


def test_tempered():
    assert theory.tempered([0.6, 0.4], 1.0) == pytest.approx([0.6, 0.4])
    assert theory.tempered([0.6, 0.4], 0.0) == [1.0, 0.0]
    assert theory.tempered([0.5, 0.5], 0.0) == [0.5, 0.5]


@pytest.mark.parametrize("p", [0.1, 0.25, 0.6])
def test_branch_probs_read_the_model(oracle, p):
    r = branch_probs(oracle(6, p), ParityTask(6, p), 200)
    assert r["first_token"] == pytest.approx(theory.first_token_prob(p), abs=1e-6)
    assert r["continue"] == pytest.approx(theory.continue_prob(p), abs=1e-6)


def test_decoding_tree_of_the_oracle(oracle):
    d, p = 5, 0.2
    task = ParityTask(d, p)
    prompt = torch.tensor([1, 0, 1, 1, 0])  # chain 1 1 0 1 1, parity 1
    tree = decoding_tree(oracle(d, p), task, prompt)
    first = {n["token"]: n for n in tree["children"]}
    assert set(first) == {0, 1} and first[1]["prob"] == pytest.approx(0.6, abs=1e-5)
    after = {n["token"]: n for n in first[1]["children"]}
    assert after[2]["prob"] == pytest.approx(1 - theory.continue_prob(p), abs=1e-5)
    assert after[2]["answer"] == 1 and after[2]["correct"]           # x_1 then EOS: right by luck
    assert after[1]["completion"] == [0, 1, 1, 2] and after[1]["correct"]  # the chain
    assert first[0]["children"][0]["token"] == 2 and not first[0]["children"][0]["correct"]
    text = format_tree(tree)
    assert "answer 1 ✓" in text and "parity 1" in text


def test_summarize_counts_long_answers_that_are_right():
    from ntprl.metrics import summarize
    from ntprl.tasks import EOS, PAD, ParityTask
    task = ParityTask(3, 0.5)
    prompts = torch.tensor([[1, 0, 1]] * 4)  # chain 1 1 0, parity 0
    responses = torch.tensor([[1, 1, 0, EOS], [1, 1, 1, EOS],   # long right, long wrong
                              [0, EOS, PAD, PAD], [1, EOS, PAD, PAD]])  # short right, wrong
    s = summarize(task, prompts, responses, 4)
    assert s["long_frac"] == 0.5 and s["long_right_frac"] == 0.25 and s["acc"] == 0.5


def test_long_accuracy_is_the_accuracy_of_the_long_answers_alone():
    from ntprl.metrics import long_accuracy
    rec = {"sampled_long_frac": 0.5, "sampled_long_right_frac": 0.25,
           "greedy_long_frac": 0.0, "greedy_long_right_frac": 0.0}
    assert long_accuracy(rec) == 0.5 and long_accuracy(rec, "greedy") == 0.0  # none long
    with pytest.raises(ValueError, match="mode="):
        long_accuracy(rec, "long")


def test_line_fit_recovers_a_line_and_tells_a_log_law_from_a_1_over_p_law():
    slope, r2, worst = line_fit([1, 2, 3], [3, 5, 7])
    assert slope == pytest.approx(2.0) and r2 == pytest.approx(1.0) and worst < 1e-12
    ps = [0.02, 0.05, 0.1, 0.2]
    rounds = [math.log2((1 - p) / (2 * p)) + 1 for p in ps]  # a log law, exactly
    _, r2_log, _ = line_fit([math.log((1 - p) / p) for p in ps], rounds)
    _, r2_inv, _ = line_fit([1 / p for p in ps], rounds)
    assert r2_log > 0.99 and r2_inv < r2_log
    assert line_fit([0, 1], [4, 4]) == (0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="two distinct xs"):
        line_fit([1, 1], [2, 3])


@pytest.mark.parametrize("p, d", [(0.25, 8), (0.1, 16), (0.6, 5)])
def test_calibrated_loss_is_the_ideal_models_cross_entropy(p, d):
    """theory.calibrated_loss equals the mean NTP loss, over response tokens with EOS, of the
    model that knows the chain and is calibrated, on sequences drawn from D(p)."""
    from ntprl.tasks import EOS, PAD
    task = ParityTask(d, p)
    seq = task.sample(20000, torch.Generator().manual_seed(0))
    x1, first, second = seq[:, 0], seq[:, d], seq[:, d + 1]
    q1, qc = theory.first_token_prob(p), theory.continue_prob(p)
    nll = -torch.where(first == x1, math.log(q1), math.log(1 - q1))
    went_on = (first == x1) & (second != EOS)
    nll -= torch.where(first == x1, torch.where(went_on, math.log(qc), math.log(1 - qc)), 0.0)
    tokens = (seq[:, d:] != PAD).sum(1)  # response tokens, EOS included
    assert torch.equal(tokens, torch.where(went_on, d + 1, 2))  # the chain and EOS, or two
    measured = (nll.sum() / tokens.sum()).item()
    assert theory.calibrated_loss(p, d) == pytest.approx(measured, rel=0.02)
    assert theory.calibrated_loss(1.0, d) == 0  # chains only: every token certain
    assert theory.calibrated_loss(0.0, d) == pytest.approx(math.log(2) / 2)  # a coin, then EOS
    with pytest.raises(ValueError, match="d="):
        theory.calibrated_loss(p, 0)


def test_branch_probs_read_the_first_token_of_the_tasks_own_chain(oracle):
    """On a leap-2 task the long answer opens with s_2 = x_1 XOR x_2, not x_1: the probe reads
    that token. The full-chain oracle puts (1+p)/2 on x_1, which is s_2 on half the prompts."""
    p = 0.4
    leap = branch_probs(oracle(6, p), ParityTask(6, p, chain="leap2"), 4000)
    assert leap["first_token"] == pytest.approx(0.5, abs=0.02)
    full = branch_probs(oracle(6, p), ParityTask(6, p), 4000)
    assert full["first_token"] == pytest.approx(theory.first_token_prob(p), abs=1e-6)


def test_chain_reading_reads_the_steps_whatever_the_route(oracle):
    """The calibrated oracle below 1/3 would rather stop after x_1 (argmax EOS there), but every
    chain step it writes is right: bits_only reads 1, the argmax over all tokens (L - 1) / L."""
    from ntprl.metrics import chain_reading
    d, p = 6, 0.2
    task = ParityTask(d, p)
    steps = chain_reading(oracle(d, p), task, 64)
    assert steps == {"chain_token_acc": 1.0, "chain_exact": 1.0, "first_token_acc": 1.0}
    anyway = chain_reading(oracle(d, p), task, 64, bits_only=False)
    assert anyway["chain_token_acc"] == pytest.approx((d - 1) / d)
    assert anyway["chain_exact"] == 0.0 and anyway["first_token_acc"] == 1.0
    # steps the model does not know: the full-chain oracle, read on leap-2 sequences
    wrong = chain_reading(oracle(d, p), ParityTask(d, p, chain="leap2"), 256)
    assert wrong["chain_token_acc"] < 0.8
    with pytest.raises(ValueError, match="n=0"):
        chain_reading(oracle(d, p), task, 0)
    from ntprl.tasks import MultiplicationTask
    with pytest.raises(ValueError, match="bits_only=True"):
        chain_reading(oracle(d, p), MultiplicationTask(2, 0.5), 4)

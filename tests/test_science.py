"""Scientific regression: the paper's NTP phenomena at a small size, inside the CI budget.

At d = 16 a 2-layer, width-128 GPT learns the chain within 1500 steps of 128 fresh samples.
Below p_cot = 1/3 it stays length-calibrated and greedy decoding takes the short route (chance
accuracy); above 1/3 greedy decoding goes long and is right.
"""

import pytest

import ntprl.scale
from ntprl.experiments import make_model
from ntprl.metrics import evaluate
from ntprl.tasks import ParityTask
from ntprl.train import ntp

FAST = ntprl.scale.get("fast")


def ntp_then_evaluate(d, p, steps, seed=0):
    task = ParityTask(d, p)
    model = make_model(task, FAST, seed)
    ntp.train(model, task, steps, 128, 1e-3, seed=seed, decay_frac=0.2, progress=False)
    return evaluate(model, task, 2000, seed=seed + 1)


@pytest.mark.science
def test_below_one_third_greedy_is_at_chance_and_sampling_is_calibrated():
    r = ntp_then_evaluate(16, 0.2, 1500)
    assert r["greedy_acc"] <= 0.6, r
    assert r["greedy_len_median"] == 1, r
    assert abs(r["sampled_long_frac"] - 0.2) <= 0.05, r
    # the long route itself was learned: sampled accuracy is (1 + p) / 2, above chance
    assert abs(r["sampled_acc"] - 0.6) <= 0.05, r


@pytest.mark.science
def test_above_one_third_greedy_goes_long_and_is_right():
    r = ntp_then_evaluate(16, 0.45, 800)
    assert r["greedy_acc"] >= 0.95, r
    assert r["greedy_len_median"] == 16, r

"""Scientific regression: the paper's phenomena at a small size, inside the CI budget.

At d = 16 a 2-layer, width-128 GPT learns the chain within 1500 steps of 128 fresh samples.
Below p_cot = 1/3 it stays length-calibrated and greedy decoding takes the short route (chance
accuracy); above 1/3 greedy decoding goes long and is right. RL (GRPO) from the model below the
threshold reaches high greedy accuracy with long answers within a few dozen steps.
"""

import copy

import pytest

import ntprl.scale
from ntprl.experiments import make_model
from ntprl.metrics import evaluate
from ntprl.tasks import ParityTask
from ntprl.train import ntp, rl

FAST = ntprl.scale.get("fast")


def ntp_model(d, p, steps, seed=0):
    task = ParityTask(d, p)
    model = make_model(task, FAST, seed)
    ntp.train(model, task, steps, 128, 1e-3, seed=seed, decay_frac=0.2, progress=False)
    return task, model


@pytest.fixture(scope="module")
def below_threshold():
    return ntp_model(16, 0.2, 1500)


@pytest.mark.science
def test_below_one_third_greedy_is_at_chance_and_sampling_is_calibrated(below_threshold):
    task, model = below_threshold
    r = evaluate(model, task, 2000, seed=1)
    assert r["greedy_acc"] <= 0.6, r
    assert r["greedy_len_median"] == 1, r
    assert abs(r["sampled_long_frac"] - 0.2) <= 0.05, r
    # the long route itself was learned: sampled accuracy is (1 + p) / 2, above chance
    assert abs(r["sampled_acc"] - 0.6) <= 0.05, r


@pytest.mark.science
def test_above_one_third_greedy_goes_long_and_is_right():
    task, model = ntp_model(16, 0.45, 800)
    r = evaluate(model, task, 2000, seed=1)
    assert r["greedy_acc"] >= 0.95, r
    assert r["greedy_len_median"] == 16, r


@pytest.mark.science
def test_rl_after_ntp_generalises_and_lengthens(below_threshold):
    task, model = below_threshold
    model = copy.deepcopy(model)
    rl.train(model, task, "grpo", 25, lr=3e-4, prompts_per_step=32, samples_per_prompt=8,
             seed=0, progress=False)
    r = evaluate(model, task, 2000, seed=1)
    assert r["greedy_acc"] >= 0.95, r
    assert r["greedy_len_mean"] >= 0.9 * 16, r

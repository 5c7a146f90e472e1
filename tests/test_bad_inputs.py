"""A sweep of the mistakes a user can make, through the public API and the command line.

Every case must come back as one ``ValueError`` (exit status 2 with one ``error:`` line for the
CLI, never a traceback) whose message names the field, value or file that is wrong.
"""

import json
import subprocess
import sys

import pytest
import torch

import ntprl.scale
from ntprl import experiments, results
from ntprl.experiments import make_model
from ntprl.metrics import evaluate
from ntprl.models import GPTConfig, LinearARConfig
from ntprl.sampling import generate
from ntprl.tasks import EOS, PAD, ParityTask
from ntprl.train import ntp, rl

SMOKE = ntprl.scale.get("smoke")
T = ParityTask(4, 0.5)


def model(task=T):
    return make_model(task, SMOKE, 0).cpu()


def train_ntp(**kw):
    args = dict(steps=2, batch_size=4, lr=1e-3, progress=False)
    args.update(kw)
    return ntp.train(kw.pop("model", None) or model(), T, **{k: v for k, v in args.items()
                                                             if k != "model"})


def train_rl(**kw):
    args = dict(algo="grpo", steps=1, prompts_per_step=2, samples_per_prompt=2, progress=False)
    args.update(kw)
    return rl.train(model(), T, **args)


def prompts(n=2, d=4):
    return torch.zeros(n, d, dtype=torch.long)


def llm_config(name, **kw):
    from ntprl import llm
    return llm.recipe.validate(llm.config(name, **kw))


def llm_sums(name, **kw):
    from ntprl import llm
    return llm.sums_config(name, **kw)


def write(path, text):
    path.write_text(text)
    return path


CASES = {
    # tasks
    "d below 2": (lambda tmp: ParityTask(1, 0.5), "d=1"),
    "p_cot above 1": (lambda tmp: ParityTask(8, 1.5), "p_cot=1.5"),
    "p_cot NaN": (lambda tmp: ParityTask(8, float("nan")), "p_cot=nan"),
    "unknown chain": (lambda tmp: ParityTask(8, 0.5, "leap3"), "chain='leap3'"),
    "leap2 with d=2": (lambda tmp: ParityTask(2, 0.5, "leap2"), "d=2"),
    # models
    "n_embd not divisible": (lambda tmp: GPTConfig(n_embd=30, n_head=4), "n_embd=30"),
    "unknown positions": (lambda tmp: GPTConfig(positions="alibi"), "positions='alibi'"),
    "dropout 1": (lambda tmp: GPTConfig(dropout=1.0), "dropout=1.0"),
    "unknown norm": (lambda tmp: GPTConfig(norm="batch"), "norm='batch'"),
    "unknown mlp": (lambda tmp: GPTConfig(mlp="relu"), "mlp='relu'"),
    "unknown architecture": (lambda tmp: ntprl.scale.get("smoke").with_(arch="llama"),
                             "arch='llama'"),
    "linear block_size 0": (lambda tmp: LinearARConfig(block_size=0), "block_size=0"),
    # sampler
    "no new tokens": (lambda tmp: generate(model(), prompts(), 0, eos_id=EOS, pad_id=PAD),
                      "max_new_tokens=0"),
    "past the context": (lambda tmp: generate(model(), prompts(), 50, eos_id=EOS, pad_id=PAD),
                         "max_new_tokens=50"),
    "negative temperature": (lambda tmp: generate(model(), prompts(), 2, -1.0, eos_id=EOS,
                                                  pad_id=PAD), "temperature=-1.0"),
    "infinite temperature": (lambda tmp: generate(model(), prompts(), 2, float("inf"),
                                                  eos_id=EOS, pad_id=PAD), "temperature=inf"),
    "1-D prompts": (lambda tmp: generate(model(), torch.zeros(4, dtype=torch.long), 2,
                                         eos_id=EOS, pad_id=PAD), "prompts"),
    # NTP trainer
    "ntp steps 0": (lambda tmp: train_ntp(steps=0), "steps=0"),
    "ntp batch_size -1": (lambda tmp: train_ntp(batch_size=-1), "batch_size=-1"),
    "ntp lr 0": (lambda tmp: train_ntp(lr=0.0), "lr=0.0"),
    "ntp optimizer adam": (lambda tmp: train_ntp(optimizer="adam"), "optimizer='adam'"),
    "ntp decay_frac 2": (lambda tmp: train_ntp(decay_frac=2.0), "decay_frac=2.0"),
    "ntp warmup -1": (lambda tmp: train_ntp(warmup_steps=-1), "warmup_steps=-1"),
    "ntp eval without fn": (lambda tmp: train_ntp(eval_every=5), "eval_fn=None"),
    "ntp grad_clip 0": (lambda tmp: train_ntp(grad_clip=0.0), "grad_clip=0.0"),
    "context too short": (lambda tmp: ntp.train(model(ParityTask(2, 0.5)), T, 1, 4, 1e-3,
                                                progress=False), "block_size="),
    "checkpoint of another model": (
        lambda tmp: (train_ntp(checkpoint=tmp / "c.pt"),
                     ntp.train(make_model(T, SMOKE, 0, n_embd=48).cpu(), T, 2, 4, 1e-3,
                               checkpoint=tmp / "c.pt", progress=False)),
        "model.config.n_embd"),
    "unreadable checkpoint": (lambda tmp: train_ntp(checkpoint=write(tmp / "bad.pt", "x")),
                              "bad.pt"),
    # RL trainer
    "rl algo ppo": (lambda tmp: train_rl(algo="ppo"), "algo='ppo'"),
    "grpo group of 1": (lambda tmp: train_rl(samples_per_prompt=1), "samples_per_prompt=1"),
    "rl loss_agg sum": (lambda tmp: train_rl(loss_agg="sum"), "loss_agg='sum'"),
    "rl adv_norm batch": (lambda tmp: train_rl(adv_norm="batch"), "adv_norm='batch'"),
    "rl temperature 0": (lambda tmp: train_rl(temperature=0.0), "temperature=0.0"),
    "rl temperature inf": (lambda tmp: train_rl(temperature=float("inf")), "temperature=inf"),
    "rl reward of shape (n, 1)": (  # would broadcast REINFORCE's advantages into a zero loss
        lambda tmp: train_rl(algo="reinforce", reward=lambda p, r: T.reward_e2e(p, r)[:, None]),
        "reward returned (4, 1)"),
    "rl reward partial": (lambda tmp: train_rl(reward="partial"), "reward='partial'"),
    "rl kl_coef negative": (lambda tmp: train_rl(kl_coef=-1.0), "kl_coef=-1.0"),
    "rl budget too short": (lambda tmp: train_rl(max_new_tokens=3), "max_new_tokens=3"),
    "rl clip_eps 0": (lambda tmp: train_rl(clip_eps=0.0), "clip_eps=0.0"),
    "rl ppo_epochs 0": (lambda tmp: train_rl(ppo_epochs=0), "ppo_epochs=0"),
    # metrics
    "evaluate n 0": (lambda tmp: evaluate(model(), T, 0), "n=0"),
    "evaluate beam": (lambda tmp: evaluate(model(), T, 4, modes=("beam",)), "modes="),
    # experiments, scales, results
    "unknown experiment": (lambda tmp: experiments.run("nope", SMOKE), "experiment='nope'"),
    "unknown scale": (lambda tmp: ntprl.scale.get("huge"), "scale='huge'"),
    "truncated results file": (lambda tmp: results.load(write(tmp / "r.json", '{"sch')),
                               "r.json"),
    "results file of a list": (lambda tmp: results.load(write(tmp / "l.json", "[1, 2]")),
                               "l.json"),
    "truncated part": (lambda tmp: experiments.more_data(
        SMOKE, progress=False, workdir=write(tmp / "more_data-s0.json", "{").parent),
        "more_data-s0.json"),
    # ntprl.llm configuration
    "llm preset fast": (lambda tmp: llm_config("fast"), "name='fast'"),
    "llm p_cot 2": (lambda tmp: llm_config("smoke", p_cot=2.0), "p_cot=2.0"),
    "llm lora_r 0": (lambda tmp: llm_config("smoke", lora_r=0), "lora_r=0"),
    "sums preset huge": (lambda tmp: llm_sums("huge"), "name='huge'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_naming_the_field(case, tmp_path):
    fn, names = CASES[case]
    if case.startswith(("llm", "sums")):
        pytest.importorskip("transformers")
    with pytest.raises(ValueError) as err:
        fn(tmp_path)
    msg = str(err.value)
    assert names in msg, msg
    assert "\n" not in msg, msg


def test_the_sweep_is_wide():
    assert len(CASES) >= 25


CLI = [sys.executable, "-m", "ntprl"]


@pytest.mark.parametrize("args, names", [
    (["run", "nope", "--scale", "smoke"], "experiment='nope'"),
    (["run", "threshold", "--scale", "huge"], "scale='huge'"),
    (["run", "threshold", "--scale", "smoke", "--out", "{bad}"], "bad.json"),
    (["run", "threshold", "--scale", "smoke", "--out", "{other}"], "not threshold"),
])
def test_cli_errors_are_one_line(args, names, tmp_path):
    bad = write(tmp_path / "bad.json", '{"schema": 1')
    other = tmp_path / "other.json"
    results.save(other, {}, experiment="more_data", scale="smoke", seed=0, config={}, wall_s=0)
    args = [a.format(bad=bad, other=other) for a in args]
    out = subprocess.run(CLI + args, capture_output=True, text=True)
    assert out.returncode == 2, out
    assert out.stderr.startswith("error:") and names in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_cli_creates_a_missing_output_folder(tmp_path):
    path = tmp_path / "not" / "yet" / "more.json"
    out = subprocess.run(CLI + ["run", "more_data", "--scale", "smoke", "--out", str(path),
                                "--no-progress"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(path.read_text())["scale"] == "smoke"

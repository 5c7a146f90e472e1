import json

import pytest
import torch

import ntprl.metrics
import ntprl.scale
from ntprl import checks
from ntprl.experiments import make_model, parity_hardness
from ntprl.metrics import evaluate
from ntprl.models import GPT, GPTConfig
from ntprl.tasks import EOS, PAD, ParityTask
from ntprl.train import ntp

TINY = ntprl.scale.get("smoke")


def tiny(task, seed=0, **overrides):
    return make_model(task, TINY, seed, **overrides).cpu()


def test_response_mask_covers_eos_not_prompt_or_pad():
    t = ParityTask(4, 0.5)
    seq = torch.tensor([[1, 0, 1, 1, 1, 1, 0, 1, EOS], [1, 0, 1, 1, 1, EOS, PAD, PAD, PAD]])
    m = ntp.response_mask(seq, t.prompt_len, t.PAD)
    assert m.tolist() == [[False] * 4 + [True] * 5, [False] * 4 + [True, True, False, False, False]]


def test_sequence_loss_counts_only_masked_targets():
    V = 4
    tokens = torch.tensor([[0, 1, 2, 3]])
    logits = torch.zeros(1, 4, V)
    logits[0, 1, 2] = 50.0   # predicts token 2 at position 2 perfectly
    logits[0, 2, 0] = 50.0   # predicts 0 at position 3 (wrong: token 3 = PAD) but masked out
    mask = torch.tensor([[False, False, True, False]])
    assert ntp.sequence_loss(logits, tokens, mask).item() < 1e-6
    mask[0, 3] = True
    assert ntp.sequence_loss(logits, tokens, mask).item() > 10


def test_lr_schedule():
    assert ntp.lr_at(0, 100, 1.0, 10, 0.0) == pytest.approx(0.1)
    assert ntp.lr_at(50, 100, 1.0, 10, 0.2) == 1.0
    assert ntp.lr_at(90, 100, 1.0, 0, 0.2) == pytest.approx(0.5)
    assert ntp.lr_at(99, 100, 1.0, 0, 0.2) == pytest.approx(0.05)


def test_same_seed_same_numbers():
    t = ParityTask(5, 0.3)
    runs = [ntp.train(tiny(t), t, 15, 16, 1e-3, seed=7, log_every=5, progress=False)
            for _ in range(2)]
    assert runs[0] == runs[1]
    other = ntp.train(tiny(t), t, 15, 16, 1e-3, seed=8, log_every=5, progress=False)
    assert other != runs[0]


def test_resume_equals_uninterrupted(tmp_path):
    t = ParityTask(5, 0.3)
    def ev(m, step):
        return evaluate(m, t, 32, modes=("greedy",))
    kw = dict(seed=1, log_every=5, eval_every=5, eval_fn=ev, checkpoint_every=10, progress=False)

    class Interrupt(Exception):
        pass

    def flaky(m, step):
        if step == 25 and not flaky.fired:
            flaky.fired = True
            raise Interrupt
        return ev(m, step)
    flaky.fired = False
    kw2 = dict(kw, eval_fn=flaky)
    ref_model = tiny(t)
    ref = ntp.train(ref_model, t, 40, 16, 1e-3, checkpoint=tmp_path / "a.pt", **kw)
    with pytest.raises(Interrupt):
        ntp.train(tiny(t), t, 40, 16, 1e-3, checkpoint=tmp_path / "b.pt", **kw2)
    resumed_model = tiny(t)
    resumed = ntp.train(resumed_model, t, 40, 16, 1e-3, checkpoint=tmp_path / "b.pt", **kw2)
    assert resumed == ref
    for a, b in zip(ref_model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("change, field", [
    (dict(steps=30), "steps"), (dict(batch_size=8), "batch_size"), (dict(lr=2e-3), "lr"),
    (dict(seed=2), "seed"), (dict(warmup_steps=5), "warmup_steps"),
    (dict(decay_frac=0.2), "decay_frac"), (dict(weight_decay=0.1), "weight_decay"),
    (dict(betas=(0.9, 0.99)), "betas"), (dict(grad_clip=None), "grad_clip"),
    (dict(optimizer="sgd"), "optimizer"), (dict(task=ParityTask(5, 0.5)), "task"),
    (dict(init_seed=9), "start_weights"), (dict(n_embd=48), "model.config.n_embd"),
])
def test_ntp_checkpoint_of_another_run_is_refused(tmp_path, change, field):
    t = ParityTask(5, 0.3)
    kw = dict(steps=20, batch_size=16, lr=1e-3, seed=1, checkpoint_every=10, progress=False)
    ntp.train(tiny(t), t, checkpoint=tmp_path / "c.pt", **kw)
    task, init_seed = change.pop("task", t), change.pop("init_seed", 0)
    model = tiny(task, init_seed, **change) if "n_embd" in change else tiny(task, init_seed)
    kw.update({k: v for k, v in change.items() if k != "n_embd"})
    with pytest.raises(ValueError, match=rf"belongs to another run \({field}: [^;]* there"):
        ntp.train(model, task, checkpoint=tmp_path / "c.pt", **kw)


def test_a_checkpoint_of_the_other_precision_is_refused(tmp_path, monkeypatch):
    """precision="auto" resolves per machine and $NTPRL_PRECISION: the precision a run
    computed in is part of its identity, so a resumed run never mixes the two."""
    t = ParityTask(5, 0.3)
    kw = dict(steps=10, batch_size=16, lr=1e-3, checkpoint_every=5, progress=False)
    monkeypatch.setenv("NTPRL_PRECISION", "fp32")
    ntp.train(tiny(t), t, checkpoint=tmp_path / "c.pt", **kw)
    ntp.train(tiny(t), t, checkpoint=tmp_path / "c.pt", **kw)  # the same run: read back
    monkeypatch.setenv("NTPRL_PRECISION", "bf16")
    with pytest.raises(ValueError, match=r"precision_used: 'fp32' there, 'bf16' here"):
        ntp.train(tiny(t), t, checkpoint=tmp_path / "c.pt", **kw)
    monkeypatch.setenv("NTPRL_PRECISION", "half")  # a bad value is named before any work
    with pytest.raises(ValueError, match="NTPRL_PRECISION='half'"):
        ntp.train(tiny(t), t, checkpoint=tmp_path / "d.pt", **kw)
    assert not (tmp_path / "d.pt").exists()


def test_unreadable_checkpoint_is_named(tmp_path):
    t = ParityTask(5, 0.3)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint=.*bad.pt.* cannot be read"):
        ntp.train(tiny(t), t, 5, 8, 1e-3, checkpoint=bad, progress=False)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    t = ParityTask(5, 0.3)
    ntp.train(tiny(t), t, 5, 16, 1e-3, checkpoint=tmp_path / "c.pt", progress=False)
    with pytest.raises(ValueError, match="checkpoint"):
        ntp.train(tiny(t), t, 5, 16, 2e-3, checkpoint=tmp_path / "c.pt", progress=False)


def test_stop_when_ends_early():
    t = ParityTask(4, 1.0)
    hist = ntp.train(tiny(t), t, 100, 8, 1e-3, eval_every=10, log_every=10,
                     eval_fn=lambda m, s: {"score": s}, stop_when=lambda r: r["score"] >= 30,
                     progress=False)
    assert hist[-1]["step"] == 30


@pytest.mark.parametrize("kwargs, field", [
    (dict(steps=0), "steps"),
    (dict(batch_size=-1), "batch_size"),
    (dict(lr=0.0), "lr"),
    (dict(decay_frac=1.5), "decay_frac"),
    (dict(eval_every=5), "eval_fn"),
])
def test_bad_training_inputs(kwargs, field):
    t = ParityTask(4, 0.5)
    args = dict(steps=5, batch_size=4, lr=1e-3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        ntp.train(tiny(t), t, progress=False, **args)


def test_context_shorter_than_sequence_is_refused():
    t = ParityTask(8, 0.5)
    m = GPT(GPTConfig(vocab_size=4, block_size=12, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match="block_size"):
        ntp.train(m, t, 5, 4, 1e-3, progress=False)


def test_evaluate_on_a_calibrated_oracle(oracle):
    d, p = 6, 0.2
    t = ParityTask(d, p)
    r = evaluate(oracle(d, p), t, 4000, seed=0)
    assert r["greedy_acc"] == pytest.approx(0.5, abs=0.03)      # greedy goes short: chance
    assert r["greedy_long_frac"] == 0 and r["greedy_len_median"] == 1
    assert r["sampled_long_frac"] == pytest.approx(p, abs=0.02)   # calibrated
    assert r["sampled_acc"] == pytest.approx((1 + p) / 2, abs=0.02)
    assert sum(r["sampled_len_hist"]) == 4000 and len(r["sampled_len_hist"]) == d + 2
    r = evaluate(oracle(d, 0.5), t, 500, seed=0)
    assert r["greedy_acc"] == 1.0 and r["greedy_len_mean"] == d and r["greedy_truncated_frac"] == 0


def test_evaluate_both_modes_share_the_prompt_pass_without_changing_results(monkeypatch):
    # a random GPT whose answers vary in length; three chunks of prompts (batch_size=40)
    m = GPT(GPTConfig(vocab_size=4, block_size=14, n_layer=1, n_head=2, n_embd=32))
    with torch.no_grad():
        m.head.weight[EOS] += 0.3 * m.head.weight[0]
    t = ParityTask(6, 0.3)
    calls = []
    real = ntprl.metrics.encode
    monkeypatch.setattr(ntprl.metrics, "encode", lambda *a: calls.append(1) or real(*a))
    both = evaluate(m, t, 100, seed=3, batch_size=40)
    assert len(calls) == 3  # one prompt pass per chunk, for both decodings
    alone = {**evaluate(m, t, 100, seed=3, batch_size=40, modes=("greedy",)),
             **evaluate(m, t, 100, seed=3, batch_size=40, modes=("sampled",))}
    assert len(calls) == 3  # a single mode encodes inside generate
    assert both == alone


def test_evaluate_bad_inputs(oracle):
    t = ParityTask(6, 0.2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        evaluate(oracle(6, 0.2), t, 10, max_new_tokens=6)
    with pytest.raises(ValueError, match="n="):
        evaluate(oracle(6, 0.2), t, 0)
    with pytest.raises(ValueError, match="modes"):
        evaluate(oracle(6, 0.2), t, 10, modes=("beam",))
    with pytest.raises(ValueError, match="each at most once"):
        evaluate(oracle(6, 0.2), t, 10, modes=("sampled", "sampled"))


def test_scales(monkeypatch):
    assert set(ntprl.scale.NAMES) == {"smoke", "fast", "gpu", "paper"}
    monkeypatch.setenv("NTPRL_SCALE", "smoke")
    assert ntprl.scale.get().name == "smoke" and not ntprl.scale.get().checks_claims
    assert ntprl.scale.get("paper").checks_claims
    monkeypatch.setenv("NTPRL_SCALE", "huge")
    with pytest.raises(ValueError, match="scale='huge'"):
        ntprl.scale.get()
    monkeypatch.delenv("NTPRL_SCALE")
    assert ntprl.scale.get().name == ("gpu" if torch.cuda.is_available() else "fast")


def test_parity_hardness_smoke_is_json():
    r = parity_hardness(TINY, progress=False)
    json.dumps(r)
    assert [x["d"] for x in r["short"]] == list(TINY.hardness_ds_short)
    for x in r["short"] + r["chain"]:
        assert x["curve"][0][0] == 0 and (x["steps"] is None) == (x["final_acc"] < r["target"])


def test_checks_verdicts(capsys):
    def ref(x):
        return x * 2
    assert checks.check(lambda x: x + x, ref, range(5))
    assert "✅" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="input \\(3,\\)"):
        checks.check(lambda x: x * 2 if x != 3 else 0, ref, range(5))
    def stub(x):
        raise NotImplementedError
    with pytest.raises(AssertionError, match="not written yet"):
        checks.check(stub, ref, range(2))
    checks.check_value(0.5, 0.5)
    with pytest.raises(AssertionError):
        checks.check_value(0.4, 0.5, tol=0.01)


@pytest.mark.parametrize("name", ["threshold", "more_data", "rl_post_training", "rounds_vs_p",
                                  "leap2", "temperature_controls", "rl_start_sweep",
                                  "architectures", "linear_theory", "mult_hardness",
                                  "mult_threshold", "mult_rl"])
def test_every_experiment_runs_at_smoke_and_is_json(name):
    from ntprl import experiments
    r = experiments.run(name, TINY, progress=False)
    json.dumps(r, allow_nan=False)
    assert r["experiment"] == name and r["scale"] == "smoke"


def test_architectures_runs_each_family_at_two_depths():
    from ntprl import experiments
    r = experiments.architectures(TINY, progress=False)
    grid = [(run["arch"], run["n_layer"]) for run in r["runs"]]
    assert grid == [("gpt2", 1), ("mistral", 1), ("gpt2", 2), ("mistral", 2)]
    assert all(run["history"][-1]["step"] == TINY.rl_steps for run in r["runs"])
    assert len({run["params"] for run in r["runs"]}) == 4  # four different models


def test_unknown_experiment():
    from ntprl import experiments
    with pytest.raises(ValueError, match="experiment='nope'"):
        experiments.run("nope", TINY)


def test_weights_digest_reads_every_kind_of_tensor():
    from ntprl.train.common import weights_digest
    state = {"scalar": torch.tensor(1.5), "bf16": torch.ones(2, 3, dtype=torch.bfloat16),
             "mask": torch.tensor([True, False]), "empty": torch.zeros(0),
             "transposed": torch.arange(6.0).view(2, 3).t()}
    before = weights_digest(state)
    assert weights_digest(dict(state)) == before
    state["scalar"] = torch.tensor(1.25)
    assert weights_digest(state) != before


# ---- NTP by length: no compute on PAD, the same loss ---------------------------------------
def test_ntp_loss_by_length_equals_the_padded_loss_and_its_gradient():
    from ntprl.tasks import MultiplicationTask

    for task in (ParityTask(12, 0.3), ParityTask(9, 0.5, "leap2"), MultiplicationTask(2, 0.5)):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=task.vocab_size, block_size=task.seq_len, n_layer=2,
                              n_head=2, n_embd=32))
        tokens = task.sample(64, torch.Generator().manual_seed(1))
        mask = ntp.response_mask(tokens, task.prompt_len, task.PAD)
        grads = []
        for by_length in (False, True):
            model.zero_grad()
            loss = ntp.ntp_loss(model, tokens, mask, task.PAD, by_length=by_length,
                                precision="fp32")  # bf16 ("auto" on some CPUs) rounds more
            loss.backward()
            grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
        (a, ga), (b, gb) = grads
        assert a == pytest.approx(b, rel=1e-5), task
        for x, y in zip(ga, gb):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_length_groups_cover_every_row_once_and_trim_only_pad():
    tokens = torch.full((10, 8), 3)
    for i in range(10):
        tokens[i, : 2 + (i % 6)] = 1  # 6 distinct lengths: 2..7
    for max_groups in (2, 4, 6):
        groups = ntp.length_groups(tokens, pad_id=3, max_groups=max_groups)
        assert len(groups) <= max_groups
        rows = torch.cat([r for r, _ in groups])
        assert sorted(rows.tolist()) == list(range(10))
        for r, n in groups:
            assert (tokens[r, n:] == 3).all() and (tokens[r, n - 1] != 3).any()


def test_ntp_by_length_trains_like_the_padded_batch():
    task = ParityTask(8, 0.3)
    weights = []
    for by_length in ("yes", "no"):
        torch.manual_seed(0)
        m = GPT(GPTConfig(vocab_size=4, block_size=task.seq_len, n_layer=1, n_head=2, n_embd=32))
        ntp.train(m, task, 20, 32, 1e-3, by_length=by_length, precision="fp32", progress=False)
        weights.append(m.state_dict())
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="by_length="):
        ntp.train(m, task, 2, 4, 1e-3, by_length=True, progress=False)


def test_progress_bars_follow_ntprl_progress(monkeypatch, capsys):
    from ntprl import progress

    monkeypatch.setenv("NTPRL_PROGRESS", "off")
    assert progress.bar(range(3)).disable
    task = ParityTask(4, 0.5)
    m = GPT(GPTConfig(vocab_size=4, block_size=task.seq_len, n_layer=1, n_head=2, n_embd=16))
    ntp.train(m, task, 3, 4, 1e-3, progress=True)
    assert "NTP" not in capsys.readouterr().err
    monkeypatch.setenv("NTPRL_PROGRESS", "auto")
    assert not progress.bar(range(3)).disable
    monkeypatch.setenv("NTPRL_PROGRESS", "text")
    with pytest.raises(ValueError, match="NTPRL_PROGRESS='text'"):
        progress.bar(range(3))


def test_chain_probe_reads_a_learned_chain_and_writes_its_record(tmp_path):
    """tools/chain_probe.py: near chance before training; on chains alone (p_cot = 1) the
    teacher-forced reading reaches every token; the JSON it writes holds the history."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "tools" / "chain_probe.py"
    spec = importlib.util.spec_from_file_location("chain_probe", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    torch.manual_seed(0)
    fresh = GPT(GPTConfig(vocab_size=4, block_size=14, n_layer=1, n_head=2, n_embd=32))
    assert probe.chain_reading(fresh, 6)["chain_exact"] < 0.2
    out = tmp_path / "probe.json"
    probe.main(["--d", "6", "--p-cot", "1.0", "--layers", "2", "--width", "64", "--heads", "2",
                "--steps", "300", "--batch", "64", "--eval-every", "100", "--out", str(out)])
    rec = json.loads(out.read_text())
    assert [r["step"] for r in rec["history"]] == [0, 100, 200, 300]
    assert rec["history"][-1]["chain_exact"] >= 0.95, rec["history"][-1]
    assert rec["settings"]["d"] == 6 and rec["device"]


def test_rounds_vs_p_samples_enough_long_answers_from_a_rare_p_cot():
    from ntprl import experiments, scale as scales
    from ntprl.experiments.rl_post_training import star_samples_for

    gpu = scales.get("gpu")
    assert star_samples_for(gpu, 0.02) == 10_000 and star_samples_for(gpu, 0.2) == 2048
    assert star_samples_for(scales.get("paper"), 0.01) == 40_000
    assert star_samples_for(scales.get("fast"), 0.02) == scales.get("fast").star_samples
    tiny = TINY.with_(rounds_min_long=8)  # 8 / 0.1 = 80 samples a round instead of 32
    r = experiments.run("rounds_vs_p", tiny, progress=False)
    got = {run["p_cot"]: run["samples_per_round"] for run in r["runs"]}
    assert got == {0.1: 80, 0.2: max(tiny.star_samples, 40)}, got
    star = r["runs"][0]["history"][1]
    assert star["len_hist"] and sum(star["len_hist"]) == 80, star


def test_paper_headline_runs_only_the_parts_asked_for(tmp_path, capsys):
    """tools/paper_headline.py --parts: the results file holds those parts only (in the
    tool's order) and its note names them; an unknown part is refused, naming the choices."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "tools" / "paper_headline.py"
    spec = importlib.util.spec_from_file_location("paper_headline", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--scale", "smoke", "--out", str(tmp_path), "--budget-s", "600",
               "--parts", "grpo-early", "ntp"])
    rec = json.loads((tmp_path / "rl_post_training-smoke-seed0.json").read_text())
    assert list(rec["result"]["runs"]) == ["ntp", "grpo-early"]
    assert rec["note"].endswith(", only the parts named by --parts: parts in the order run: "
                                "ntp, grpo-early; complete.")
    with pytest.raises(SystemExit):
        tool.main(["--scale", "smoke", "--out", str(tmp_path), "--parts", "grpo-late"])
    assert "no part grpo-late; choose among grpo-e2e ntp" in capsys.readouterr().err

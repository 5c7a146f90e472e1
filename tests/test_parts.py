"""run_parts: an experiment's independent parts in worker processes, the same results as in
this process, finished parts read back, errors raised here."""

import dataclasses
import os
from functools import partial

import pytest
import torch

import ntprl.scale
from ntprl.experiments import common
from ntprl.experiments.common import Part, part_identity, run_parts, steps_to_learn
from ntprl.experiments.mixtures import train_and_measure
from ntprl.tasks import ParityTask

TINY = ntprl.scale.get("smoke")


def hardness_part(d, p):
    return Part(f"h-d{d}-p{p}", partial(steps_to_learn, ParityTask(d, p), TINY, 0, progress=False),
                part_identity(TINY, 0, part="h", d=d, p_cot=p))


def test_workers_equal_this_process_with_as_many_threads():
    parts = [hardness_part(4, 1.0), hardness_part(4, 0.0), hardness_part(6, 1.0)]
    parallel = run_parts(parts, n_workers=2, progress=False)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(common.worker_threads(2))  # each worker's share of the cores
        here = [part.fn(checkpoint=None) for part in parts]
    finally:
        torch.set_num_threads(old)
    assert [r["d"] for r in parallel] == [4, 4, 6]  # in the order of the parts
    assert parallel == here
    # a part left alone (a resumed run's last) computes with the same threads, not all of them
    assert run_parts(parts[2:], n_workers=2, progress=False) == here[2:]


def test_workers_train_in_the_parents_precision(monkeypatch):
    """The pool outlives a call; a part computes in the precision the parent has when it is
    sent ($NTPRL_PRECISION set after the workers started included), and the precision is in
    every part's identity."""
    def part(key):
        return Part(key, partial(train_and_measure, ParityTask(4, 0.5), TINY, 5, 0,
                                 progress=False), part_identity(TINY, 0, part=key))

    run_parts([part("warm")], n_workers=2, progress=False)  # the workers start
    for precision in ("fp32", "bf16"):
        monkeypatch.setenv("NTPRL_PRECISION", precision)
        assert part_identity(TINY, 0)["precision"] == precision
        got = run_parts([part(precision)], n_workers=2, progress=False)[0]
        old = torch.get_num_threads()
        try:
            torch.set_num_threads(common.worker_threads(2))
            assert got == part(precision).fn(checkpoint=None)
        finally:
            torch.set_num_threads(old)


def test_finished_parts_are_read_back_not_recomputed(tmp_path):
    parts = [hardness_part(4, 1.0), hardness_part(4, 0.0)]
    first = run_parts(parts, tmp_path, n_workers=2, progress=False)
    assert sorted(f.name for f in tmp_path.glob("*.json")) == ["h-d4-p0.0.json", "h-d4-p1.0.json"]
    # a part whose fn would fail is never called when its result is in the workdir
    broken = [Part(p.key, partial(steps_to_learn, ParityTask(4, 1.0), TINY, 0, max_steps=-1),
                   p.identity) for p in parts]
    assert run_parts(broken, tmp_path, n_workers=2, progress=False) == first


def test_an_error_in_a_part_is_raised_here():
    parts = [hardness_part(4, 1.0),
             Part("bad", partial(steps_to_learn, ParityTask(4, 1.0), TINY, 0, max_steps=-1), {})]
    with pytest.raises(ValueError, match="steps=-1"):
        run_parts(parts, n_workers=2, progress=False)
    assert run_parts(parts[:1], n_workers=2, progress=False)[0]["d"] == 4  # a new pool works


def test_bad_parts_and_settings_are_refused(monkeypatch):
    part = hardness_part(4, 1.0)
    with pytest.raises(ValueError, match="n_workers=0"):
        run_parts([part], n_workers=0)
    assert run_parts([part, part], n_workers=1, progress=False) == 2 * run_parts(
        [part], n_workers=1, progress=False)  # the same part twice: computed once
    other = Part(part.key, part.fn, {"other": 1})
    with pytest.raises(ValueError, match="different identities"):
        run_parts([part, other], n_workers=1)
    with pytest.raises(ValueError, match="Part objects"):
        run_parts([part.fn], n_workers=1)
    unpicklable = Part("lambda", lambda checkpoint: {}, {})
    with pytest.raises(ValueError, match="'lambda' is not allowed: a worker process cannot"):
        run_parts([unpicklable, part], n_workers=2, progress=False)
    with pytest.raises(ValueError, match="'lambda' is not allowed"):  # alone too
        run_parts([unpicklable], n_workers=2, progress=False)
    assert run_parts([unpicklable, part], n_workers=1, progress=False)[0] == {}
    monkeypatch.setenv(ntprl.scale.WORKERS_VAR, "two")
    with pytest.raises(ValueError, match="NTPRL_WORKERS='two'"):
        ntprl.scale.workers()
    monkeypatch.setenv(ntprl.scale.WORKERS_VAR, "3")
    assert ntprl.scale.workers() == 3
    monkeypatch.setenv(ntprl.scale.WORKERS_VAR, "auto")
    on_cpu = ntprl.scale.device().type == "cpu"
    assert ntprl.scale.workers() == (ntprl.scale.cpu_cores() if on_cpu else 1)


@pytest.mark.parametrize("files, expected", [
    ({}, None),                                                    # no cgroup files
    ({"cpu.max": "max 100000\n"}, None),                           # v2, no quota
    ({"cpu.max": "150000 100000\n"}, 1.5),                         # v2, 1.5 cores
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "200000\n",
      "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({"cpu.max": "garbage\n"}, None),                              # unreadable: no limit
])
def test_cgroup_cpu_limit(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert ntprl.scale.cgroup_cpu_limit(str(tmp_path)) == expected


def test_cpu_cores_follows_the_cgroup_quota(monkeypatch):
    try:
        mask = len(os.sched_getaffinity(0))
    except AttributeError:
        mask = os.cpu_count() or 1
    monkeypatch.setattr(ntprl.scale, "cgroup_cpu_limit", lambda: 0.5)
    assert ntprl.scale.cpu_cores() == 1  # a quota below a core still leaves one
    monkeypatch.setattr(ntprl.scale, "cgroup_cpu_limit", lambda: mask + 10.0)
    assert ntprl.scale.cpu_cores() == mask  # a quota above the mask changes nothing
    monkeypatch.setattr(ntprl.scale, "cgroup_cpu_limit", lambda: None)
    assert ntprl.scale.cpu_cores() == mask


SCRIPT = """
from functools import partial
import ntprl.scale
from ntprl.experiments import Part, run_parts, steps_to_learn
from ntprl.tasks import ParityTask

TINY = ntprl.scale.get("smoke")
parts = [Part(f"d{d}", partial(steps_to_learn, ParityTask(d, 1.0), TINY, 0, progress=False), {})
         for d in (4, 5)]
print([r["d"] for r in run_parts(parts, n_workers=2, progress=False)])


def mine(checkpoint=None):
    return {}


class MyTask(ParityTask):
    pass


for fn in (mine, partial(steps_to_learn, MyTask(4, 1.0), TINY, 0)):
    try:
        run_parts([Part("a", fn, {}), Part("b", mine, {})], n_workers=2, progress=False)
    except ValueError as e:
        print(e)
"""


def test_a_script_without_a_main_guard_runs_parts(tmp_path):
    """Workers never import the script that started them: no main guard needed, and a part
    function defined in the script is refused with a message, not a hang."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "[4, 5]"
    # a function of the script, and a class of the script inside a partial's arguments
    for line, name in zip(lines[1:], ("'mine'", "an instance of 'MyTask'")):
        assert "'a' is not allowed" in line and f"{name} is defined in __main__" in line


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="sends SIGINT to a process group")
def test_ctrl_c_stops_idle_workers_without_their_tracebacks():
    """Ctrl-C in a terminal, or a Jupyter kernel's shutdown, sends SIGINT to the whole process
    group, workers included, which wait idle for the next parts after a chapter's experiment:
    they leave without a traceback each, and the parent stops them."""
    import signal
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import signal, time
        # as in a terminal: a shell running this in the background (CI) ignores SIGINT
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from functools import partial
        import ntprl.scale
        from ntprl.experiments.common import Part, part_identity, run_parts, steps_to_learn
        from ntprl.tasks import ParityTask
        tiny = ntprl.scale.get("smoke")
        part = Part("h", partial(steps_to_learn, ParityTask(4, 1.0), tiny, 0, progress=False),
                    part_identity(tiny, 0, part="h"))
        run_parts([part], n_workers=2, progress=False)
        print("ready", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0  # the parent was interrupted
    assert "SpawnProcess" not in err and err.count("KeyboardInterrupt") == 1, err


def test_a_reworded_scale_description_keeps_cached_parts_valid():
    reworded = dataclasses.replace(TINY, description="other words, the same sizes")
    assert part_identity(reworded, 0) == part_identity(TINY, 0)
    assert part_identity(TINY.with_(d=TINY.d + 1), 0) != part_identity(TINY, 0)


def test_a_field_added_later_keeps_earlier_runs_the_same_run():
    """Scale.arch and GPTConfig's norm and mlp came after runs were stored and parts cached:
    at the value those runs had they stay out of every identity and results file's config,
    so the earlier runs' caches and files still answer for them; another value is another
    run."""
    from ntprl.models import ARCHITECTURES, GPT, GPTConfig
    from ntprl.train.common import model_identity

    fast = ntprl.scale.get("fast")
    before = {k: v for k, v in dataclasses.asdict(fast).items() if k != "arch"}
    assert fast.config() == before and "arch" not in fast.settings()
    assert ntprl.scale.comparable({**before, "arch": "gpt2"}) == fast.settings()
    mistral = fast.with_(arch="mistral")
    assert mistral.config()["arch"] == "mistral"
    assert part_identity(mistral, 0) != part_identity(fast, 0)
    sizes = dict(vocab_size=4, block_size=8, n_layer=1, n_head=2, n_embd=8)
    old_fields = {f.name for f in dataclasses.fields(GPTConfig)} - {"norm", "mlp"}
    assert set(model_identity(GPT(GPTConfig(**sizes)))["config"]) == old_fields
    got = model_identity(GPT(GPTConfig(**sizes, **ARCHITECTURES["mistral"])))["config"]
    assert (got["norm"], got["mlp"]) == ("rms", "swiglu")


def test_a_finished_part_leaves_no_checkpoint_to_answer_for_a_recomputed_one(tmp_path):
    from ntprl.experiments.common import resumable

    def fn(checkpoint):  # a trainer that checkpoints, finishes, and leaves its file behind
        checkpoint.write_text("finished trainer state")
        return {"value": 1}

    assert resumable(tmp_path, "part", fn, {"a": 1}) == {"value": 1}
    assert (tmp_path / "part.json").exists() and not (tmp_path / "part.pt").exists()
    calls = []
    assert resumable(tmp_path, "part", lambda ck: calls.append(ck), {"a": 1}) == {"value": 1}
    assert not calls  # read back, not computed



def test_an_unfinished_part_resumes_only_under_its_own_identity(tmp_path):
    """A part killed mid-run leaves its trainer checkpoint; computed again with settings the
    trainer's identity does not hold (e.g. eval_n), it is refused, not silently resumed."""
    from ntprl.experiments.common import resumable

    def killed(checkpoint):  # a trainer that checkpoints, then dies
        checkpoint.write_text("half-trained state")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        resumable(tmp_path, "part", killed, {"eval_n": 100})
    with pytest.raises(ValueError, match=r"part\.pt belongs to another run \(eval_n"):
        resumable(tmp_path, "part", lambda ck: {"value": 1}, {"eval_n": 200})
    seen = []
    assert resumable(tmp_path, "part", lambda ck: seen.append(ck.read_text()) or {"value": 2},
                     {"eval_n": 100}) == {"value": 2}
    assert seen == ["half-trained state"]  # the same identity resumes from the checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.json"]


def test_a_reworded_description_keeps_the_pretrained_checkpoint(tmp_path):
    """pretrain's cached NTP weights are named by the scale's settings, not its prose: a
    reworded preset description (as a library update may bring) reads them back."""
    from ntprl.experiments.common import pretrain
    task = ParityTask(TINY.d, 0.25)
    pretrain(task, TINY, 4, 0, workdir=tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    pretrain(task, dataclasses.replace(TINY, description="other words"), 4, 0, workdir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before

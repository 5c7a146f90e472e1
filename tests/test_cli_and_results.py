import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ntprl import results

CLI = [sys.executable, "-m", "ntprl"]


def cli(*args, **kw):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, **kw)


def test_list():
    out = cli("list")
    assert out.returncode == 0
    for name in ("parity_hardness", "threshold", "more_data"):
        assert name in out.stdout
    assert "smoke" in out.stdout


@pytest.mark.parametrize("args, word", [
    (("run", "nope", "--scale", "smoke"), "experiment='nope'"),
    (("run", "threshold", "--scale", "huge"), "scale='huge'"),
])
def test_bad_names_give_a_clear_error(args, word, tmp_path):
    out = cli(*args, "--out", str(tmp_path / "x.json"))
    assert out.returncode != 0 and word in out.stderr and "Traceback" not in out.stderr


def test_run_at_smoke_writes_a_results_file(tmp_path):
    path = tmp_path / "more.json"
    out = cli("run", "more_data", "--scale", "smoke", "--out", str(path), "--no-progress")
    assert out.returncode == 0, out.stderr
    rec = results.load(path)
    assert rec["experiment"] == "more_data" and rec["scale"] == "smoke" and rec["seed"] == 0
    assert rec["config"]["name"] == "smoke" and rec["device"] and rec["ntprl_version"]
    hist = rec["result"]["history"]
    assert [h["step"] for h in hist if "greedy_acc" in h] == [0, 10, 20]
    assert not (tmp_path / "more.json.work").exists()


def test_run_with_set_changes_the_scale_and_names_the_variant(tmp_path):
    out = cli("run", "more_data", "--scale", "smoke", "--set", "more_data_steps=10",
              "--name", "more_data_short", "--set", "more_data_d=4", "--no-progress",
              cwd=tmp_path)  # a repeated --set adds to the first
    assert out.returncode == 0, out.stderr
    rec = results.load(tmp_path / "results" / "more_data_short-smoke-seed0.json")
    assert rec["experiment"] == "more_data_short" and rec["scale"] == "smoke"
    assert rec["config"]["more_data_steps"] == 10 and rec["config"]["more_data_d"] == 4
    assert rec["result"]["d"] == 4 and rec["result"]["steps"] == 10
    assert "'more_data_steps': 10" in rec["note"] and "smoke preset" in rec["note"]
    for bad, word in ((["--set", "more_data_stepz=10", "--name", "x"],
                       "did you mean more_data_steps"),
                      (["--set", "more_data_steps=ten", "--name", "x"],
                       "more_data_steps takes an integer"),
                      (["--set", "more_data_steps=10"], "--set needs --name"),
                      (["--name", "a/b"], "--name 'a/b'")):
        out = cli("run", "more_data", "--scale", "smoke", *bad, cwd=tmp_path)
        assert out.returncode == 2 and word in out.stderr and "Traceback" not in out.stderr
    # the same name with other settings is not taken for the finished run
    out = cli("run", "more_data", "--scale", "smoke", "--set", "more_data_steps=20", "--name",
              "more_data_short", cwd=tmp_path)
    assert out.returncode == 2 and "other scale settings" in out.stderr, out.stderr
    # ... nor in another precision
    other = "fp32" if rec["precision"] == "bf16" else "bf16"
    out = cli("run", "more_data", "--scale", "smoke", "--set", "more_data_steps=10",
              "--name", "more_data_short", "--set", "more_data_d=4", cwd=tmp_path,
              env={**os.environ, "NTPRL_PRECISION": other})
    assert out.returncode == 2 and f"not {other}" in out.stderr, out.stderr
    # ... nor as the run of another experiment under the same name
    assert rec["source"] == "more_data"
    out = cli("run", "threshold", "--scale", "smoke", "--set", "more_data_steps=10",
              "--name", "more_data_short", "--set", "more_data_d=4", cwd=tmp_path)
    assert out.returncode == 2 and "not of threshold" in out.stderr, out.stderr


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads worker processes from /proc")
def test_workers_of_a_killed_run_exit_with_it(tmp_path, monkeypatch):
    """kill -9 of a run leaves no worker computing parts that nobody will read."""
    monkeypatch.setenv("NTPRL_WORKERS", "2")
    proc = subprocess.Popen(CLI + ["run", "parity_hardness", "--scale", "fast", "--out",
                                   str(tmp_path / "h.json"), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children():
        found = []
        for stat in os.listdir("/proc"):
            try:
                with open(f"/proc/{stat}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(proc.pid) and fields[0] != "Z":
                found.append(int(stat))
        return found

    deadline = time.time() + 60
    while len(children()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    workers = children()
    assert len(workers) >= 2, "the run started no worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(os.path.exists(f"/proc/{w}") for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if os.path.exists(f"/proc/{w}")]
    assert not alive, f"workers {alive} outlived their killed run"


def test_parse_overrides_reads_each_field_as_its_type():
    from ntprl import scale as scales

    smoke = scales.get("smoke")
    got = scales.parse_overrides(smoke, ["rl_d=50", "lr=3e-4", "rounds_from_scratch=true",
                                         "leap2_p_grid=0.1,0.2", "hardness_ds_chain=4,8",
                                         "arch=mistral"])
    assert got == {"rl_d": 50, "lr": 3e-4, "rounds_from_scratch": True,
                   "leap2_p_grid": (0.1, 0.2), "hardness_ds_chain": (4, 8), "arch": "mistral"}
    assert smoke.with_(**got).leap2_p_grid == (0.1, 0.2)
    for bad, word in (("name=x", "'name=x'"), ("checks_claims=false", "not name, description"),
                      ("rl_d", "'rl_d'"), ("rl_dd=3", "did you mean rl_d"),
                      ("rl_d=5.5", "rl_d takes an integer"), ("lr=nan", "a finite number"),
                      ("rounds_from_scratch=maybe", "rounds_from_scratch takes true or false"),
                      ("leap2_p_grid=0.1,x", "leap2_p_grid takes comma-separated values"),
                      ("leap2_p_grid=", "leap2_p_grid takes comma-separated values")):
        with pytest.raises(ValueError, match=word):
            scales.parse_overrides(smoke, [bad])


def test_killed_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    monkeypatch.setenv("NTPRL_WORKERS", "1")  # one part at a time: kill between two parts
    ref, cut = tmp_path / "ref.json", tmp_path / "cut.json"
    assert cli("run", "threshold", "--scale", "smoke", "--out", str(ref),
               "--no-progress").returncode == 0
    proc = subprocess.Popen(CLI + ["run", "threshold", "--scale", "smoke", "--out", str(cut),
                                   "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = tmp_path / "cut.json.work"
    deadline = time.time() + 120
    while (not list(work.glob("threshold-*.json")) and time.time() < deadline
           and proc.poll() is None):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # after the first grid point, before the second
    proc.wait()
    assert not cut.exists(), "the run finished before it could be killed"
    assert len(list(work.glob("threshold-*.json"))) == 1
    # the same --out with another scale or seed is refused in one line, and mixes nothing
    for other in (["--scale", "fast"], ["--scale", "smoke", "--seed", "1"]):
        out = cli("run", "threshold", *other, "--out", str(cut), "--no-progress")
        assert out.returncode == 2 and "belongs to another run" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert len(list(work.glob("threshold-*.json"))) == 1
    out = cli("run", "threshold", "--scale", "smoke", "--out", str(cut), "--no-progress")
    assert out.returncode == 0, out.stderr
    assert results.load(cut)["result"] == results.load(ref)["result"]
    # a finished file is not returned under another label
    out = cli("run", "threshold", "--scale", "fast", "--out", str(cut))
    assert (out.returncode == 2 and "scale smoke" in out.stderr
            and "not threshold at scale fast" in out.stderr)


def test_a_part_of_another_scale_is_refused(tmp_path):
    """A part file left in a workdir by a run at another scale is never read as this run's."""
    import dataclasses

    from ntprl import experiments, scale as scales
    smoke = scales.get("smoke")
    other = dataclasses.replace(smoke, threshold_steps=smoke.threshold_steps + 1)
    experiments.more_data(smoke, progress=False, workdir=tmp_path)
    with pytest.raises(ValueError, match=r"belongs to another run \(scale.threshold_steps"):
        experiments.more_data(other, progress=False, workdir=tmp_path)


def test_corrupt_results_file_and_part_are_named(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"schema": 1, "experi')
    out = cli("run", "threshold", "--scale", "smoke", "--out", str(bad))
    assert out.returncode == 2 and str(bad) in out.stderr and "Traceback" not in out.stderr
    work = tmp_path / "y.json.work"
    work.mkdir()
    (work / "more_data-s0.json").write_text("{trunc")
    out = cli("run", "more_data", "--scale", "smoke", "--out", str(tmp_path / "y.json"))
    assert (out.returncode == 2 and "more_data-s0.json" in out.stderr
            and "Traceback" not in out.stderr)


def test_results_round_trip_and_atomic_write(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    res = {"runs": [{"p_cot": 0.2, "acc": 0.5}], "note": "ü"}
    results.save(path, res, experiment="threshold", scale="fast", seed=3, config={"d": 16},
                 wall_s=1.5)
    rec = results.load(path)
    assert rec["result"] == res and rec["seed"] == 3 and rec["config"] == {"d": 16}
    assert rec["wall_s"] == 1.5 and rec["schema"] == results.SCHEMA
    # a failure while writing leaves the old file intact and no temporary file behind
    before = path.read_text()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(results.os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        results.save(path, {"other": 1}, experiment="x", scale="fast", seed=0, config={}, wall_s=0)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_load_rejects_other_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not an ntprl results file"):
        results.load(p)


def test_stored_runs_are_valid():
    for p in results.stored_runs():
        rec = results.load(p)
        assert p.name == f"{rec['experiment']}-{rec['scale']}-seed{rec['seed']}.json", p.name
        # runs of a GPU scale, or longer CPU runs than a chapter affords, each naming its machine
        assert rec["scale"] in ("fast", "gpu", "paper") and rec["device"] and rec["wall_s"] > 0


def test_corrupt_results_file_is_named_and_skipped(tmp_path, monkeypatch):
    from ntprl import results

    bad = tmp_path / "threshold-gpu-seed9.json"
    bad.write_text('{"schema": 1, "experi')  # truncated
    with pytest.raises(ValueError, match="threshold-gpu-seed9.json"):
        results.load(bad)
    good = results.save(tmp_path / "threshold-gpu-seed0.json", {"x": 1}, experiment="threshold",
                        scale="gpu", seed=0, config={}, wall_s=1.0)
    monkeypatch.setattr(results, "RUNS_DIR", tmp_path)
    with pytest.warns(UserWarning, match="seed9"):
        run = results.stored("threshold")
    assert run is not None and run["result"] == {"x": 1} and good.exists()

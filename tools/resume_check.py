"""Kill a CLI experiment with SIGKILL after its first part, run it again, and compare it with
an uninterrupted run (used by tools/gpu_check.sh to check resuming on CUDA).

    python tools/resume_check.py FOLDER [EXPERIMENT] [SCALE]

Prints ``resume: ok`` (exit 0) or what differs (exit 1). On a CPU the two results must be
equal; on a GPU, whose kernels are not all deterministic, numbers may differ by ``TOL``.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
    sys.exit(__doc__)
LIB = pathlib.Path(__file__).resolve().parents[1] / "lib"
os.environ["PYTHONPATH"] = os.pathsep.join(  # the CLI runs below import this checkout's ntprl
    [str(LIB)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
folder = pathlib.Path(sys.argv[1])
experiment = sys.argv[2] if len(sys.argv) > 2 else "threshold"
scale = sys.argv[3] if len(sys.argv) > 3 else "smoke"
folder.mkdir(parents=True, exist_ok=True)
cli = [sys.executable, "-m", "ntprl", "run", experiment, "--scale", scale, "--no-progress",
       "--force"]
ref, cut = folder / "ref.json", folder / "cut.json"
subprocess.run(cli + ["--out", str(ref)], check=True)
proc = subprocess.Popen(cli + ["--out", str(cut)])
work = folder / "cut.json.work"
deadline = time.time() + 600
while (not list(work.glob(f"{experiment.split('_')[0]}*.json")) and proc.poll() is None
       and time.time() < deadline):
    time.sleep(0.05)
os.kill(proc.pid, signal.SIGKILL)
proc.wait()
if cut.exists():
    sys.exit("resume: the run finished before it could be killed")
subprocess.run([c for c in cli if c != "--force"] + ["--out", str(cut)], check=True)

sys.path.insert(0, str(LIB))
from ntprl import results  # noqa: E402

TOL = 0.05


def diff(a, b, where="result"):
    """Where ``a`` and ``b`` differ (numbers: by more than TOL), as a list of strings."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in diff(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{where}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= TOL
        return [] if ok else [f"{where}: {a} != {b}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


a, b = results.load(ref)["result"], results.load(cut)["result"]
found = diff(a, b)
print("resume: ok" + (" (exactly equal)" if a == b else f" (numbers within {TOL})")
      if not found else "resume: the resumed run differs: " + "; ".join(found[:5]))
sys.exit(1 if found else 0)

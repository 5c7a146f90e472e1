"""A training run that can kill itself with SIGKILL: the worker of the kill -9 resume tests.

    python tests/resume_worker.py ntp|grpo DEVICE CHECKPOINT OUT [KILL_AT]

Trains a tiny GPT by NTP (or GRPO) with a checkpoint, and saves the history and final weights
to OUT. With KILL_AT, the process sends itself SIGKILL when it reaches that step (no cleanup,
no exception handler runs: the same as `kill -9` from outside).
"""

import os
import signal
import sys

import torch

import ntprl.scale
from ntprl.experiments import make_model
from ntprl.metrics import evaluate
from ntprl.tasks import ParityTask
from ntprl.train import ntp, rl

mode, device, checkpoint, out = sys.argv[1:5]
kill_at = int(sys.argv[5]) if len(sys.argv) > 5 else None
if device == "cuda":
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
task = ParityTask(5, 0.3)
model = make_model(task, ntprl.scale.get("smoke"), 0).to(device)


def eval_fn(m, step):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return evaluate(m, task, 32, modes=("greedy",))


if mode == "ntp":
    hist = ntp.train(model, task, 40, 16, 1e-3, seed=1, log_every=5, eval_every=5,
                     eval_fn=eval_fn, checkpoint=checkpoint, checkpoint_every=10, progress=False)
else:
    hist = rl.train(model, task, "grpo", 6, prompts_per_step=4, samples_per_prompt=4, seed=1,
                    kl_coef=0.1, eval_every=1, eval_fn=eval_fn, checkpoint=checkpoint,
                    checkpoint_every=2, progress=False)
    hist = [{k: v for k, v in r.items() if not k.endswith("_s")} for r in hist]  # wall times
state = {k: v.cpu() for k, v in model.state_dict().items()}
torch.save({"history": hist, "state": state}, out)

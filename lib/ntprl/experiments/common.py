"""What every chapter's experiments share: models, NTP pre-training, measurement, the cache
that makes a long experiment resume, and the worker processes that run its parts side by side.

A *part* of an experiment (one grid point, one RL run) is cached whole in the run's
``workdir`` as ``KEY.json``, together with its identity: the experiment's full
:class:`~ntprl.scale.Scale`, the seed and the part's own settings. Reading a part back compares
that identity with the run's and refuses, naming the differences, to mix runs. An unfinished
part resumes from its trainer checkpoint ``KEY.pt`` (which carries its own identity).

Parts are independent, so :func:`run_parts` computes them in worker processes, as many at once
as ``$NTPRL_WORKERS`` says (default: one per CPU core on a CPU, one on a GPU), each worker
with its share of the cores' threads. The book's models are small: on a 2-core CPU two
one-thread processes train 1.3x as many tokens a second as one process with two threads.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import pathlib
import pickle
import signal
import sys
import threading
import time
import types
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

import torch

from ..metrics import branch_probs, evaluate
from ..models import ARCHITECTURES, GPT, GPTConfig
from ..progress import bar as progress_bar
from ..results import read_json, write_json_atomic
from ..scale import Scale, cpu_cores, device, precision, workers
from ..train import ntp
from ..train.common import (PRECISION_VAR, atomic_save, load_checkpoint, refuse_mismatch,
                            run_identity)

TARGET = 0.95        # greedy accuracy that counts as "learned" in the STaR-rounds experiments
# Seed offsets: each random stream of one experiment seed draws from its own generator
EVAL_SEED = 1        # prompts and samples of every evaluation
BRANCH_SEED = 2      # prompts of the branch-probability probe
EXAMPLE_SEED = 3     # the one prompt whose decoding tree a chapter shows
RECAL_SEED = 7       # the data stream of re-calibration NTP (rounds_vs_p)
MORE_NTP_SEED = 100  # the data stream of "more NTP instead of RL" (rl_post_training)


def make_model(task, scale: Scale, seed: int = 0, **overrides) -> GPT:
    """A GPT sized by ``scale`` (and of its ``arch``) whose context fits ``task``'s longest
    sequence, on the book's device. ``seed`` fixes the initial weights (without touching the
    global random state); ``overrides`` change GPTConfig fields."""
    cfg = dict(vocab_size=task.vocab_size, block_size=task.seq_len, n_layer=scale.n_layer,
               n_head=scale.n_head, n_embd=scale.n_embd, **ARCHITECTURES[scale.arch])
    cfg.update(overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(**cfg))
    return model.to(device())


def load_model(task, scale: Scale, state: dict, seed: int = 0) -> GPT:
    """A GPT of ``scale`` for ``task`` with the weights ``state``."""
    model = make_model(task, scale, seed)
    model.load_state_dict(state)
    return model


def reached_target(record: dict) -> bool:
    """A trainer's ``stop_when``: greedy accuracy at :data:`TARGET` or above."""
    return record["greedy_acc"] >= TARGET


def first_step(history: list[dict], target: float = TARGET, key: str = "greedy_acc") -> int | None:
    """The first step of a training history whose ``key`` reaches ``target`` (None if none)."""
    return next((r["step"] for r in history if r.get(key, float("-inf")) >= target), None)


def measure(model, task, scale: Scale, seed: int = 0) -> dict:
    """:func:`~ntprl.metrics.evaluate` plus :func:`~ntprl.metrics.branch_probs` of a model."""
    out = evaluate(model, task, scale.eval_n, seed=seed + EVAL_SEED)
    out.update(branch_probs(model, task, scale.eval_n, seed=seed + BRANCH_SEED))
    return out


def eval_fn(task, scale: Scale, seed: int, modes=("greedy", "sampled")) -> Callable:
    """The trainers' ``eval_fn``: :func:`~ntprl.metrics.evaluate` on ``scale.eval_n`` prompts
    of the evaluation stream, without the length histograms."""
    def fn(model, step):
        r = evaluate(model, task, scale.eval_n, seed=seed + EVAL_SEED, modes=modes)
        return {k: v for k, v in r.items() if not k.endswith("_hist")}
    return fn


# ---- the resumable-part cache -------------------------------------------------------------------
def part_identity(scale: Scale, seed: int, **settings) -> dict:
    """The identity of one cached part: the whole scale but its prose ``description`` (a
    reworded description leaves a cache valid), the seed, the trainers' precision (``"fp32"``
    or ``"bf16"``, :func:`ntprl.scale.precision`) and the part's settings."""
    return json.loads(json.dumps({"scale": scale.settings(), "seed": seed,
                                  "precision": precision(),
                                  **settings}, default=repr))


def resumable(workdir, key: str, fn: Callable, identity: dict):
    """Run ``fn(checkpoint_path)`` once per ``workdir``: a finished part is read back from
    ``workdir/key.json`` (refused when its ``identity`` differs), an unfinished one resumes
    from ``workdir/key.pt``. Without a ``workdir``, just ``fn(None)``. Once the result is
    written, the trainer checkpoint is removed: the result is the part's record, and a stale
    finished checkpoint must not answer for a part that is computed again (after its ``.json``
    was removed, e.g. for other settings the trainer's identity does not hold). For the same
    reason an unfinished part records its ``identity`` beside its checkpoint
    (``key.pt.identity``), and resuming under another identity is refused: the trainer's own
    identity does not hold what only the evaluations or the stopping rule read (``eval_n``,
    ``hardness_target``)."""
    if workdir is None:
        return fn(None)
    workdir = pathlib.Path(workdir)
    done = workdir / f"{key}.json"
    if done.exists():
        record = read_json(done, "remove it to compute the part again")
        if not isinstance(record, dict) or "identity" not in record or "result" not in record:
            raise ValueError(f"{done} is not a part of an ntprl run: remove it to compute the "
                             "part again")
        refuse_mismatch(str(done), record["identity"], identity)
        return record["result"]
    checkpoint, started = workdir / f"{key}.pt", workdir / f"{key}.pt.identity"
    if checkpoint.exists() and started.exists():
        refuse_mismatch(str(checkpoint), read_json(started, "remove it and the checkpoint"),
                        identity)
    write_json_atomic(identity, started)
    out = fn(checkpoint)
    write_json_atomic({"identity": identity, "result": out}, done)
    checkpoint.unlink(missing_ok=True)
    started.unlink(missing_ok=True)
    return out


# ---- independent parts, side by side in worker processes --------------------------------------
@dataclasses.dataclass(frozen=True)
class Part:
    """One independent part of an experiment, computed by ``fn(checkpoint=...)`` (``checkpoint``:
    the path its trainer may checkpoint to and resume from, or None) and cached whole as
    ``key`` with its ``identity`` (:func:`resumable`). To run in a worker process ``fn`` must
    pickle: a module-level function, or a ``functools.partial`` of one whose arguments
    (tasks, scales, state dicts) pickle too."""
    key: str
    fn: Callable
    identity: dict
    cost: float = 1.0  # a rough relative cost: in worker processes the costliest parts start
                       # first, so that no worker is left running a long one alone at the end


def worker_threads(n_workers: int) -> int:
    """Threads of each part :func:`run_parts` computes with ``n_workers`` workers: an even
    share of the cores, fixed, so that a part's result does not depend on which parts ran
    beside it, nor on how many were left when a run resumed."""
    return max(1, cpu_cores() // n_workers)


def _run(workdir, part: Part):
    """One part through the workdir cache: read back when finished, else computed (resuming
    from its checkpoint) and stored."""
    return resumable(workdir, part.key, lambda ck: part.fn(checkpoint=ck), part.identity)


def _compute(job):
    workdir, part, threads, used = job
    torch.set_num_threads(threads)  # in a worker process: its share of the cores
    os.environ[PRECISION_VAR] = used  # the parent's, as it was when this part was sent
    return _run(workdir, part)


def _exit_with_parent(parent: int):
    """A worker's watchdog: exit as soon as the process that started it is gone (killed with
    SIGKILL, say), instead of computing parts nobody will read."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _init_worker(parent: int):
    """A worker ignores Ctrl-C (SIGINT, which a terminal or a Jupyter kernel's shutdown sends
    to the whole process group): the parent takes the interrupt and stops the workers itself
    (:func:`_close_pool`), without a traceback from every idle worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


class _RefuseMain(pickle.Pickler):
    """Pickles like ``pickle`` but refuses anything defined in ``__main__`` (at any depth of a
    part: a ``partial``'s arguments too), which the workers do not import."""

    def reducer_override(self, obj):
        if getattr(obj, "__module__", None) == "__main__":
            what = (repr(obj.__qualname__) if hasattr(obj, "__qualname__")
                    else f"an instance of {type(obj).__qualname__!r}")
            raise ValueError(f"{what} is defined in __main__, which workers do not import")
        return NotImplemented


def _check_picklable(part: Part):
    try:
        _RefuseMain(io.BytesIO()).dump(part.fn)
    except Exception as e:
        raise ValueError(f"part {part.key!r} is not allowed: a worker process cannot run its fn "
                         f"({type(e).__name__}: {e}). Use functions and classes of importable "
                         "modules (a functools.partial of one is fine), or set n_workers=1"
                         ) from None


_POOL: dict = {}  # the worker processes, kept for the next call: starting them costs seconds


def _pool(n: int) -> ProcessPoolExecutor:
    """``n`` spawned worker processes (fresh interpreters: safe after torch has started its
    threads, and the same on every OS), kept while ``n`` stays the same. A worker that dies
    (out of memory, say) breaks the executor, which then raises ``BrokenProcessPool`` instead
    of waiting for it."""
    if _POOL.get("n") != n:
        _close_pool()
        _POOL.update(n=n, pool=ProcessPoolExecutor(
            n, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
            initargs=(os.getpid(),)))
    return _POOL["pool"]


@atexit.register
def _close_pool():
    """Stop the workers now, parts they are computing included."""
    pool = _POOL.pop("pool", None)
    _POOL.clear()
    if pool is None:
        return
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()  # Python < 3.14 has no public way to stop running workers
    pool.shutdown(wait=False, cancel_futures=True)


def run_parts(parts: list[Part], workdir=None, *, n_workers: int | None = None,
              progress: bool = True, desc: str | None = None) -> list:
    """The results of ``parts``, in their order. Finished parts are read back from
    ``workdir``; the others are computed in this process, in their order, when ``n_workers``
    (default :func:`workers`) is 1, else in ``n_workers`` worker processes, the costliest
    first. Parts with the same key must have the same identity and are computed once.

    Each worker computes with :func:`worker_threads` threads (on 2 cores: two parts side by
    side, one thread each, and a part left alone still with one), and a part's result equals
    the one computed in this process with as many threads (``torch.set_num_threads``). With
    another thread count results differ by float rounding, which a long run can grow, as on
    another machine (``NTPRL_WORKERS=1`` computes every part here, with all threads, as ntprl
    0.2.0 did). The workers never import the script or notebook that started them
    (``__main__``), so a script needs no ``if __name__ == "__main__":`` guard, and a part
    that refers to anything defined there is refused. An error in a part, or a worker that
    dies, is raised here and stops the others."""
    n_workers = workers() if n_workers is None else n_workers
    if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
        raise ValueError(f"n_workers={n_workers!r} is not allowed: it must be a positive integer")
    unique: dict[str, Part] = {}
    for part in parts:
        if not isinstance(part, Part):
            raise ValueError(f"parts must be Part objects, not {type(part).__name__}")
        if unique.setdefault(part.key, part).identity != part.identity:
            raise ValueError(f"parts with key {part.key!r} are not allowed: they have different "
                             "identities (a key names one part)")
    if workdir is not None:  # the same folder for workers started from another directory
        workdir = pathlib.Path(workdir).resolve()
    done: dict = {}
    todo = []
    for key, part in unique.items():
        if workdir is not None and (workdir / f"{key}.json").exists():
            done[key] = _run(workdir, part)
        else:
            todo.append(part)
    bar = progress_bar(total=len(unique), initial=len(done), desc=desc, disable=not progress)
    try:
        if n_workers == 1:
            for part in todo:
                done[part.key] = _run(workdir, part)
                bar.update()
        elif todo:
            for part in todo:
                _check_picklable(part)
            todo.sort(key=lambda part: -part.cost)  # a stable sort: equal costs keep their order
            threads = worker_threads(n_workers)
            main = sys.modules["__main__"]
            sys.modules["__main__"] = types.ModuleType("__main__")  # what a new worker sees
            try:  # (workers start while parts are submitted)
                used = precision()
                futures = {_pool(n_workers).submit(_compute, (workdir, part, threads, used)):
                           part.key for part in todo}
            finally:
                sys.modules["__main__"] = main
            for future in as_completed(futures):
                done[futures[future]] = future.result()  # raises a part's error here
                bar.update()
    except BaseException:  # an error, a dead worker or an interrupt: stop the other parts
        _close_pool()
        raise
    finally:
        bar.close()
    return [done[part.key] for part in parts]


# ---- NTP pre-training, memoised and resumable ----------------------------------------------------
_PRETRAINED: dict = {}  # in-process memo: a chapter's experiments share one NTP checkpoint


def pretrain(task, scale: Scale, steps: int, seed: int = 0, early_step: int | None = None, *,
             batch_size: int | None = None, progress: bool = True,
             workdir=None) -> tuple[dict, dict | None]:
    """NTP from scratch on ``task`` (``scale.warmup_steps`` of linear warm-up, lr decayed over
    the last 20% of steps, ``batch_size``
    sequences a step, default ``scale.batch_size``); returns the final weights and the weights
    at ``early_step`` (or None).

    A run is a pure function of its arguments, so it is memoised in-process and, with a
    ``workdir``, on disk (``pretrain-DIGEST.pt``, with its identity); while it runs it writes
    a checkpoint (``.ckpt.pt``, and the early weights as ``.early.pt``) it resumes from."""
    batch_size = batch_size or scale.batch_size
    used = precision()
    key = (repr(task), scale, steps, seed, early_step, batch_size, used)
    if key in _PRETRAINED:
        return _PRETRAINED[key]
    model = make_model(task, scale, seed)
    identity = run_identity(model, task, stage="pretrain", scale=scale.settings(), steps=steps,
                            seed=seed, early_step=early_step, batch_size=batch_size,
                            precision=used)  # settings(): a reworded description is the same run
    path = ckpt = early_path = None
    if workdir is not None:
        digest = hashlib.sha1(repr(identity).encode()).hexdigest()[:12]
        base = pathlib.Path(workdir) / f"pretrain-{digest}"
        path, ckpt, early_path = (base.with_suffix(s) for s in (".pt", ".ckpt.pt", ".early.pt"))
    done = load_checkpoint(path, identity)
    if done is not None:
        _PRETRAINED[key] = (done["final"], done["early"])
        return _PRETRAINED[key]
    early = {}
    if early_path is not None:
        found = load_checkpoint(early_path, identity)
        if found is not None:
            early["state"] = found["state"]

    def keep_early(m, step):
        if step == early_step and "state" not in early:
            early["state"] = {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
            if early_path is not None:
                atomic_save({"identity": identity, "state": early["state"]}, early_path)
        return {}

    ntp.train(model, task, steps, batch_size, scale.lr, seed=seed, decay_frac=0.2,
              warmup_steps=scale.warmup_steps, eval_every=early_step or 0,
              eval_fn=keep_early if early_step else None,
              checkpoint=ckpt, progress=progress, desc=f"NTP d={task.d} p_cot={task.p_cot}")
    final = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    _PRETRAINED[key] = (final, early.get("state"))
    if path is not None:
        atomic_save({"identity": identity, "final": final, "early": early.get("state")}, path)
        for p in (ckpt, early_path):
            p.unlink(missing_ok=True)
    return _PRETRAINED[key]


def steps_to_learn(task, scale: Scale, seed: int = 0, max_steps: int | None = None,
                   eval_every: int | None = None, target: float | None = None, *,
                   checkpoint=None, progress: bool = True, model=None,
                   batch_size: int | None = None, lr: float | None = None,
                   optimizer: str = "adamw", decay_frac: float = 0.0) -> dict:
    """Train a fresh model by NTP on ``task`` until greedy accuracy reaches ``target``.

    Greedy accuracy is measured on ``scale.hardness_eval_n`` fresh prompts every ``eval_every``
    steps. Returns ``{"d", "p_cot", "steps", "samples", "final_acc", "curve"}`` where ``steps``
    is the first checked step at or above ``target`` (None if the budget ran out) and ``curve``
    lists ``[step, greedy_acc]`` pairs. ``model``, ``batch_size`` and ``lr`` default to the
    scale's GPT and NTP settings; ``decay_frac`` > 0 decays the lr over the last part of the
    budget (a run that learns before it never sees the decay).
    """
    max_steps = max_steps or scale.hardness_max_steps
    eval_every = eval_every or scale.hardness_eval_every
    target = scale.hardness_target if target is None else target
    model = make_model(task, scale, seed) if model is None else model
    batch_size = batch_size or scale.batch_size

    def greedy(m, step):
        return evaluate(m, task, scale.hardness_eval_n, seed=seed + EVAL_SEED, modes=("greedy",))

    hist = ntp.train(model, task, max_steps, batch_size, lr or scale.lr, seed=seed,
                     optimizer=optimizer, decay_frac=decay_frac, eval_every=eval_every,
                     eval_fn=greedy,
                     stop_when=lambda rec: rec["greedy_acc"] >= target, checkpoint=checkpoint,
                     checkpoint_every=10 * eval_every, progress=progress,
                     desc=f"d={task.d} p_cot={task.p_cot}")
    curve = [[r["step"], r["greedy_acc"]] for r in hist if "greedy_acc" in r]
    reached = curve[-1][1] >= target
    steps = curve[-1][0] if reached else None
    return {"d": task.d, "p_cot": task.p_cot, "steps": steps,
            "samples": None if steps is None else steps * batch_size,
            "final_acc": curve[-1][1], "curve": curve}

"""The command line: run the book's experiments outside a notebook.

    python -m ntprl list
    python -m ntprl run EXPERIMENT --scale paper --seed 0 --out results/EXPERIMENT.json
    python -m ntprl run leap2 --scale gpu --set leap2_d=12 --name leap2_d12
    python -m ntprl grade SUBMISSIONS --out grades.csv

A run keeps its checkpoints in ``OUT.work/`` while it goes; the same command after an
interruption (Ctrl-C, a killed process, a lost Colab session) resumes from them and ends with
the same result as an uninterrupted run. The folder is removed when the run is complete. The
folder and every part in it carry the run's identity (experiment, seed and the whole scale):
the same ``--out`` with another scale or seed is refused, never mixed.

``--set FIELD=VALUE`` changes fields of the scale for this run (recorded in the results file's
config and note); such a variant needs its own ``--name`` (the results file's experiment
name, otherwise the experiment's), so that it is never taken for the preset's own run.

Errors a user can cause (a bad name or value, a corrupt file, a run of another scale) are
printed as one line starting with ``error:`` and exit with status 2; set ``NTPRL_DEBUG=1`` for
the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import sys
import time

from . import experiments, results, scale as scales
from .train.common import refuse_mismatch


def _list() -> int:
    width = max(map(len, experiments.EXPERIMENTS))
    for name, fn in experiments.EXPERIMENTS.items():
        summary = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
        print(f"{name:{width}s}  {summary}")
    print(f"\nscales: {', '.join(scales.NAMES)} (default: {scales.default_name()})")
    return 0


def _run(args) -> int:
    scale = scales.get(args.scale)
    if args.experiment not in experiments.EXPERIMENTS:
        raise ValueError(f"experiment={args.experiment!r} is not allowed: choose one of "
                         f"{tuple(experiments.EXPERIMENTS)} (see `python -m ntprl list`)")
    changes = scales.parse_overrides(scale, args.set)
    scale = scale.with_(**changes)
    if changes and not args.name:
        raise ValueError("--set needs --name: a variant of a preset gets its own name, so that "
                         "it is never taken for the preset's own run")
    name = args.name or args.experiment
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"--name {name!r} is not allowed: use ASCII letters, digits and '_'")
    out = pathlib.Path(args.out or f"results/{name}-{scale.name}-seed{args.seed}.json")
    if out.exists() and not args.force:
        old = results.load(out)  # a corrupt file is named in a one-line error
        asked = (name, scale.name, args.seed)
        if (old["experiment"], old["scale"], old["seed"]) != asked:
            raise ValueError(f"{out} holds {old['experiment']} at scale {old['scale']} seed "
                             f"{old['seed']}, not {asked[0]} at scale {asked[1]} seed {asked[2]}:"
                             " use another --out (or --force to replace it)")
        if old.get("source", args.experiment) != args.experiment:  # (older files: no field)
            raise ValueError(f"{out} holds a run of {old['source']} named {name}, not of "
                             f"{args.experiment}: use another --name or --out (or --force to "
                             "replace it)")
        if scales.comparable(old["config"]) != json.loads(json.dumps(scale.settings())):
            raise ValueError(f"{out} holds a run of {asked[0]} with other scale settings: use "
                             "another --out or --name (or --force to replace it)")
        now = _precision(args.experiment)
        if old.get("precision") not in (None, now):  # (a file older than the field: kept)
            raise ValueError(f"{out} holds a run of {asked[0]} trained in "
                             f"{old.get('precision')}, not {now} ($NTPRL_PRECISION): use another "
                             "--out (or --force to replace it)")
        print(f"{out} exists: nothing to do (use --force to run again)")
        return 0
    workdir = out.with_name(out.name + ".work")
    workdir.mkdir(parents=True, exist_ok=True)
    identity = experiments.part_identity(scale, args.seed, experiment=args.experiment)
    marker = workdir / "run.json"
    if marker.exists():
        refuse_mismatch(f"{workdir}", results.read_json(marker, f"remove {workdir} to start "
                                                        "again"), identity)
    else:
        results.write_json_atomic(identity, marker)
    t0 = time.perf_counter()
    result = experiments.run(args.experiment, scale, seed=args.seed,
                             progress=not args.no_progress, workdir=workdir)
    if os.environ.get("RANK", "0") != "0":  # under `accelerate launch`: the main process writes
        return 0
    note = (f"`python -m ntprl run {args.experiment}` with {changes} changed from the "
            f"{scale.name} preset" if changes else None)
    results.save(out, result, experiment=name, scale=scale.name, seed=args.seed,
                 config=scale.config(), wall_s=time.perf_counter() - t0, note=note,
                 precision=_precision(args.experiment), source=args.experiment)
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {out}")
    return 0


def _precision(experiment: str) -> str:
    """What ``experiment`` trains in here: ntprl's trainers' precision, or for the experiments
    trained by transformers/TRL, theirs (:func:`ntprl.llm.recipe.precision_name`)."""
    if experiment in experiments.TRL_EXPERIMENTS:
        from .llm.recipe import precision_name

        return precision_name()  # (their presets leave LLMConfig.dtype at "auto")
    return scales.precision()


def _grade(args) -> int:
    from . import grading

    rows = grading.grade(args.submissions, args.out, timeout=args.timeout)
    counts = {s: sum(r["status"] == s for r in rows) for s in grading.STATUSES}
    students = len({r["student"] for r in rows})
    print(f"wrote {args.out}: {students} students, "
          + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ntprl", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the experiments and scales")
    r = sub.add_parser("run", help="run one experiment and write its results file")
    r.add_argument("experiment")
    r.add_argument("--scale", default=None, help=f"one of {', '.join(scales.NAMES)}")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", default=None,
                   help="results file (default results/EXP-SCALE-seedN.json)")
    r.add_argument("--force", action="store_true", help="run even if the results file exists")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--set", nargs="+", action="extend", default=[], metavar="FIELD=VALUE",
                   help="change fields of the scale, e.g. leap2_d=12 leap2_p_grid=0.1,0.2")
    r.add_argument("--name", default=None,
                   help="the results file's experiment name (default: the experiment's); "
                        "required with --set")
    g = sub.add_parser("grade", help="grade a class's notebooks: a CSV of passed / failed / "
                                      "not attempted per student and exercise")
    g.add_argument("submissions", nargs="+", help="folders of notebooks, or notebooks")
    g.add_argument("--out", default="grades.csv", help="the CSV to write (default grades.csv)")
    g.add_argument("--timeout", type=float, default=120.0,
                   help="seconds allowed to grade one answer (default 120)")
    args = ap.parse_args(argv)
    try:
        if args.command == "grade":
            return _grade(args)
        return _list() if args.command == "list" else _run(args)
    except (ValueError, OSError, RuntimeError) as e:
        if os.environ.get("NTPRL_DEBUG"):
            raise
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

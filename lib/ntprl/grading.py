"""Grade a class's notebooks: per student and exercise, passed / failed / not attempted.

    python -m ntprl grade SUBMISSIONS --out grades.csv

``SUBMISSIONS`` is a folder (searched recursively for ``*.ipynb``) or notebook files. A
student is the folder a notebook sits in (``SUBMISSIONS/alice/04_rl_post_training.ipynb`` →
``alice``) or, for notebooks directly in ``SUBMISSIONS``, the file's name.

The book's exercises ask for functions, and each has a named check in :mod:`ntprl.checks`
(:data:`~ntprl.checks.EXERCISES`). So grading needs only the answer cells, not the chapters'
experiments: for each exercise label found in a notebook (``:label: ex4-grpo`` in its
markdown), the first code cell after it tagged ``stub`` (a student copy) or ``solution`` (the
full chapter) is the answer. An answer still raising the stub's ``NotImplementedError("your
code here")`` is *not attempted*; otherwise it runs, after :data:`PRELUDE`, in a fresh
namespace, and its check decides *passed* or *failed* (with the check's message). Each
notebook is graded in its own Python process with a time limit, so an endless loop fails one
notebook, not the class.

Student code runs with your permissions: grade in a container or a throwaway account.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pathlib
import re
import subprocess
import sys

STATUSES = ("passed", "failed", "not attempted")
STUB_MARK = 'raise NotImplementedError("your code here")'
LABEL = re.compile(r"^:label:\s*(ex\d+-[\w-]+)\s*$", re.M)
FIELDS = ("student", "notebook", "exercise", "status", "detail")

PRELUDE = """
import math, re
from fractions import Fraction
import numpy as np
import torch
from ntprl import theory
from ntprl.sampling import generate
from ntprl.tasks import EOS, PAD, MultiplicationTask, ParityTask
from ntprl.tasks.multiplication import MARK, SEP
from ntprl.train import rl
from ntprl.train.ntp import sequence_loss
from ntprl.llm import gsm8k
"""
"""What every answer cell can use without importing it (the chapters' own imports)."""


def answer_cells(notebook: dict) -> dict[str, str]:
    """``{exercise label: source of its answer cell}`` of a notebook (as parsed JSON)."""
    answers, label = {}, None
    for cell in notebook.get("cells", []):
        source = "".join(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            found = LABEL.findall(source)
            if found:
                label = found[-1]
        elif label is not None and set(cell.get("metadata", {}).get("tags", [])) & {
                "stub", "solution"}:
            answers.setdefault(label, source)
            label = None
    return answers


def grade_answers(answers: dict[str, str]) -> list[dict]:
    """Run each answer with its named check in this process: a list of
    ``{"exercise", "status", "detail"}`` in the order of ``answers``."""
    from . import checks

    rows = []
    for label, source in answers.items():
        if label not in checks.EXERCISES:
            rows.append({"exercise": label, "status": "failed",
                         "detail": "no check of this name in ntprl.checks"})
            continue
        if STUB_MARK in source:
            rows.append({"exercise": label, "status": "not attempted", "detail": ""})
            continue
        name, check = checks.EXERCISES[label]
        namespace: dict = {"__name__": "__answer__"}
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(PRELUDE, "<prelude>", "exec"), namespace)
                exec(compile(source, f"<{label}>", "exec"), namespace)
                if name not in namespace:
                    raise AssertionError(f"❌ the answer defines no function {name!r}")
                check(namespace[name])
            rows.append({"exercise": label, "status": "passed", "detail": ""})
        except BaseException as e:  # an answer may raise anything, SystemExit included
            detail = " ".join(str(e).split()) or type(e).__name__
            if not isinstance(e, AssertionError):
                detail = f"{type(e).__name__}: {detail}"
            rows.append({"exercise": label, "status": "failed", "detail": detail[:300]})
    return rows


def grade_notebook(path: str | os.PathLike, timeout: float = 120.0) -> list[dict]:
    """Grade one notebook: each attempted answer in its own Python process, killed after
    ``timeout`` seconds, so an endless loop in one answer fails that answer alone."""
    path = pathlib.Path(path)
    try:
        answers = answer_cells(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return [{"exercise": "*", "status": "failed",
                 "detail": f"the notebook cannot be read: {' '.join(str(e).split())}"}]
    if not answers:
        return []
    rows = []
    for label, source in answers.items():
        if STUB_MARK in source:  # known without starting a process
            rows.append({"exercise": label, "status": "not attempted", "detail": ""})
        else:
            rows += _grade_in_process({label: source}, timeout)
    return rows


def _grade_in_process(answers: dict[str, str], timeout: float) -> list[dict]:
    """:func:`grade_answers` in a fresh Python process with a time limit."""
    cmd = [sys.executable, "-c", "import json, sys; from ntprl.grading import grade_answers; "
           "print(json.dumps(grade_answers(json.load(sys.stdin))))"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(pathlib.Path(__file__).resolve().parents[1])] +
        ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    try:
        done = subprocess.run(cmd, input=json.dumps(answers), capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return [{"exercise": label, "status": "failed",
                 "detail": f"grading this answer took longer than {timeout:.0f} s"}
                for label in answers]
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        err = " ".join(done.stderr.split())[-300:]
        return [{"exercise": label, "status": "failed", "detail": f"the grader crashed: {err}"}
                for label in answers]


def find_notebooks(paths) -> list[tuple[str, pathlib.Path]]:
    """``(student, notebook path)`` for every notebook under ``paths``, sorted."""
    found = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            for nb in sorted(p.rglob("*.ipynb")):
                if ".ipynb_checkpoints" in nb.parts:
                    continue
                found.append((nb.stem if nb.parent == p else nb.parent.name, nb))
        elif p.suffix == ".ipynb" and p.exists():
            found.append((p.stem, p))
        else:
            raise ValueError(f"{p} is not allowed: give notebooks or folders holding them")
    return found


def grade(paths, out: str | os.PathLike, timeout: float = 120.0, progress: bool = True) -> list:
    """Grade every notebook under ``paths`` and write the CSV ``out`` (columns
    :data:`FIELDS`). Returns the rows."""
    rows = []
    notebooks = find_notebooks(paths)
    if not notebooks:
        raise ValueError(f"no notebooks found under {', '.join(map(str, paths))}")
    for student, nb in notebooks:
        for r in grade_notebook(nb, timeout):
            rows.append({"student": student, "notebook": nb.name, **r})
        if progress:
            print(f"graded {student}: {nb.name}", file=sys.stderr)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    return rows

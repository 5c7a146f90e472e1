"""Grade a class's notebooks: per student and exercise, passed / failed / not attempted /
copied.

    python -m ntprl grade SUBMISSIONS --out grades.csv

``SUBMISSIONS`` is a folder (searched recursively for ``*.ipynb``) or notebook files. A
student is the first folder under ``SUBMISSIONS`` (``SUBMISSIONS/alice/04_rl_post_training
.ipynb`` and ``SUBMISSIONS/alice/hw4/04_rl_post_training.ipynb`` → ``alice``) or, for
notebooks directly in ``SUBMISSIONS``, the file's name.

The book's exercises ask for functions, and each has a named check in :mod:`ntprl.checks`
(:data:`~ntprl.checks.EXERCISES`). So grading needs only code cells, not the chapters'
experiments. For each exercise label in a notebook (``:label: ex4-grpo`` in its markdown):

- the *answer* is the last code cell between that label and the next one that defines the
  exercise's function at top level (``def grpo_advantages(`` or ``grpo_advantages = ...``),
  else the last such cell anywhere in the notebook, else the cell tagged ``stub`` (a student
  copy) or ``solution`` (the full chapter) after the label. An answer whose function's body
  is still the stub's ``raise NotImplementedError("your code here")`` is *not attempted*
  (that line left as a comment is not), and so is an exercise whose function no code cell
  defines; an answer that is the full chapter's own cell (tagged ``solution``) is *copied*;
- the answer runs in a fresh namespace after :data:`PRELUDE` (the chapters' own imports) and
  after the ``import``, ``def`` and ``class`` statements and the constants (``D = 8``: a name
  bound to a literal) of every code cell above it, so it can use the setup cell's imports, the
  functions of earlier exercises and the student's own constants, as in the notebook. Nothing
  else of those cells runs (no experiment), and a statement that fails there is skipped.
  In the answer cell itself, the statements up to the function's definition run (a helper
  it needs); after it, only definitions and constants do, as above: a test below it (a
  ``print``, ``adv = grpo_advantages(...)``, a training run) is skipped. Lines that only
  evaluate something are skipped anywhere in the cell, and an error in a line that does not
  define the function is ignored;
- its check decides *passed* or *failed* (with the check's message), on the cases the
  notebook's check cell runs and on cases drawn from a seed the student never sees
  (:func:`ntprl.checks.hidden_cases`, a fresh seed for every answer): an answer that
  reproduces only the cases printed in the notebook fails.

Each answer is graded in its own Python process with a time limit, so an endless loop fails
one answer, not the class. A notebook without exercise labels gets one row, exercise ``*``.

Student code runs with your permissions: grade in a container or a throwaway account. The
grader guards against accidents and easy tricks (an answer's printed fake verdict, a module
named ``ntprl`` beside the notebook, an object that claims to equal anything, the library's
function passed in as a default argument), not against an answer written to attack it: each
answer runs in the same process as its check.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import io
import json
import os
import pathlib
import re
import secrets
import subprocess
import sys

STATUSES = ("passed", "failed", "not attempted", "copied")
STUB_MARK = 'raise NotImplementedError("your code here")'
LABEL = re.compile(r"^:label:\s*(ex\d+-[\w-]+)\s*$", re.M)
FIELDS = ("student", "notebook", "exercise", "status", "detail")

PRELUDE = """
import math, re
import ntprl
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


def _code(cell: dict) -> str:
    """A code cell's source; when it does not parse as Python, with IPython's ``%magic`` and
    ``!shell`` lines (and their backslash continuations) made ``pass`` (a line inside
    brackets that starts with ``%``, a modulo, is Python and stays when the cell parses)."""
    source = cell.get("source") or ""
    source = source if isinstance(source, str) else "".join(source)
    if _statements(source) is not None:
        return source
    out, magic = [], False
    for line in source.splitlines():
        if magic or line.lstrip().startswith(("%", "!")):
            out.append(line[: len(line) - len(line.lstrip())] + "pass" if not magic else "")
            magic = line.rstrip().endswith("\\")
        else:
            out.append(line)
    return "\n".join(out)


def _statements(source: str) -> list | None:
    """Top-level statements of ``source`` (None when it does not parse)."""
    try:
        return ast.parse(source).body
    except SyntaxError:
        return None


def _target_names(target) -> list[str]:
    """Names an assignment target binds: a name, or the names of a tuple/list of targets (not
    an attribute or item of one: ``f.__doc__ = ...`` does not define ``f``)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for t in target.elts for n in _target_names(t)]
    return []


def _binds(stmt, name: str) -> bool:
    """Whether the top-level statement ``stmt`` defines ``name``."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return stmt.name == name
    if isinstance(stmt, ast.Assign):
        return any(name in _target_names(t) for t in stmt.targets)
    if isinstance(stmt, ast.AnnAssign):  # ``f: type`` alone defines nothing
        return stmt.value is not None and name in _target_names(stmt.target)
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return any((a.asname or a.name.split(".")[0]) == name for a in stmt.names)
    return False


def _literal(node) -> bool:
    """Whether an expression is a literal (``8``, ``-0.5``, ``"ab"``, ``(1, 2)``, ...)."""
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _definition(stmt) -> bool:
    """Whether a top-level statement of a cell above an answer runs before it: an import, a
    ``def`` or ``class``, or a constant (``D = 8``: a name bound to a literal). Nothing that
    computes (an experiment, a call) runs."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                         ast.ClassDef)):
        return True
    if isinstance(stmt, ast.Assign):
        return (all(_target_names(t) and isinstance(t, (ast.Name, ast.Tuple, ast.List))
                    for t in stmt.targets) and _literal(stmt.value))
    if isinstance(stmt, ast.AnnAssign):
        return (stmt.value is not None and isinstance(stmt.target, ast.Name)
                and _literal(stmt.value))
    return False


def is_stub(source: str, name: str) -> bool:
    """Whether ``source`` leaves the exercise's function ``name`` as the student copy's stub:
    its last definition's body (past a docstring) is only ``raise NotImplementedError("your
    code here")``. A stub line commented out, or kept below code that answers, is an attempt.
    A cell that defines no function ``name`` (``name = ...``) is read by the text alone."""
    body = _statements(source)
    if body is None:
        return False  # graded: its SyntaxError is the detail
    defs = [stmt for stmt in body if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))
            and stmt.name == name]
    if not defs:
        return STUB_MARK in source and not any(_binds(stmt, name) for stmt in body)
    rest = defs[-1].body
    if rest and isinstance(rest[0], ast.Expr) and isinstance(rest[0].value, ast.Constant) \
            and isinstance(rest[0].value.value, str):
        rest = rest[1:]  # the docstring
    return len(rest) == 1 and ast.unparse(rest[0]) == STUB_MARK.replace('"', "'")


def notebook_answers(notebook: dict) -> dict[str, dict]:
    """For every exercise label of a notebook (as parsed JSON), by the rules of the module
    docstring: ``{label: {"source", "code", "context", "tags"}}``: the answer cell's source,
    the same with IPython's magic lines made ``pass``, the definitions above it, and the
    cell's tags (``source`` and ``code`` None, ``context`` empty, when no code cell defines
    the exercise's function)."""
    from . import checks

    cells = notebook.get("cells", [])
    labels = []  # (label, index of its markdown cell)
    for i, cell in enumerate(cells):
        if cell.get("cell_type") == "markdown":
            for label in LABEL.findall("".join(cell.get("source", ""))):
                labels.append((label, i))
    code = {i: _code(c) for i, c in enumerate(cells)
            if isinstance(c, dict) and c.get("cell_type") == "code"}
    body = {i: _statements(source) or [] for i, source in code.items()}  # parsed once
    definitions = [(i, ast.unparse(stmt)) for i in code for stmt in body[i]  # decorators too
                   if _definition(stmt)]
    out = {}
    for k, (label, start) in enumerate(labels):
        if label in out:
            continue
        end = next((i for _, i in labels[k + 1:] if i > start), len(cells))
        name = checks.EXERCISES[label][0] if label in checks.EXERCISES else None
        region = [i for i in code if start < i < end]
        tagged = [i for i in region
                  if set(cells[i].get("metadata", {}).get("tags", [])) & {"stub", "solution"}]
        def defines(i):
            return name is not None and any(_binds(stmt, name) for stmt in body[i])

        defining = [i for i in region if defines(i)] or [i for i in code if defines(i)]
        at = defining[-1] if defining else (tagged[0] if tagged else None)
        if at is None:
            out[label] = {"source": None, "code": None, "context": "", "tags": []}
            continue
        out[label] = {"source": "".join(cells[at].get("source", "")), "code": code[at],
                      "context": "\n\n".join(src for i, src in definitions if i < at),
                      "tags": list(cells[at].get("metadata", {}).get("tags", []))}
    return out


def answer_cells(notebook: dict) -> dict[str, str]:
    """``{exercise label: source of its answer cell}`` of a notebook (as parsed JSON), for the
    exercises that have one (:func:`notebook_answers`)."""
    return {label: a["source"] for label, a in notebook_answers(notebook).items()
            if a["source"] is not None}


def _run_statements(source: str, where: str, namespace: dict, keep: str | None) -> None:
    """Run the top-level statements of ``source`` one by one. With ``keep`` (an answer cell,
    ``keep`` its function's name): expression statements are skipped, so is every statement
    after the last one that defines ``keep`` unless it is a definition (:func:`_definition`),
    and an error raises only in a statement that defines ``keep``. Without (the cells above
    an answer): every statement runs, and one that fails is skipped."""
    body = _statements(source)
    if body is None:
        if keep is None:
            return
        compile(source, where, "exec")  # raises the SyntaxError, with its line
    last = len(body) if keep is None else max(  # the last statement that defines ``keep``
        (i for i, stmt in enumerate(body) if _binds(stmt, keep)), default=len(body))
    for i, stmt in enumerate(body):
        if keep is not None and (isinstance(stmt, ast.Expr) or
                                 (i > last and not _definition(stmt))):
            continue
        try:
            exec(compile(ast.Module([stmt], []), where, "exec"), namespace)
        except Exception:
            if keep is not None and _binds(stmt, keep):
                raise


def grade_answers(answers: dict[str, str], context: dict[str, str] | None = None,
                  hidden_seed: int | None = None) -> list[dict]:
    """Run each answer with its named check in this process, after :data:`PRELUDE` and
    ``context[label]`` (the definitions above the answer in its notebook): a list of
    ``{"exercise", "status", "detail"}`` in the order of ``answers``. With ``hidden_seed``
    the checks add cases drawn from it (:func:`ntprl.checks.hidden_cases`), and a failure's
    detail ends with the seed, so the same cases can be run again."""
    from . import checks

    rows = []
    for label, source in answers.items():
        if label not in checks.EXERCISES:
            rows.append({"exercise": label, "status": "failed",
                         "detail": "no check of this name in ntprl.checks"})
            continue
        name, check = checks.EXERCISES[label]
        if is_stub(source, name):
            rows.append({"exercise": label, "status": "not attempted", "detail": ""})
            continue
        namespace: dict = {"__name__": "__answer__"}
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(PRELUDE, "<prelude>", "exec"), namespace)
                _run_statements((context or {}).get(label, ""), "<cells above>", namespace,
                                None)
                namespace.pop(name, None)  # the answer must define it: not a stub above it
                _run_statements(source, f"<{label}>", namespace, name)
                if name not in namespace:
                    raise AssertionError(f"❌ the answer defines no function {name!r}")
                with (checks.hidden_cases(hidden_seed) if hidden_seed is not None
                      else contextlib.nullcontext()):
                    check(namespace[name])
            rows.append({"exercise": label, "status": "passed", "detail": ""})
        except BaseException as e:  # an answer may raise anything, SystemExit included
            detail = " ".join(str(e).split()) or type(e).__name__
            if not isinstance(e, AssertionError):
                detail = f"{type(e).__name__}: {detail}"
            seed = f" [hidden_cases seed {hidden_seed}]" if hidden_seed is not None else ""
            rows.append({"exercise": label, "status": "failed",
                         "detail": detail[:300] + seed})
    return rows


def grade_notebook(path: str | os.PathLike, timeout: float = 120.0,
                   answer_key: bool = False) -> list[dict]:
    """Grade one notebook: each attempted answer in its own Python process, killed after
    ``timeout`` seconds, so an endless loop in one answer fails that answer alone. One row
    per exercise label in the notebook. An answer cell tagged ``solution`` is the published
    chapter's own: *copied*, unless ``answer_key`` (grading the full chapters themselves)."""
    path = pathlib.Path(path)
    try:
        answers = notebook_answers(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return [{"exercise": "*", "status": "failed",
                 "detail": f"the notebook cannot be read: {' '.join(str(e).split())}"}]
    except Exception as e:  # JSON, but not a notebook's
        return [{"exercise": "*", "status": "failed",
                 "detail": f"the file is not a notebook ({type(e).__name__}: "
                           f"{' '.join(str(e).split())})"}]
    if not answers:
        return [{"exercise": "*", "status": "not attempted",
                 "detail": "no exercise labels in this notebook: is it a chapter of the book?"}]
    from . import checks

    rows = []
    for label, a in answers.items():
        if label not in checks.EXERCISES:
            rows.append({"exercise": label, "status": "failed",
                         "detail": "no check of this name in ntprl.checks"})
        elif a["source"] is None:
            rows.append({"exercise": label, "status": "not attempted",
                         "detail": f"no code cell defines {checks.EXERCISES[label][0]}"})
        elif is_stub(a["source"], checks.EXERCISES[label][0]):  # without a process
            rows.append({"exercise": label, "status": "not attempted", "detail": ""})
        elif "solution" in a["tags"] and not answer_key:
            rows.append({"exercise": label, "status": "copied",
                         "detail": "the answer is the published chapter's solution cell "
                                   "(tagged solution): the full chapter was handed in"})
        else:
            rows += _grade_in_process({label: a["code"]}, {label: a["context"]}, timeout,
                                      cwd=path.parent)
    return rows


def _grade_in_process(answers: dict[str, str], context: dict[str, str],
                      timeout: float, cwd=None) -> list[dict]:
    """:func:`grade_answers` in a fresh Python process with a time limit, in the folder
    ``cwd`` (the notebook's: an answer may import a module of the student's beside it).

    The process is isolated (``python -I``: no ``PYTHONPATH``, no user site, not the
    student's folder first on the path); this library comes first on its path and the
    student's folder last, so a submitted ``ntprl/`` cannot stand in for the grader. Its
    verdict is the line that starts with a random token (the answer's own prints, at exit
    too, cannot pass for it). This guards against accidents and easy tricks, not against a
    determined attack from inside the answer, which runs in the same process as its check.
    The checks add cases drawn from a seed chosen here for every answer: a memorised table of
    the notebook's printed cases fails, an answer written to read the seed would not."""
    token = secrets.token_hex(16)
    lib = str(pathlib.Path(__file__).resolve().parents[1])
    paths = [lib] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    code = ("import json, sys; job = json.load(sys.stdin); sys.path[:0] = job['paths']; "
            "sys.path.append(job['cwd']); from ntprl.grading import grade_answers; "
            "rows = grade_answers(job['answers'], job['context'], job['hidden_seed']); "
            "print(job['token'] + json.dumps(rows), flush=True)")
    job = {"paths": paths, "cwd": os.path.abspath(cwd or os.getcwd()), "token": token,
           "answers": answers, "context": context, "hidden_seed": secrets.randbits(63)}
    try:
        done = subprocess.run([sys.executable, "-I", "-c", code], input=json.dumps(job),
                              capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return [{"exercise": label, "status": "failed",
                 "detail": f"grading this answer took longer than {timeout:.0f} s"}
                for label in answers]
    try:
        (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith(token)]
        return json.loads(line[len(token):])
    except (ValueError, json.JSONDecodeError):
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
                parts = nb.relative_to(p).parts  # the student: the first folder under p
                found.append((nb.stem if len(parts) == 1 else parts[0], nb))
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

"""Run results as JSON files: written atomically, with provenance, and the stored runs.

A results file is ``{"schema", "experiment", "scale", "seed", "config", "ntprl_version",
"git_commit", "device", "date", "wall_s", "result"}``, and where they apply ``"note"`` and
``"precision"`` (the trainers', ``"fp32"`` or ``"bf16"``, or for chapter 6's TRL runs also
``"fp16"``; absent in files made before it was recorded, which were float32 on a CPU and bf16
(fp16 on a GPU without bf16, for the TRL runs) on a GPU). ``result`` is what the experiment
returned. Files are written to a temporary name in the same folder and renamed into place, so
a killed process never leaves a partial file behind.

*Stored runs* are results of runs too long for a chapter — ``gpu``/``paper`` runs made on a GPU,
or a longer CPU run — kept with the machine they ran on in ``ntprl/runs/``
(package data, so a Colab install has them too), named ``EXPERIMENT-SCALE-seedN.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import pathlib
import subprocess
import tempfile
import warnings

from . import __version__

SCHEMA = 1
RUNS_DIR = pathlib.Path(__file__).resolve().parent / "runs"
FIELDS = ("schema", "experiment", "scale", "seed", "config", "ntprl_version", "git_commit",
          "device", "date", "wall_s", "result")


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The git commit of the checkout holding ``path`` (default: this package), if any, with
    ``-dirty`` appended when tracked files differ from it."""
    where = pathlib.Path(path) if path else pathlib.Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], cwd=where,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def device_name() -> str:
    """A short description of the device runs use: the GPU's name, or 'cpu (N threads)'."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def write_json_atomic(obj, path: str | os.PathLike) -> pathlib.Path:
    """Write ``obj`` as JSON to ``path`` through a temporary file and an atomic rename."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_json(path, remedy: str = "") -> object:
    """The JSON in ``path``; a file that cannot be read or parsed raises a one-line
    ``ValueError`` naming it (and ``remedy``, what the user can do about it)."""
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} cannot be read as JSON ({' '.join(str(e).split())})"
                         f"{': ' + remedy if remedy else ''}") from None


def save(path, result: dict, *, experiment: str, scale: str, seed: int, config: dict,
         wall_s: float, note: str | None = None, precision: str | None = None,
         source: str | None = None) -> pathlib.Path:
    """Write one run's ``result`` with its provenance to ``path`` (atomically); ``note`` says
    how it was made where that is not the plain CLI (a partial run, another model...);
    ``precision`` is the one the run trained in (``"fp32"`` or ``"bf16"``; for chapter 6's TRL
    runs also ``"fp16"``: :func:`ntprl.llm.recipe.precision_name`); ``source`` is the
    experiment function that computed it, where ``experiment`` names the run otherwise (the
    CLI's ``--name``)."""
    record = {"schema": SCHEMA, "experiment": experiment, "scale": scale, "seed": seed,
              "config": config, "ntprl_version": __version__, "git_commit": git_commit(),
              "device": device_name(), "date": _dt.date.today().isoformat(),
              "wall_s": round(float(wall_s), 2), "result": result}
    if note:
        record["note"] = note
    if precision is not None:
        record["precision"] = precision
    if source is not None:
        record["source"] = source
    return write_json_atomic(record, path)


def load(path) -> dict:
    """Read a results file, checking its schema and fields."""
    record = read_json(path, "it is not a readable ntprl results file")
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not an ntprl results file: it holds no JSON object")
    missing = [f for f in FIELDS if f not in record]
    if missing or record.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not an ntprl results file of schema {SCHEMA} "
                         f"(missing: {missing}, schema: {record.get('schema')})")
    return record


def stored_runs(experiment: str | None = None) -> list[pathlib.Path]:
    """Paths of the stored runs shipped with the package, optionally of one experiment."""
    pattern = f"{experiment}-*.json" if experiment else "*.json"
    return sorted(RUNS_DIR.glob(pattern))


def stored(experiment: str, scale: str | None = None) -> dict | None:
    """The stored run of ``experiment`` (at ``scale``, preferring ``paper`` then ``gpu``), or
    None when the package holds none."""
    runs = []
    for p in stored_runs(experiment):
        try:
            runs.append(load(p))
        except ValueError as e:  # one broken file must not hide the others from every chapter
            warnings.warn(f"skipping a stored run: {e}", stacklevel=2)
    if scale is not None:
        runs = [r for r in runs if r["scale"] == scale]
    order = {"paper": 0, "gpu": 1}
    runs.sort(key=lambda r: (order.get(r["scale"], 2), r["seed"]))
    return runs[0] if runs else None

"""Repeat a benchmark in fresh Python processes and summarise: the median and the spread.

A ratio of two speeds measured in one process swings by half from one process to the next on
a small CPU (thread pools, allocator and cache state), so the benchmarks report the median
over ``--processes`` fresh processes, each printing its numbers as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def add_options(ap: argparse.ArgumentParser) -> None:
    """The options every benchmark takes: ``--processes N`` (repeat in N fresh processes) and
    the hidden ``--json`` each of those processes prints its numbers with."""
    ap.add_argument("--processes", type=int, default=1,
                    help="repeat in this many fresh processes; print the median and spread")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)


def repeat(script: str, ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[dict]:
    """Run ``script`` with the same options as ``args`` (parsed by ``ap``) in
    ``args.processes`` fresh processes, print the summary and return the rows."""
    argv = []
    for action in ap._actions:
        if not action.option_strings or action.dest in ("help", "processes", "json"):
            continue
        value = getattr(args, action.dest)
        if isinstance(action, argparse._StoreTrueAction):
            argv += [action.option_strings[0]] if value else []
        else:
            argv.append(f"{action.option_strings[0]}={value}")
    rows = run(script, argv, args.processes)
    summary(rows)
    return rows


def times(fn, repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn``, after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run(script: str, argv: list[str], processes: int) -> list[dict]:
    """Run ``script --json argv`` in ``processes`` fresh processes, one after the other."""
    rows = []
    for i in range(processes):
        out = subprocess.run([sys.executable, script, "--json", *argv], capture_output=True,
                             text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"process {i + 1}/{processes}: " + ", ".join(f"{k} {v:,.2f}"
                                                           for k, v in rows[-1].items()),
              flush=True)
    return rows


def summary(rows: list[dict], keys=None) -> None:
    """Print the median and the [min, max] of each number over the processes."""
    keys = keys or list(rows[0])
    print(f"\nover {len(rows)} fresh processes: median [min – max]")
    for k in keys:
        vals = [r[k] for r in rows if k in r]
        print(f"  {k:40s} {statistics.median(vals):12,.2f}  [{min(vals):,.2f} – {max(vals):,.2f}]")

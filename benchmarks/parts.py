"""Speed of an experiment's independent parts in worker processes (``run_parts``) against the
same parts one after another in this process.

The parts are chapter 2's threshold grid in small: NTP on D(p_cot) at d = 16 with the ``fast``
model (2 layers, width 128, batch 128) for ``--steps`` steps, then the measurement, at
``--parts`` values of p_cot. Both ways run the same parts, on the same machine, in this one
process; each reports parts per minute, and the ratio is printed.

    python benchmarks/parts.py                 # 4 parts of 150 steps, workers = one per core
    python benchmarks/parts.py --processes 3   # three fresh processes: median and spread
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import fresh
import torch

import ntprl.scale
from ntprl.experiments import Part, part_identity, run_parts, train_and_measure
from ntprl.tasks import ParityTask


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--workers", type=int, default=0, help="0: ntprl.scale.workers()")
    fresh.add_options(ap)
    args = ap.parse_args(argv)
    if args.processes > 1:
        return fresh.repeat(__file__, ap, args)
    scale = ntprl.scale.get("fast")
    n = args.workers or ntprl.scale.workers()
    grid = [0.1 + 0.4 * i / max(1, args.parts - 1) for i in range(args.parts)]
    parts = [Part(f"p{p:.4f}", partial(train_and_measure, ParityTask(16, p), scale, args.steps,
                                       0, progress=False), part_identity(scale, 0, p_cot=p))
             for p in grid]
    run_parts(parts[:n], n_workers=n, progress=False)  # start the pool: not part of the timing
    rows = {}
    for label, workers in (("one after another, this process", 1),
                           (f"{n} worker processes", n)):
        t0 = time.perf_counter()
        run_parts(parts, n_workers=workers, progress=False)
        rows[label] = len(parts) / (time.perf_counter() - t0) * 60
    ratio = rows[f"{n} worker processes"] / rows["one after another, this process"]
    if args.json:
        import json

        print(json.dumps({**{f"{k} parts/min": v for k, v in rows.items()},
                          "ratio workers / one after another": ratio}))
        return rows
    print(f"{len(parts)} parts of {args.steps} NTP steps (d = 16, batch {scale.batch_size}), "
          f"torch {torch.__version__}, {ntprl.scale.cpu_cores()} cores")
    for k, v in rows.items():
        print(f"  {k:34s} {v:6.2f} parts/min")
    print(f"  workers / one after another: {ratio:.2f}x")
    return rows


if __name__ == "__main__":
    main()

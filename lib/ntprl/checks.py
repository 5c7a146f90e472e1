"""Self-checks for exercises: compare a learner's function with the reference on many inputs.

Each check prints a one-line verdict and raises ``AssertionError`` with the first
counter-example when the learner's answer differs, so a solution cell can simply call it.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch


def _same(a, b, tol) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        if a.shape != b.shape:
            return False
        return bool(torch.allclose(a.double(), b.double(), atol=tol, rtol=0))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, abs_tol=tol)
    return a == b


def check(fn: Callable, reference: Callable, inputs: Iterable, name: str | None = None,
          tol: float = 1e-6) -> bool:
    """Call ``fn(*args)`` and ``reference(*args)`` for every ``args`` in ``inputs``.

    Inputs that are not tuples are passed as the single argument. Prints ``✅`` with the number
    of cases on success; raises ``AssertionError`` naming the first failing input otherwise.
    """
    name = name or getattr(fn, "__name__", "your function")
    n = 0
    for args in inputs:
        args = args if isinstance(args, tuple) else (args,)
        want = reference(*args)
        try:
            got = fn(*args)
        except NotImplementedError:
            raise AssertionError(f"❌ {name} is not written yet "
                                 "(it raised NotImplementedError)") from None
        if not _same(got, want, tol):
            raise AssertionError(f"❌ {name} differs from the reference on input {args}: "
                                 f"expected {want}, got {got}")
        n += 1
    print(f"✅ {name} agrees with the reference on {n} cases")
    return True


def check_value(value, expected, name: str = "your answer", tol: float = 1e-6) -> bool:
    """Check a single number (or list) against the expected one, within ``tol``."""
    if not _same(value, expected, tol):
        raise AssertionError(f"❌ {name} = {value}, but it should be {expected} (within {tol})")
    print(f"✅ {name} is right")
    return True


# ---- named checks of exercises: the references live here, not in the notebooks ----------------
def ex5_chain(long_chain: Callable) -> bool:
    """Chapter 5, ``ex5-chain``: ``long_chain(a, b, n)`` against the task's own chain on random
    problems with 1, 2, 3 and 5 digits (and the extreme operands of each size)."""
    from .tasks import MultiplicationTask

    def reference(a, b, n):
        t = MultiplicationTask(n, 1.0)
        return t.chain_of(t.encode_prompts(torch.tensor([a]), torch.tensor([b])))[0].tolist()

    gen = torch.Generator().manual_seed(0)
    cases = []
    for n in (1, 2, 3, 5):
        lo, hi = (10 ** (n - 1) if n > 1 else 0), 10 ** n
        cases += [(lo, lo, n), (hi - 1, hi - 1, n)]
        cases += [tuple(map(int, ab)) + (n,) for ab in torch.randint(lo, hi, (5, 2), generator=gen)]
    return check(long_chain, reference, cases, name=getattr(long_chain, "__name__", None))

"""Running sums: a long/short mixture that a small pre-trained LLM can learn on a CPU.

GSM8K is the paper's LLM data set, but a 135M-parameter model on two CPU cores earns too few
correct answers on it for GRPO to learn from. This task is the book's own choice, built to keep
the structure of the parity experiments in an LLM's native medium, text:

- question: the sum of ``terms`` numbers of ``digits`` digits, ``"37+48+29=?"``;
- long answer (the chain of thought): every running sum, then the result,
  ``"37+48=85, 85+29=114.\\n#### 114"`` — each step is one two-number addition, as each step of
  the parity chain is one XOR;
- short answer: the result alone, ``"#### 114"`` — adding all the numbers at once, in one token
  stream with no intermediate results, is what a small model does badly.

Problems come as GSM8K-shaped rows (``{"question", "answer"}``, the answer being the long
solution ending in ``#### N``), so :func:`ntprl.llm.gsm8k.make_mixture`, the answer reader, the
reward and the long/short classifier apply unchanged.

**The greedy threshold of this format is 1/2, not 1/3.** In parity the long route's first token
*is* the short answer half the time, which is what puts the threshold at 1/3 (chapter 2). Here
the two routes start with different tokens (the long one with a space, then the first number's
digits, in SmolLM2's tokenizer; the short one with `` ####``, one and the same token for every
short answer), so after SFT the first token is
long with probability about ``p_cot``, the rest of each route is then determined, and greedy
decoding takes the long route iff ``p_cot > 1/2``: :func:`ntprl.theory.divergent_threshold`
with a short top share of 1.
"""

from __future__ import annotations

import random

FIELDS = ("terms", "digits")


def solution(numbers: list[int]) -> str:
    """The long solution of ``sum(numbers)``: every running sum, then ``#### total``."""
    steps, total = [], numbers[0]
    for x in numbers[1:]:
        steps.append(f"{total}+{x}={total + x}")
        total += x
    return f"{', '.join(steps)}.\n#### {total}"


def question(numbers: list[int]) -> str:
    """The question for ``numbers``: ``"37+48+29=?"``."""
    return "+".join(map(str, numbers)) + "=?"


def make_problems(n: int, terms: int = 3, digits: int = 2, seed: int = 0,
                  exclude: set[str] | None = None) -> list[dict]:
    """``n`` distinct problems ``{"question", "answer", "numbers"}`` with ``terms`` numbers of
    exactly ``digits`` digits each, drawn uniformly (seeded); questions in ``exclude`` (say, the
    test set's) are skipped."""
    for name, value, low in (("n", n, 1), ("terms", terms, 2), ("digits", digits, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}={value!r} is not allowed: use an integer >= {low}")
    lo, hi = 10 ** (digits - 1) if digits > 1 else 0, 10 ** digits - 1
    space = (hi - lo + 1) ** terms
    exclude = exclude or set()
    if n > space - len(exclude):
        raise ValueError(f"n={n} is not allowed: only {space} distinct problems have {terms} "
                         f"numbers of {digits} digits")
    rng = random.Random(seed)
    seen, out = set(exclude), []
    while len(out) < n:
        numbers = [rng.randint(lo, hi) for _ in range(terms)]
        q = question(numbers)
        if q not in seen:
            seen.add(q)
            out.append({"question": q, "answer": solution(numbers), "numbers": numbers})
    return out


def splits(n_train: int, n_rl: int, n_test: int, terms: int = 3, digits: int = 2,
           seed: int = 0) -> tuple[list[dict], list[dict], list[dict]]:
    """``(sft, rl, test)`` problem lists, pairwise disjoint: the test problems are drawn first
    and excluded from the others."""
    test = make_problems(n_test, terms, digits, seed=10_000 + seed)
    train = make_problems(n_train + n_rl, terms, digits, seed=seed,
                          exclude={p["question"] for p in test})
    return train[:n_train], train[n_train:], test

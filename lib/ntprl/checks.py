"""Self-checks for exercises: compare a learner's function with a reference on many inputs.

Each check prints a one-line verdict and raises ``AssertionError`` with the first
counter-example when the learner's answer differs, so a solution cell can simply call it.

Every exercise of the book has a *named* check here (``ex4_grpo(fn)``, ...; the registry
:data:`EXERCISES` maps each exercise label to its function name and check). The references
live in this module, not in the notebooks, and a named check rejects an answer that calls the
library's own implementation of what the exercise asks for (it is swapped for a function that
fails while the check runs, and names bound to it in the answer's module are refused).

The cases a notebook's check cell runs are fixed, and a failure prints the input and the
expected value. So the grader (:mod:`ntprl.grading`) runs every check inside
:func:`hidden_cases`: each check of a value then adds cases drawn from a seed the student never
sees, and an answer that memorised the printed cases fails on them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import random
import re
import sys
import types
from fractions import Fraction
from typing import Callable, Iterable

import numpy as np
import torch

from .train.common import closure_values


_HIDDEN_SEED: int | None = None  # set by hidden_cases (the grader), None in the notebooks


@contextlib.contextmanager
def hidden_cases(seed: int):
    """Grading mode: while this is open, every check of a value adds to its fixed cases a few
    drawn from ``seed`` (the grader draws a fresh one for every answer), so an answer that
    reproduces only the cases its notebook printed fails. The checks of a training round
    (``ex4-star-round``, ``ex4-ablation``) compare with the library's runs and add none."""
    global _HIDDEN_SEED
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed={seed!r} is not allowed: it must be an int")
    before, _HIDDEN_SEED = _HIDDEN_SEED, seed
    try:
        yield
    finally:
        _HIDDEN_SEED = before


def _hidden(make: Callable[[random.Random], object], n: int = 6) -> list:
    """``n`` cases ``make(rng)`` in grading mode (:func:`hidden_cases`), none otherwise. The
    generator is seeded by the hidden seed and the case maker's name, so each check draws its
    own cases."""
    if _HIDDEN_SEED is None:
        return []
    rng = random.Random(f"{_HIDDEN_SEED}:{make.__qualname__}")
    return [make(rng) for _ in range(n)]


def _gen(rng: random.Random) -> torch.Generator:
    """A torch generator seeded from ``rng``."""
    return torch.Generator().manual_seed(rng.randrange(2**31))


def _same(a, b, tol) -> bool:
    """Whether the answer ``a`` equals the reference ``b``: tensors of the same shape, integer
    tensors of the same dtype (a LongTensor where one is asked for), float tensors within
    ``tol``; a Python number where the reference is one (not a 0-d tensor). The answer's own
    ``==`` is never asked: an object that claims to equal everything equals nothing here."""
    if isinstance(b, numbers.Real) and not isinstance(b, bool) and isinstance(a, torch.Tensor):
        return False  # asked for a Python number: .item() it
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        if a.shape != b.shape or a.dtype.is_floating_point != b.dtype.is_floating_point:
            return False  # the shape and the kind of dtype (integer or float) must match too
        if not b.dtype.is_floating_point and a.dtype != b.dtype:
            return False  # e.g. int32 where the exercise asks for a LongTensor
        return bool(torch.allclose(a.double(), b.double(), atol=tol, rtol=0))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, tol) for x, y in zip(a, b))
    if isinstance(b, bool) or b is None:
        return a is b or (isinstance(a, (bool, np.bool_)) and bool(a) == b)
    if isinstance(b, numbers.Real):
        return (isinstance(a, numbers.Real) and not isinstance(a, torch.Tensor)
                and math.isclose(a, b, abs_tol=tol))
    if isinstance(b, dict):
        return (isinstance(a, dict) and set(a) == set(b)
                and all(_same(a[k], b[k], tol) for k in b))
    if isinstance(b, (str, bytes)):
        return type(a) is type(b) and a == b  # exactly a str (bytes): str's own ==
    return type(a) is type(b) and b == a  # the reference's own ==, on the reference's type


def _args(args) -> tuple:
    return args if isinstance(args, tuple) else (args,)


def _compare(fn: Callable, inputs: list, wants: list, name: str, tol: float) -> bool:
    for args, want in zip(inputs, wants):
        try:
            got = fn(*_args(args))
        except NotImplementedError:
            raise AssertionError(f"❌ {name} is not written yet "
                                 "(it raised NotImplementedError)") from None
        try:
            same = bool(_same(got, want, tol))
        except (TypeError, RuntimeError, ValueError):  # e.g. a list where a tensor is asked for
            same = False
        if not same:
            kind = ""
            if type(got) is not type(want) and not (
                    isinstance(got, (int, float)) and isinstance(want, (int, float))):
                kind = f" (a {type(got).__name__} where a {type(want).__name__} is asked for)"
            if isinstance(got, torch.Tensor) and isinstance(want, (int, float)):
                kind = " (a tensor where a Python number is asked for: use .item())"
            elif isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor) and (
                    got.dtype != want.dtype or got.shape != want.shape):
                kind = (f" (dtype {got.dtype}, shape {tuple(got.shape)}; expected dtype "
                        f"{want.dtype}, shape {tuple(want.shape)})")
            # the kind first: a grader shows only the start of a long message
            raise AssertionError(f"❌ {name} differs from the reference{kind}, on input "
                                 f"{_args(args)}: expected {want}, got {got}")
    print(f"✅ {name} agrees with the reference on {len(inputs)} cases")
    return True


def check(fn: Callable, reference: Callable, inputs: Iterable, name: str | None = None,
          tol: float = 1e-6) -> bool:
    """Call ``fn(*args)`` and ``reference(*args)`` for every ``args`` in ``inputs``.

    Inputs that are not tuples are passed as the single argument. Prints ``✅`` with the number
    of cases on success; raises ``AssertionError`` naming the first failing input otherwise.
    Tensors must agree in shape and in the kind of dtype (integer or float) as well.
    """
    inputs = list(inputs)
    wants = [reference(*_args(a)) for a in inputs]
    return _compare(fn, inputs, wants, name or getattr(fn, "__name__", "your function"), tol)


def check_value(value, expected, name: str = "your answer", tol: float = 1e-6) -> bool:
    """Check a single number (or list) against the expected one, within ``tol``."""
    if not _same(value, expected, tol):
        raise AssertionError(f"❌ {name} = {value}, but it should be {expected} (within {tol})")
    print(f"✅ {name} is right")
    return True


# ---- named checks of exercises: the references live here, not in the notebooks ----------------
class Delegated(AssertionError):
    """An answer called the library's implementation of what the exercise asks for."""


@contextlib.contextmanager
def _forbid(fn: Callable, targets: list[tuple[object, str]]):
    """While the block runs, each ``getattr(owner, name)`` raises :class:`Delegated`, and so
    does every other name a module of the library binds to the same object (a re-export such
    as ``ntprl.llm.extract_answer``); before it, refuse ``fn`` when a name it uses is bound to
    one of them in its module."""
    originals = [(owner, name, getattr(owner, name)) for owner, name in targets]
    for owner, name, orig in list(originals):
        for key, module in list(sys.modules.items()):
            if key.split(".")[0] != "ntprl" or not isinstance(module, types.ModuleType):
                continue
            for attr, value in list(vars(module).items()):
                if value is orig and not (module is owner and attr == name):
                    originals.append((module, attr, orig))
    base = _unwrap(fn)
    if (getattr(base, "__module__", None) or "").split(".")[0] == "ntprl":
        # the answer *is* a library function (an alias, a functools.partial, a bound method)
        raise Delegated(f"❌ your answer is ntprl's own {getattr(base, '__name__', 'function')}"
                        ": write it yourself")
    used = set(_code_names(getattr(base, "__code__", None)))
    glb = getattr(base, "__globals__", {})
    held = [*(getattr(base, "__defaults__", None) or ()),  # def f(x, _f=library_function)
            *(getattr(base, "__kwdefaults__", None) or {}).values(),
            *closure_values(base)]
    for owner, name, orig in originals:
        if any(glb.get(n) is orig for n in used if n in glb) or any(h is orig for h in held):
            raise Delegated(f"❌ {getattr(fn, '__name__', 'your function')} calls ntprl's own "
                            f"{name}: write it yourself")

    def refuse(name):
        def call(*args, **kwargs):
            raise Delegated(f"❌ {getattr(fn, '__name__', 'your function')} calls ntprl's "
                            f"own {name}: write it yourself")
        return call

    try:
        for owner, name, _ in originals:
            setattr(owner, name, refuse(name))
        yield
    finally:
        for owner, name, orig in originals:
            setattr(owner, name, orig)


def _unwrap(fn):
    """The function under ``functools.partial`` and bound-method wrappers."""
    while True:
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif hasattr(fn, "__func__"):
            fn = fn.__func__
        else:
            return fn


def _code_names(code) -> list[str]:
    """Global names a function's code (and the code nested in it) refers to."""
    if code is None:
        return []
    names = list(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names += _code_names(const)
    return names


def _named(fn: Callable, reference: Callable, inputs, targets, tol: float = 1e-6) -> bool:
    """:func:`check` with the reference's answers computed first, then ``fn`` run with the
    library's ``targets`` forbidden (:func:`_forbid`)."""
    inputs = list(inputs)
    wants = [reference(*_args(a)) for a in inputs]
    with _forbid(fn, targets):
        return _compare(fn, inputs, wants, getattr(fn, "__name__", "your function"), tol)


def _bits(rows: int, d: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 2, (rows, d), generator=torch.Generator().manual_seed(seed))


def ex1_running_parity(running_parity: Callable) -> bool:
    """``running_parity(x)``: the running parities of each row of a (n, d) LongTensor of bits
    (a LongTensor of the same shape)."""
    from .tasks import ParityTask

    def reference(x):
        out, s = [], [0] * x.shape[0]
        for j in range(x.shape[1]):
            s = [a ^ int(b) for a, b in zip(s, x[:, j])]
            out.append(s)
        return torch.tensor(out, dtype=torch.long).T.reshape(x.shape)

    cases = [_bits(5, d, d) for d in (2, 3, 8, 16, 50)]
    cases += _hidden(lambda rng: _bits(rng.randint(1, 8), rng.randint(2, 40),
                                       rng.randrange(2**31)))
    return _named(running_parity, reference, cases, [(ParityTask, "chain_of")])


def ex1_sequence(make_sequence: Callable) -> bool:
    """``make_sequence(x, long)``: prompt bits, then the running parities (long) or the parity
    alone (short), then EOS, as a list of ints."""
    from .tasks import EOS, ParityTask

    def reference(x, long):
        chain = [sum(x[: i + 1]) % 2 for i in range(len(x))]
        return list(x) + (chain if long else chain[-1:]) + [EOS]

    rng = random.Random(1)
    cases = [([rng.randint(0, 1) for _ in range(d)], long) for d in (2, 3, 5, 7, 12)
             for long in (True, False)]
    cases += _hidden(lambda rng: ([rng.randint(0, 1) for _ in range(rng.randint(2, 24))],
                                  rng.random() < 0.5))
    return _named(make_sequence, reference, cases,
                  [(ParityTask, "sample"), (ParityTask, "chain_of")])


def ex1_predict(sampled_accuracy: Callable) -> bool:
    """``sampled_accuracy(p)``: accuracy of sampling a model that goes long with probability p
    (long answers right, short ones a coin flip)."""
    from . import theory

    cases = [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.9, 1.0] + _hidden(lambda rng: rng.random())
    return _named(sampled_accuracy, lambda p: p + (1 - p) / 2, cases,
                  [(theory, "accuracy"), (theory, "greedy_accuracy"),
                   (theory, "first_token_prob")])


def ex2_first_token(short_match_share: Callable) -> bool:
    """``short_match_share(seqs, d)``: among the short sequences (one answer token, then EOS),
    the fraction whose answer equals their first prompt bit (a float)."""
    from .tasks import EOS, ParityTask

    def reference(seqs, d):
        short = [row for row in seqs.tolist() if row[d + 1] == EOS]
        return sum(int(row[d] == row[0]) for row in short) / len(short)

    cases = [(ParityTask(d, p).sample(500, torch.Generator().manual_seed(k)), d)
             for k, (d, p) in enumerate([(4, 0.1), (8, 0.5), (16, 0.25), (20, 0.9), (3, 0.0)])]

    def drawn(rng):
        d = rng.randint(2, 24)
        return ParityTask(d, rng.uniform(0, 0.9)).sample(rng.randint(200, 600), _gen(rng)), d
    cases += _hidden(drawn)
    return _named(short_match_share, reference, cases, [])


def ex2_marker(greedy_goes_long_with_marker: Callable) -> bool:
    """``greedy_goes_long_with_marker(p)``: does greedy decoding write the marker M, which has
    probability p against (1 - p) / 2 for each bit? A tie is not a win (p = 1/3 is False)."""
    from . import theory

    def reference(p):
        p = Fraction(p) if not isinstance(p, Fraction) else p
        return p > (1 - p) / 2

    cases = [0.0, 0.1, 0.3, 0.32, Fraction(1, 3), 0.34, 0.5, 0.9, 1.0]
    cases += _hidden(lambda rng: rng.random())
    return _named(greedy_goes_long_with_marker, reference, cases, [(theory, "tempered")])


def ex2_temperature(long_prob_at: Callable) -> bool:
    """``long_prob_at(p, tau)``: the long fraction of sampling at temperature ``tau`` from a
    model calibrated to p (each of the two decisions tempered)."""
    from . import theory

    def reference(p, tau):
        def sharpen(a, b):
            a, b = a ** (1 / tau), b ** (1 / tau)
            return a / (a + b)
        return sharpen((1 + p) / 2, (1 - p) / 2) * sharpen(2 * p / (1 + p), (1 - p) / (1 + p))

    cases = [(p, t) for p in (0.05, 0.2, 0.3, 0.4, 0.8) for t in (0.5, 0.75, 1.0, 1.5)]
    cases += _hidden(lambda rng: (rng.uniform(0.01, 0.99), rng.uniform(0.25, 3.0)))
    return _named(long_prob_at, reference, cases,
                  [(theory, "long_prob"), (theory, "tempered"), (theory, "accuracy")])


def ex2_probe(calibration_probe: Callable) -> bool:
    """``calibration_probe(model, prompts)``: ``(P(first response token = x_1), P(not EOS after
    x_1))``, each averaged over the prompts, from one teacher-forced pass; checked on small
    random GPTs (their probabilities are arbitrary, so a formula cannot pass)."""
    from . import metrics
    from .models import GPT, GPTConfig
    from .tasks import EOS, ParityTask

    def reference(model, prompts):
        d = prompts.shape[1]
        seq = torch.cat([prompts, prompts[:, :1]], dim=1)
        with torch.no_grad():
            probs = torch.softmax(model(seq).double(), dim=-1)
        first = probs[torch.arange(len(prompts)), d - 1, prompts[:, 0]]
        return first.mean().item(), (1 - probs[:, d, EOS]).mean().item()

    def case(d, model_seed, prompt_seed):
        task = ParityTask(d, 0.5)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(model_seed)
            model = GPT(GPTConfig(vocab_size=4, block_size=task.seq_len, n_layer=1, n_head=2,
                                  n_embd=16)).eval()
            for p in model.parameters():  # spread the probabilities far from uniform
                p.data.mul_(20)
        return model, task.prompts(64, torch.Generator().manual_seed(prompt_seed))

    cases = [case(d, 100 + k, k) for k, d in enumerate((5, 8, 12))]
    cases += _hidden(lambda rng: case(rng.randint(3, 12), rng.randrange(2**31),
                                      rng.randrange(2**31)), n=3)
    return _named(calibration_probe, reference, cases, [(metrics, "branch_probs")], tol=1e-4)


STAR_MAP_CASES = [0.001, 0.01, 0.1, 0.25, 1 / 3, 0.5, 0.9, 1.0]  # ex3-star-map's fixed cases


def ex3_star_map(star_round: Callable) -> bool:
    """``star_round(p)``: the long share after one perfectly fitted STaR round from share p."""
    from . import theory

    cases = STAR_MAP_CASES + _hidden(lambda rng: rng.random())
    return _named(star_round, lambda p: 2 * p / (1 + p), cases,
                  [(theory, "star_map"), (theory, "continue_prob")])


def ex3_feature(chain_feature: Callable) -> bool:
    """``chain_feature(d, i)``: the pair of positions ``(a, b)``, a < b, whose sign product is
    the chain token s_i (found here by brute force on sampled chains)."""
    from .tasks import ParityTask

    def reference(d, i):
        seq = ParityTask(d, 1.0).sample(512, torch.Generator().manual_seed(0))
        v, target = 1 - 2 * seq, 1 - 2 * seq[:, d + i - 1]
        for a in range(d + i - 1):
            for b in range(max(a + 1, d), d + i - 1):
                if torch.equal(v[:, a] * v[:, b], target):
                    return (a, b)

    cases = [(4, 2), (6, 3), (8, 8), (12, 5), (5, 5)]

    def drawn(rng):
        d = rng.randint(4, 16)
        return d, rng.randint(2, d)
    cases += _hidden(drawn)
    return _named(chain_feature, reference, cases, [])


def ex3_epsilon(rounds_to: Callable) -> bool:
    """``rounds_to(p, eps)``: STaR rounds from long share p until the share is at least
    1 - eps (odds double each round)."""
    from . import theory

    def reference(p, eps):
        p, eps, n = Fraction(p), Fraction(eps), 0
        while p < 1 - eps:
            p, n = 2 * p / (1 + p), n + 1
        return n

    cases = [(0.01, 0.01), (0.2, 0.01), (0.05, 0.1), (0.5, 0.001), (0.3, 0.2), (0.9, 0.05),
             (0.9, 0.2)]  # the last: already there, no round
    cases += _hidden(lambda rng: (rng.uniform(0.001, 0.95), 10 ** -rng.uniform(0.5, 3)))
    return _named(rounds_to, reference, cases,
                  [(theory, "star_rounds_to_threshold"), (theory, "log_odds_rounds")])


def ex4_grpo(grpo_advantages: Callable) -> bool:
    """``grpo_advantages(rewards, group_size)``: (reward - group mean) / (group population std
    + 1e-6) for groups of adjacent samples; a float tensor of the rewards' shape."""
    from .train import rl

    def reference(rewards, g):
        rows = rewards.double().view(-1, g).tolist()
        out = []
        for row in rows:
            m = sum(row) / g
            sd = math.sqrt(sum((r - m) ** 2 for r in row) / g)
            out += [(r - m) / (sd + 1e-6) for r in row]
        return torch.tensor(out, dtype=torch.float32)

    gen = torch.Generator().manual_seed(0)
    cases = [((torch.rand(n * g, generator=gen) < q).float(), g)
             for n, g, q in ((1, 2, 0.5), (4, 8, 0.4), (16, 4, 0.4), (3, 16, 0.2), (2, 4, 1.0))]

    def drawn(rng):
        n, g = rng.randint(1, 12), rng.randint(2, 16)
        return (torch.rand(n * g, generator=_gen(rng)) < rng.random()).float(), g
    cases += _hidden(drawn)
    return _named(grpo_advantages, reference, cases, [(rl, "group_advantages")], tol=1e-5)


def ex4_loss(pg_loss: Callable) -> bool:
    """``pg_loss(logp, adv, mask, loss_agg, max_new_tokens)``: the on-policy policy-gradient
    loss with ``loss_agg``'s token weights; its value and its gradient with respect to ``logp``
    are compared (a loss that detaches ``logp`` fails)."""
    from .train import rl

    def weights(mask, agg, max_new):
        m = mask.double()
        if agg == "token_mean":
            return m / m.sum()
        if agg == "seq_mean":
            return m / m.sum(1, keepdim=True) / len(m)
        return m / (len(m) * max_new)

    def case(b, t, agg, spare, gen):
        """``b`` answers in ``t`` columns, ``max_new_tokens = t + spare``: the sampler stops
        when every row has finished, so a batch can have fewer columns than max_new_tokens."""
        lengths = torch.randint(1, t, (b,), generator=gen)
        lengths[0] = t  # one answer as long as the columns, others short
        mask = torch.arange(t)[None, :] < lengths[:, None]
        logp = -torch.rand(b, t, generator=gen, dtype=torch.float64) * 3
        adv = torch.randn(b, generator=gen, dtype=torch.float64)
        return logp, adv, mask, agg, t + spare

    gen = torch.Generator().manual_seed(0)
    cases = [case(b, t, agg, spare, gen) for b, t, agg, spare in
             [(4, 9, "token_mean", 0), (6, 12, "seq_mean", 0), (5, 7, "constant", 0),
              (8, 20, "seq_mean", 0), (3, 5, "token_mean", 0), (4, 6, "constant", 5)]]

    def drawn(rng):
        return case(rng.randint(1, 10), rng.randint(2, 24), rng.choice(rl.LOSS_AGGS),
                    rng.randint(0, 6), _gen(rng))
    cases += _hidden(drawn)

    def both(fn):  # value and gradient, as one comparable pair
        def run(logp, adv, mask, agg, t):
            x = logp.clone().requires_grad_(True)
            loss = fn(x, adv, mask, agg, t)
            if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not loss.requires_grad:
                raise AssertionError("❌ pg_loss must return a scalar tensor that gradients "
                                     "flow through (from logp)")
            loss.backward()
            return [loss.detach().double(), x.grad.double()]
        run.__name__ = getattr(fn, "__name__", "pg_loss")
        return run

    reference = both(lambda logp, adv, mask, agg, t:
                     -(weights(mask, agg, t) * adv[:, None] * logp).sum())
    wants = [reference(*c) for c in cases]
    answer = both(pg_loss)
    with _forbid(pg_loss, [(rl, "token_weights"), (rl, "policy_loss"),
                           (rl, "policy_gradient_update")]):
        return _compare(answer, cases, wants, answer.__name__, 1e-6)


def ex4_star(star_filter: Callable) -> bool:
    """``star_filter(tokens, rewards)``: the rows of ``tokens`` whose reward is 1, in order (an
    empty (0, T) tensor when there are none)."""
    def reference(tokens, rewards):
        kept = [t for t, r in zip(tokens, rewards) if r == 1]
        return torch.stack(kept) if kept else tokens[:0]

    gen = torch.Generator().manual_seed(0)
    cases = [(torch.randint(0, 4, (n, 9), generator=gen),
              (torch.rand(n, generator=gen) < q).float())
             for n, q in ((8, 0.5), (32, 0.1), (5, 1.0), (6, 0.0))]

    def drawn(rng):
        n, t = rng.randint(1, 40), rng.randint(2, 12)
        return (torch.randint(0, 4, (n, t), generator=_gen(rng)),
                (torch.rand(n, generator=_gen(rng)) < rng.random()).float())
    cases += _hidden(drawn)
    return _named(star_filter, reference, cases, [])


class _RewardOnly:
    """A parity task whose e2e reward also asks for one route (``"long"`` or ``"short"``), and
    which remembers how many samples its last reward call rewarded."""

    def __init__(self, task, route: str):
        self._task, self._route, self.rewarded = task, route, None

    def __getattr__(self, name):
        return getattr(self._task, name)

    def reward_e2e(self, prompts, responses):
        long = self._task.is_long(responses)
        want = long if self._route == "long" else ~long
        r = self._task.reward_e2e(prompts, responses) * want
        self.rewarded = int((r > 0).sum())
        return r


_STAR_START: dict = {}


def _star_start():
    """A small GPT that NTP has taught the d = 4 chain and its mixture (long share ~1/2)."""
    if not _STAR_START:
        from .models import GPT, GPTConfig
        from .tasks import ParityTask
        from .train import ntp
        task = ParityTask(4, 0.5)
        with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
            torch.manual_seed(0)
            model = GPT(GPTConfig(vocab_size=task.vocab_size, block_size=task.seq_len,
                                  n_layer=1, n_head=2, n_embd=32))
        ntp.train(model, task, 300, 64, 3e-3, seed=0, progress=False)
        _STAR_START.update(task=task, config=model.config,
                           state={k: v.clone() for k, v in model.state_dict().items()})
    return _STAR_START


def _long_share(model, task) -> float:
    """The model's sampled long share (T = 1) on 1024 fixed prompts."""
    from .metrics import evaluate
    return evaluate(model, task, 1024, seed=123, modes=("sampled",))["sampled_long_frac"]


def ex4_star_round(star_round: Callable) -> bool:
    """``star_round(model, opt, task, n, steps, batch, generator)``: one STaR round. Checked by
    its effect: with a reward that keeps only the long (then only the short) correct answers,
    one round must move the model's sampled long share the way the library's round does (a
    round that skips the filter, samples greedily, or leaves EOS out of the loss does not),
    and it must return how many samples the reward kept."""
    from .models import GPT
    from .train import rl

    start = _star_start()
    name = getattr(star_round, "__name__", "star_round")

    def fresh():
        model = GPT(start["config"])
        model.load_state_dict(start["state"])
        return model, torch.optim.AdamW(model.parameters(), lr=3e-3)

    def library_round(model, opt, task, n, steps, batch, generator):
        ro = rl.rollout(model, task, n, 1, task.max_response_len, 1.0, task.reward_e2e,
                        generator)
        return rl.star_update(model, opt, ro, star_steps=steps, star_batch=batch,
                              grad_clip=1.0, generator=generator)

    before = _long_share(fresh()[0], start["task"])
    for route in ("long", "short"):
        shares = {}
        for who, fn in (("reference", library_round), ("yours", star_round)):
            model, opt = fresh()
            task = _RewardOnly(start["task"], route)
            gen = torch.Generator().manual_seed(7)
            if who == "yours":
                with _forbid(fn, [(rl, "star_update"), (rl, "train")]):
                    try:
                        kept = fn(model, opt, task, 512, 40, 64, gen)
                    except NotImplementedError:
                        raise AssertionError(f"❌ {name} is not written yet "
                                             "(it raised NotImplementedError)") from None
                if int(kept) != task.rewarded:
                    raise AssertionError(f"❌ {name} returned {kept}, but the reward kept "
                                         f"{task.rewarded} of the 512 samples")
            else:
                fn(model, opt, task, 512, 40, 64, gen)
            shares[who] = _long_share(model, start["task"])
        moved, want = shares["yours"] - before, shares["reference"] - before
        if moved * want <= 0 or abs(moved) < 0.5 * abs(want):
            raise AssertionError(
                f"❌ {name}: rewarding only {route} answers, one round moved the sampled long "
                f"share from {before:.2f} to {shares['yours']:.2f}; the library's round moves "
                f"it to {shares['reference']:.2f}. Fine-tune only on the rewarded samples, "
                "sampled at temperature 1, and check which tokens the loss counts.")
    print(f"✅ {name} moves the long share as a STaR round should (rewarding long or short "
          "answers) and counts the kept samples")
    return True


def ex4_ablation(length_ablation: Callable) -> bool:
    """``length_ablation(start, task, steps, seed, **settings)``: session 4's ablation, GRPO
    from the same start model under each ``loss_agg`` of ``rl.LOSS_AGGS``, returning
    ``{loss_agg: [mean response length after each step]}``. Checked against the library's
    runs of the same ablation on a small model: every arm must start from ``start``'s weights
    (leaving them unchanged), with the same ``seed`` and the ``settings`` passed on to
    ``rl.train``, so the arms differ in ``loss_agg`` alone."""
    from .models import GPT
    from .train import rl

    start = _star_start()
    name = getattr(length_ablation, "__name__", "length_ablation")
    steps, seed = 5, 3
    settings = dict(lr=3e-3, prompts_per_step=8, samples_per_prompt=4)

    def fresh():
        model = GPT(start["config"])
        model.load_state_dict(start["state"])
        return model

    want = {}
    for agg in rl.LOSS_AGGS:
        hist = rl.train(fresh(), start["task"], "grpo", steps, loss_agg=agg, seed=seed,
                        progress=False, **settings)
        want[agg] = [r["len_mean"] for r in hist]
    model = fresh()
    try:
        got = length_ablation(model, start["task"], steps, seed, **settings)
    except NotImplementedError:
        raise AssertionError(f"❌ {name} is not written yet "
                             "(it raised NotImplementedError)") from None
    if not isinstance(got, dict) or set(got) != set(rl.LOSS_AGGS):
        keys = sorted(got) if isinstance(got, dict) else type(got).__name__
        raise AssertionError(f"❌ {name} must return a dict with one curve for each of "
                             f"{rl.LOSS_AGGS}; got {keys}")
    for agg in rl.LOSS_AGGS:
        curve = got[agg]
        if not isinstance(curve, (list, tuple)) or len(curve) != steps:
            raise AssertionError(f"❌ {name}: the {agg!r} curve must hold one mean length per "
                                 f"step ({steps} for steps={steps}); got {curve!r}")
    if any(not torch.equal(v, start["state"][k]) for k, v in model.state_dict().items()):
        raise AssertionError(f"❌ {name} changed the weights of `start`: train a copy "
                             "(copy.deepcopy) in every arm, so each arm starts from the same "
                             "model")
    for i, agg in enumerate(rl.LOSS_AGGS):
        if not _same([float(x) for x in got[agg]], want[agg], 1e-6):
            hint = ("the first arm agrees, so a later arm did not start from `start`'s "
                    "weights (train a fresh copy in every arm)" if i and _same(
                        [float(x) for x in got[rl.LOSS_AGGS[0]]], want[rl.LOSS_AGGS[0]], 1e-6)
                    else "run rl.train(copy, task, \"grpo\", steps, loss_agg=..., seed=seed, "
                    "**settings) and read each step's len_mean")
            raise AssertionError(
                f"❌ {name}: the {agg!r} arm gives lengths {[round(float(x), 3) for x in got[agg]]}"
                f", the library's run {[round(x, 3) for x in want[agg]]}: {hint}")
    print(f"✅ {name} runs a clean ablation: every arm from the same start, the same seed and "
          "settings, only loss_agg changed")
    return True


# ex4-rounds' fixed cases (1/9 and 0.2 land exactly on 1/3 after some rounds)
ROUNDS_CASES = [0.005, 0.01, 0.05, 0.1, 1 / 9, 0.2, 0.25, 0.3, 1 / 3, 0.34, 0.9]


def ex4_rounds(rounds_needed: Callable) -> bool:
    """``rounds_needed(p)``: STaR rounds until the long share *exceeds* 1/3, in exact
    arithmetic (p = 0.2 lands exactly on 1/3 after one round, so it needs two)."""
    from . import theory

    def reference(p):
        q, n = Fraction(p).limit_denominator(10**12), 0
        while q <= Fraction(1, 3):
            q, n = 2 * q / (1 + q), n + 1
        return n

    cases = ROUNDS_CASES + _hidden(lambda rng: rng.uniform(0.001, 0.99))
    return _named(rounds_needed, reference, cases,
                  [(theory, "star_rounds_to_threshold"), (theory, "log_odds_rounds")])


def ex5_chain(long_chain: Callable) -> bool:
    """Chapter 5, ``ex5-chain``: ``long_chain(a, b, n)`` against the chain format on random
    problems with 1, 2, 3 and 5 digits (and the extreme operands of each size)."""
    from .tasks import MultiplicationTask
    from .tasks.multiplication import MARK, SEP

    def reference(a, b, n):
        out = [MARK]
        for i in range(1, n + 1):
            out += [SEP] if i > 1 else []
            s = a * (b % 10 ** i)
            out += [(s // 10 ** j) % 10 for j in range(2 * n)]
        return out

    gen = torch.Generator().manual_seed(0)
    cases = []
    for n in (1, 2, 3, 5):
        lo, hi = (10 ** (n - 1) if n > 1 else 0), 10 ** n
        cases += [(lo, lo, n), (hi - 1, hi - 1, n)]
        cases += [tuple(map(int, ab)) + (n,) for ab in torch.randint(lo, hi, (5, 2), generator=gen)]

    def drawn(rng):
        n = rng.randint(1, 6)
        lo = 10 ** (n - 1) if n > 1 else 0
        return rng.randrange(lo, 10 ** n), rng.randrange(lo, 10 ** n), n
    cases += _hidden(drawn)
    return _named(long_chain, reference, cases, [(MultiplicationTask, "chain_of")])


def ex5_threshold(greedy_long_share: Callable) -> bool:
    """``greedy_long_share(p_cot, shares)``: the fraction of prompts on which a calibrated
    model's greedy decoding goes long, when prompt i's short answers have a share ``shares[i]``
    of their mass on their most likely first token (long iff p > m (1 - p)). No case is a tie."""
    from . import theory

    def reference(p, shares):
        return sum(p > m * (1 - p) for m in shares) / len(shares)

    mixed = [1.0] * 6 + [0.1] * 4  # knows the first digit on 60% of the prompts
    cases = [(0.3, [1.0]), (0.55, [1.0]), (0.05, mixed), (0.2, mixed), (0.6, mixed),
             (0.4, [0.9, 0.5, 1.0, 0.2]), (0.6, [0.9, 0.5, 1.0, 0.2]), (0.3, [0.8] * 3 + [0.3]),
             (0.1, [0.24] * 5)]
    cases += _hidden(lambda rng: (rng.uniform(0.01, 0.8),
                                  [rng.uniform(0.05, 1.0) for _ in range(rng.randint(1, 12))]))
    return _named(greedy_long_share, reference, cases, [(theory, "divergent_threshold")])


def ex5_lengths(long_share: Callable) -> bool:
    """``long_share(hist, task)``: the share of responses of exactly the task's long length in
    a length histogram (``hist[k]`` = responses of k tokens)."""
    from .tasks import MultiplicationTask

    rng = random.Random(0)
    cases = []
    for n in (1, 2, 3):
        task = MultiplicationTask(n, 0.5)
        hist = [rng.randint(0, 50) for _ in range(task.long_len + 3)]
        hist[task.long_len] += 1
        cases.append((hist, task))

    def drawn(rng):
        task = MultiplicationTask(rng.randint(1, 4), 0.5)
        hist = [rng.randint(0, 200) for _ in range(task.long_len + rng.randint(1, 5))]
        hist[task.long_len] += 1
        return hist, task
    cases += _hidden(drawn)
    return _named(long_share, lambda hist, task: hist[task.long_len] / sum(hist), cases, [])


def ex6_threshold(threshold_for: Callable) -> bool:
    """Chapter 6's ``threshold_for(short_first_probs)``: m / (1 + m) with m the largest share
    of the short answers' first tokens (1/11 for ten equally likely digits)."""
    from . import theory

    splits = [[1.0], [0.1] * 10, [0.5, 0.5], [0.7, 0.2, 0.1], [0.05, 0.9, 0.05],
              [0.25] * 4]

    def drawn(rng):
        w = [rng.random() for _ in range(rng.randint(1, 10))]
        return [x / sum(w) for x in w]
    splits += _hidden(drawn)
    return _named(threshold_for, lambda q: max(q) / (1 + max(q)), splits,
                  [(theory, "divergent_threshold")])


EXTRACT_CASES = ["#### 18", "####18", "#### 1,234", "#### -5", "#### $42", "#### 3.50",
                 "#### 7.0",
                 "The answer is 12.", "so 3 + 4 = 7 apples", "#### 12\n#### 13", "no number",
                 "#### .5", "it is 20 - 2", "20-2", "#### 9\nQuestion: 1+1=?\nAnswer: #### 2",
                 "37+48=85, 85+29=114.\n#### 114<|im_end|>", "#### none\nbut 4 apples",
                 # the cut decides: without it the answer would be 4, 7 and 13
                 "The answer is 5.\nQuestion: 2+2=?\nAnswer: 4", "Question: 3+4=?\nAnswer: 7",
                 "So 12 apples.<|im_end|>\n<|im_start|>user\n#### 13"]


def ex6_extract(my_extract: Callable) -> bool:
    """``my_extract(text)``: the answer of a model's response, as chapter 6 defines it."""
    from .llm import gsm8k

    def drawn(rng):
        a, b, n = rng.randint(1, 99), rng.randint(1, 99), rng.randint(1, 10**6)
        return rng.choice([
            f"#### {n}", f"#### {n:,}", f"#### ${n:,}", f"#### -{n}", f"#### {n / 100:.2f}",
            f"The answer is {n}.", f"so {a} + {b} = {a + b} apples",
            f"{a} * {b} = {a * b}.\n#### {a * b}", f"#### {a}\n#### {b}",
            f"The answer is {a}.\nQuestion: {b}+{a}=?\nAnswer: {a + b}",
            f"{a}+{b}={a + b}.\n#### {a + b}<|im_end|>\n<|im_start|>user\n#### {n}"])

    cases = EXTRACT_CASES + _hidden(drawn, n=10)
    return _named(my_extract, gsm8k.extract_answer, cases, [(gsm8k, "extract_answer")])


def ex6_target(my_long_target: Callable, solutions: Iterable[str] = ()) -> bool:
    """``my_long_target(solution)``: a GSM8K solution without its <<...>> notes, ending in
    '\n#### N' (``solutions``: more real solutions to try; without them, the solutions of the
    package's own small GSM8K-style fixture, as the grader runs it)."""
    from .llm import gsm8k
    from .llm.recipe import TINY_DATA

    solutions = list(solutions) or [r["answer"] for split in ("train", "test")
                                    for r in gsm8k.load_gsm8k(split, TINY_DATA)]

    tricky = ["She pays 3 * $4 = $<<3*4=12>>12.\n#### 12",
              "It is 1,000 + 200 = <<1000+200=1200>>1,200 m.\n"
              "Then 1200/4=<<1200/4=300>>300\n#### 1,200",
              "No notes here.\n#### -7"]

    def reference(solution):
        reasoning, answer = solution.rsplit("####", 1)
        reasoning = re.sub(r"<<[^<>]*>>", "", reasoning).rstrip()
        return f"{reasoning}\n#### {gsm8k.normalize_number(answer)}"

    def drawn(rng):  # a GSM8K-style solution with calculator notes
        lines, total = [], rng.randint(1, 50)
        for _ in range(rng.randint(1, 4)):
            x, before = rng.randint(2, 400), total
            op, total = rng.choice([("+", total + x), ("*", total * x)])
            lines.append(f"Then {op} {x}: <<{before}{op}{x}={total}>>{total:,} in all.")
        return "\n".join(lines) + f"\n#### {total:,}"

    cases = tricky + list(solutions) + _hidden(drawn)
    return _named(my_long_target, reference, cases,
                  [(gsm8k, "long_target"), (gsm8k, "strip_calculator")])


EXERCISES: dict[str, tuple[str, Callable]] = {
    "ex1-running-parity": ("running_parity", ex1_running_parity),
    "ex1-sequence": ("make_sequence", ex1_sequence),
    "ex1-predict": ("sampled_accuracy", ex1_predict),
    "ex2-first-token": ("short_match_share", ex2_first_token),
    "ex2-marker": ("greedy_goes_long_with_marker", ex2_marker),
    "ex2-temperature": ("long_prob_at", ex2_temperature),
    "ex2-probe": ("calibration_probe", ex2_probe),
    "ex3-star-map": ("star_round", ex3_star_map),
    "ex3-feature": ("chain_feature", ex3_feature),
    "ex3-epsilon": ("rounds_to", ex3_epsilon),
    "ex4-grpo": ("grpo_advantages", ex4_grpo),
    "ex4-loss": ("pg_loss", ex4_loss),
    "ex4-star": ("star_filter", ex4_star),
    "ex4-star-round": ("star_round", ex4_star_round),
    "ex4-ablation": ("length_ablation", ex4_ablation),
    "ex4-rounds": ("rounds_needed", ex4_rounds),
    "ex5-chain": ("long_chain", ex5_chain),
    "ex5-threshold": ("greedy_long_share", ex5_threshold),
    "ex5-lengths": ("long_share", ex5_lengths),
    "ex6-threshold": ("threshold_for", ex6_threshold),
    "ex6-extract": ("my_extract", ex6_extract),
    "ex6-target": ("my_long_target", ex6_target),
}
"""Each exercise label of the book: the name of the function it asks for, and its check."""

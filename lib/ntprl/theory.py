"""Closed-form predictions for a model that learned the chain and nothing of the short map.

Derivation (chapter 2, "What a model that knows only the chain must do"): on D(p), a long
response starts with ``s_1 = x_1``; a short one is the parity, which equals ``x_1`` half the
time. A next-token predictor that knows the chain but cannot compute the parity directly
therefore puts

- probability ``(1 + p) / 2`` on ``x_1`` as the first response token;
- after ``x_1``, probability ``2p / (1 + p)`` on continuing the chain (else EOS);

so sampling at temperature 1 goes long with probability ``p`` (length calibration) and is right
with probability ``(1 + p) / 2``, while greedy decoding goes long only when ``p > 1/3``.
STaR keeps correct samples, which maps the long share ``p`` to ``2p / (1 + p)``.
"""

from __future__ import annotations

import math
from fractions import Fraction

THRESHOLD = 1 / 3


def _check_p(p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p_cot={p!r} is not allowed: p_cot must lie in [0, 1]")


def first_token_prob(p: float) -> float:
    """Probability of writing ``x_1`` as the first response token: ``(1 + p) / 2``."""
    _check_p(p)
    return (1 + p) / 2


def continue_prob(p: float) -> float:
    """Probability of continuing the chain after ``x_1`` (not writing EOS): ``2p / (1 + p)``."""
    _check_p(p)
    return 2 * p / (1 + p)


def tempered(probs: list[float], temperature: float) -> list[float]:
    """A distribution raised to the power ``1 / temperature`` and renormalised (T = 0: argmax,
    ties split evenly)."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature!r} is not allowed: it must be >= 0")
    if temperature == 0:
        top = max(probs)
        winners = [q == top for q in probs]
        return [w / sum(winners) for w in winners]
    w = [q ** (1 / temperature) if q > 0 else 0.0 for q in probs]
    return [x / sum(w) for x in w]


def long_prob(p: float, temperature: float = 1.0) -> float:
    """Probability that decoding at ``temperature`` writes the long chain (0: greedy)."""
    first = tempered([first_token_prob(p), 1 - first_token_prob(p)], temperature)[0]
    cont = tempered([continue_prob(p), 1 - continue_prob(p)], temperature)[0]
    return first * cont


def accuracy(p: float, temperature: float = 1.0) -> float:
    """Accuracy when long answers are always right and short ones are coin flips."""
    q = long_prob(p, temperature)
    return q + (1 - q) / 2


def calibrated_loss(p: float, d: int) -> float:
    """The NTP loss on D(p) (nats per response token, EOS included, as ``ntp.train`` reports
    it) of the model this module describes: the chain learned exactly, the length calibrated.
    Per sequence it is uncertain at two decisions only: the first token (``x_1`` with
    probability ``(1 + p) / 2``) and, after ``x_1``, whether to continue (``2p / (1 + p)``);
    every chain step and every EOS after a short answer is certain. So the loss is
    ``(H((1+p)/2) + (1+p)/2 * H(2p/(1+p))) / (p (d + 1) + 2 (1 - p))``, ``H`` the binary
    entropy and the denominator the response tokens of a sequence on average (a long one:
    ``d`` chain tokens and EOS; a short one: the answer and EOS). No model that has not
    learned the short map can do better; training flattens out here."""
    _check_p(p)
    if not isinstance(d, int) or isinstance(d, bool) or d < 1:
        raise ValueError(f"d={d!r} is not allowed: it must be a positive integer")

    def entropy(q):  # binary entropy in nats (0 at q = 0 or 1)
        return -sum(x * math.log(x) for x in (q, 1 - q) if x > 0)

    first = first_token_prob(p)
    per_sequence = entropy(first) + first * entropy(continue_prob(p))
    return per_sequence / (p * (d + 1) + 2 * (1 - p))


def greedy_accuracy(p: float) -> float:
    """1 above the threshold 1/3, 1/2 below it (and 3/4 exactly at it, where greedy ties)."""
    return accuracy(p, 0.0)


def divergent_threshold(short_top_share: float) -> float:
    """The greedy threshold of a format whose long route starts with a token of its own.

    Then the greedy decision is made at the first response token: the long route's token has
    probability ``p``, and the most likely first token of the short answers has
    ``(1 - p) * short_top_share``. Greedy goes long iff ``p > short_top_share * (1 - p)``, i.e.
    ``p > m / (1 + m)`` with ``m = short_top_share``. A marker before a parity chain (short
    answers split evenly over two bits, ``m = 1/2``): 1/3, as without the marker. Short answers
    that all start with the same token (``"#### N"``, ``m = 1``): 1/2."""
    if not 0.0 < short_top_share <= 1.0:
        raise ValueError(f"short_top_share={short_top_share!r} is not allowed: "
                         "it must lie in (0, 1]")
    return short_top_share / (1 + short_top_share)


def star_map(p: float) -> float:
    """Long share after one STaR round that keeps the correct samples: ``2p / (1 + p)``."""
    _check_p(p)
    return 2 * p / (1 + p)


def exact(p: float) -> Fraction:
    """``p`` as the simplest fraction within 1e-12 of it: ``0.2`` is exactly 1/5 here (as a
    float it is slightly more), so ties with 1/3 are found, not decided by rounding."""
    return Fraction(p).limit_denominator(10**12)


def star_rounds_to_threshold(p: float) -> int:
    """STaR rounds until the long share *exceeds* 1/3 (greedy decoding goes long), computed
    exactly: round k gives odds ``2^k p / (1 - p)``, which exceed 1/2 (share 1/3) iff
    ``2^(k+1) p > 1 - p``. For ``0 < p <= 1/3`` that is ``floor(log2((1 - p) / (2p))) + 1``
    rounds; when the log is an integer the round before lands exactly *on* 1/3, a greedy tie
    (p = 0.2: one round gives 1/3 exactly, so two are needed)."""
    _check_p(p)
    if p == 0:
        raise ValueError("p_cot=0 is not allowed here: without long answers STaR never goes long")
    q, rounds = exact(p), 0
    while 2 ** (rounds + 1) * q <= 1 - q:
        rounds += 1
    return rounds


def log_odds_rounds(p: float) -> float:
    """``log2((1 - p) / (2p))``: the rounds the odds-doubling of STaR needs to pass 1/3."""
    _check_p(p)
    return math.log2((1 - p) / (2 * p))

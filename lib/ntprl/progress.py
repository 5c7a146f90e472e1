"""Progress bars: live in Jupyter and in terminals, none in a static build of the book.

Every long loop of the library draws its bar through :func:`bar`. The environment variable
``NTPRL_PROGRESS`` chooses: ``"auto"`` (default) uses ``tqdm.auto`` (a widget in Jupyter,
text in a terminal); ``"off"`` draws none. The book's HTML builds set ``off``: a saved
notebook keeps only a widget's first frame, so the page would show ``0%|`` for a loop that
finished.
"""

from __future__ import annotations

import os

ENV_VAR = "NTPRL_PROGRESS"
CHOICES = ("auto", "off")


def enabled() -> bool:
    """Whether bars are drawn (``$NTPRL_PROGRESS``, checked)."""
    value = os.environ.get(ENV_VAR, "auto")
    if value not in CHOICES:
        raise ValueError(f"{ENV_VAR}={value!r} is not allowed: choose one of {CHOICES}")
    return value == "auto"


def bar(iterable=None, *, disable: bool = False, **kwargs):
    """A ``tqdm.auto.tqdm`` bar (or a silent one when disabled here or by the environment)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=disable or not enabled(), **kwargs)

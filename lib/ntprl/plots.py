"""The book's figure style and the plots that recur across chapters.

Every helper takes an optional ``ax`` and returns it, so figures compose; call :func:`style`
once per notebook.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

# one colour per route/method, used consistently across the book
COLORS = {
    "short": "#d1495b",   # short-only data / short answers
    "chain": "#00798c",   # full chains / long answers
    "ntp": "#edae49",     # next-token prediction alone
    "rl": "#30638e",      # RL post-training
    "theory": "#444444",  # theory curves (dashed)
}


def style():
    """Apply the book's matplotlib style."""
    plt.rcParams.update({
        "figure.figsize": (6.0, 3.6), "figure.dpi": 110, "axes.spines.top": False,
        "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "font.size": 10,
        "axes.titlesize": 11, "legend.frameon": False, "savefig.bbox": "tight",
    })


def integer_x(*axes):
    """Tick the x axes at whole numbers only, for counts such as STaR rounds and RL steps (no
    round 2.5). Returns the first axes."""
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return axes[0]


def _ax(ax):
    return ax if ax is not None else plt.subplots()[1]


def label_run(ax, meta: dict):
    """Write where a stored run comes from (scale, device, date, commit) under the axes' lower
    right corner, below its x label, where it covers no data."""
    text = ", ".join(str(meta[k]) for k in ("scale", "device", "date") if meta.get(k))
    if meta.get("scale"):
        text = "scale " + text
    if meta.get("git_commit"):
        text += f", {meta['git_commit'][:7]}"
    ax.annotate(f"stored run: {text}", xy=(1, 0), xycoords="axes fraction", xytext=(0, -38),
                textcoords="offset points", ha="right", va="top", fontsize=7, color="0.4")
    return ax


def hardness(result: dict, ax=None):
    """Samples needed to reach the target greedy accuracy against d, short-only vs full chains,
    on a log scale. Runs that hit the budget are drawn as open markers at the budget line."""
    ax = _ax(ax)
    cap = result["max_steps"] * result["batch_size"]
    for kind, label in (("short", "short-only data ($p_{cot}=0$)"),
                        ("chain", "full chains ($p_{cot}=1$)")):
        runs = result[kind]
        ok = [(r["d"], r["samples"]) for r in runs if r["samples"] is not None]
        capped = [r["d"] for r in runs if r["samples"] is None]
        if ok:
            ax.plot(*zip(*ok), "o-", color=COLORS[kind], label=label)
        if capped:
            ax.plot(capped, [cap] * len(capped), "o", mfc="none", color=COLORS[kind],
                    label=f"{kind}: not learned within the budget")
    ax.axhline(cap, ls=":", color="0.5", lw=1, label="budget")
    ax.set_yscale("log")
    ax.set_xlabel("d (input bits)")
    ax.set_ylabel(f"samples to {result['target']:.0%} greedy accuracy")
    ax.legend(fontsize=8)
    return ax


# what a figure calls a metric of ntprl.metrics.evaluate or of a training history
LABELS = {"greedy_acc": "greedy accuracy", "sampled_acc": "sampled accuracy",
          "greedy_long_frac": "greedy long fraction", "sampled_long_frac":
          "sampled long fraction", "greedy_len_mean": "mean greedy length",
          "sampled_len_mean": "mean sampled length", "loss": "training loss",
          "samples": "samples seen", "step": "step"}


def curves(history: list[dict], keys=("greedy_acc",), x: str = "samples", ax=None, **kw):
    """Plot the given metrics of a training history (records without the key are skipped),
    each labelled in words (:data:`LABELS`)."""
    ax = _ax(ax)
    for key in keys:
        pts = [(r[x], r[key]) for r in history if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), label=LABELS.get(key, key), **kw)
    ax.set_xlabel(LABELS.get(x, x))
    ax.legend(fontsize=8)
    return ax


def length_hist(hist: list[int], ax=None, **kw):
    """Bar chart of a response-length histogram (``hist[k]``: responses of length k)."""
    ax = _ax(ax)
    total = max(sum(hist), 1)
    ax.bar(range(len(hist)), [h / total for h in hist], **kw)
    ax.set_xlabel("response length (tokens before EOS)")
    ax.set_ylabel("fraction of responses")
    return ax

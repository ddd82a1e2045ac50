"""`swift-ext review`'s plots: PNGs drawn with matplotlib (Agg), for the report page.

Histograms get integer count axes, one bar per value while there are few, adaptive (and, when
values spread over more than ``LOG_SPREAD`` times, logarithmic) bins past that. Names from the
logs reach matplotlib with ``$`` escaped, so a reward called ``$\\frac$`` is text, not broken math.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

from ..bounded import Histogram, short
from ..page import fmt
from ..text import visible
from .summary import ReviewSummary

MAX_BARS = 30  # histograms with more distinct values are binned
MAX_PLOTTED = 12  # metric keys drawn per figure (the rest are listed, not drawn)
LOG_SPREAD = 50  # max / min beyond which a histogram's x axis is logarithmic
SHORT_RUN = 20  # runs of at most this many steps: markers with one tick per whole step


def _plain(text: str, limit: int = 60) -> str:
    """A log-controlled name as matplotlib text: ``$`` escaped (no math text), length bounded."""
    return visible(short(str(text), limit)).replace('$', r'\$')


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _integer_counts(ax) -> None:
    from matplotlib.ticker import MaxNLocator
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def hist_edges(hists: Sequence[Histogram], scale: float, bins: int = 30):
    """Shared bin edges for histograms: log-spaced when values spread over > ``LOG_SPREAD`` x."""
    import numpy as np
    lo = min(h.min for h in hists if h) * scale
    hi = max(h.max for h in hists if h) * scale
    if hi <= lo:
        return np.array([lo - 0.5 * max(abs(lo), 1) * 0.1, hi + 0.5 * max(abs(hi), 1) * 0.1]), False
    if lo > 0 and hi / lo > LOG_SPREAD:
        return np.geomspace(lo, hi * 1.0001, bins + 1), True
    return np.linspace(lo, hi + (hi - lo) * 1e-6, bins + 1), False


def plot_hist(ax, hist: Histogram, scale: float, label: str, color: str | None = None, edges=None) -> None:
    """One bar per value while there are few (categorical), else adaptive bins (log when spread)."""
    import numpy as np
    values = np.array([v for v, _ in hist.items()], dtype=float) * scale
    weights = np.array([n for _, n in hist.items()], dtype=float)
    if edges is None and len(values) <= MAX_BARS:
        labels = [fmt(float(v)) if scale != 1 else fmt(int(v)) for v in values]
        ax.bar(range(len(values)), weights, color=color, alpha=0.8, label=_plain(label))
        ax.set_xticks(range(len(values)), labels, rotation=45 if len(values) > 8 else 0, fontsize=7)
    else:
        log = False
        if edges is None:
            edges, log = hist_edges([hist], scale)
        elif len(edges) > 2 and edges[0] > 0 and edges[-1] / edges[0] > LOG_SPREAD:
            log = True
        ax.hist(values, bins=edges, weights=weights, alpha=0.6, label=_plain(label), color=color)
        if log:
            ax.set_xscale('log')
    _integer_counts(ax)


def _series(ax, points: list, label: str) -> None:
    """A metric over steps, on an axis of whole steps; long series get a moving average over the faint raw values.

    A short run (at most ``SHORT_RUN`` steps) is drawn as markers with one tick per step and half a
    step of margin each side: one step is one marker on ``0.5 .. 1.5``, never a point on an axis of
    fractional steps.
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator
    points = sorted(points)
    steps = np.array([p[0] for p in points], dtype=float)
    values = np.array([p[1] for p in points], dtype=float)
    whole = sorted({int(p[0]) for p in points})
    if len(whole) <= SHORT_RUN:
        ax.plot(steps, values, marker='o', linestyle='-' if len(points) > 1 else 'none', label=_plain(label))
        ax.set_xticks(whole, [str(s) for s in whole], fontsize=7)
        ax.set_xlim(whole[0] - 0.5, whole[-1] + 0.5)
        return
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(points) <= 100:
        ax.plot(steps, values, marker='.', label=_plain(label))
        return
    ax.plot(steps, values, linewidth=0.5, alpha=0.3)
    window = max(2, len(points) // 50)
    smooth = np.convolve(values, np.ones(window) / window, mode='valid')
    ax.plot(steps[window - 1:], smooth, label=_plain(f'{label} (mean of {window})'))


def make_plots(s: ReviewSummary) -> list[tuple[str, str, bytes]]:
    """The report's plots as ``[(file name, title, PNG bytes)]``."""
    plt = _pyplot()
    hists = s.images.histograms if s.images is not None else {}
    series = s.series
    made: list[tuple[str, str, bytes]] = []

    def save(fig, name: str, title: str) -> None:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, dpi=90, format='png')
        plt.close(fig)
        made.append((name, title, buf.getvalue()))

    if hists.get('visual_tokens_per_image'):
        fig, ax = plt.subplots(figsize=(5.6, 3.4))
        plot_hist(ax, hists['visual_tokens_per_image'], 1, 'images')
        ax.set(xlabel='visual tokens per image', ylabel='encodes')
        save(fig, 'visual_tokens.png', 'Visual tokens per image')
    if hists.get('original_megapixels'):
        fig, ax = plt.subplots(figsize=(5.6, 3.4))
        pair = [hists['original_megapixels'], hists['resized_megapixels']]
        edges, _ = hist_edges(pair, 0.01)
        plot_hist(ax, pair[0], 0.01, 'original', 'tab:blue', edges)
        plot_hist(ax, pair[1], 0.01, 'resized', 'tab:orange', edges)
        ax.set(xlabel='megapixels', ylabel='encodes')
        ax.legend()
        save(fig, 'megapixels.png', 'Image size before and after preprocessing')
    if hists.get('tiles'):
        fig, ax = plt.subplots(figsize=(5.6, 3.4))
        plot_hist(ax, hists['tiles'], 1, 'images')
        ax.set(xlabel='tiles per image', ylabel='encodes')
        save(fig, 'tiles.png', 'Tiles per image')
    for prefix, name, title in (('rewards/', 'rewards.png', 'Rewards over steps'),
                                ('vision/', 'vision_metrics.png', 'vision/ metrics over steps')):
        keys = sorted(k for k in series if k.startswith(prefix) and not k.endswith('/std') and series[k])
        if keys:
            shown = keys[:MAX_PLOTTED]
            fig, axes = plt.subplots(len(shown), 1, figsize=(5.6, 1.5 * len(shown) + 0.7), squeeze=False)
            for ax, key in zip(axes[:, 0], shown, strict=False):
                _series(ax, series[key], key)
                ax.set_ylabel(_plain(key.split('/', 1)[1], 30), fontsize=7)
            axes[-1, 0].set_xlabel('step')
            if len(keys) > len(shown):
                axes[0, 0].set_title(f'first {len(shown)} of {len(keys)} keys', fontsize=8)
            save(fig, name, title)
    quart = s.reward_by_token_quartile
    names = sorted({n for g in quart for n in g['reward_means']})[:MAX_PLOTTED]
    if quart and names:
        import numpy as np
        fig, ax = plt.subplots(figsize=(5.6, 3.4))
        x = np.arange(len(quart))
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            ax.bar(x + i * width, [g['reward_means'].get(name, np.nan) for g in quart], width, label=_plain(name, 30))
        ax.set_xticks(x + 0.4 - width / 2, [f'{g["quartile"]}\n{g["min_tokens"]:,}-{g["max_tokens"]:,}' for g in quart])
        ax.set(xlabel='visual tokens (quartile, range)', ylabel='mean reward')
        ax.legend(fontsize=7)
        save(fig, 'reward_vs_tokens.png', 'Reward by visual-token budget')
    return made

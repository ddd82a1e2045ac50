"""What `swift-ext review` shows: the terminal text, PNG plots (matplotlib, Agg) and one HTML page."""
from __future__ import annotations

import base64
import html
import json
import os
from collections import Counter
from typing import Dict, List, Optional

MAX_BARS = 60  # histograms with more distinct values are binned


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _hist(ax, counter: Counter, scale: float, label: str, color: Optional[str] = None,
          bins=None) -> None:
    import numpy as np
    values = np.array(sorted(counter), dtype=float) * scale
    weights = np.array([counter[v] for v in sorted(counter)], dtype=float)
    if bins is None and len(values) <= MAX_BARS:  # one bar per distinct value
        width = (np.diff(values).min() if len(values) > 1 else max(abs(values[0]), 1.0)) * 0.8
        ax.bar(values, weights, width=width, label=label, color=color, alpha=0.6)
    else:
        ax.hist(values, bins=MAX_BARS if bins is None else bins, weights=weights, alpha=0.6,
                label=label, color=color)


def _series(ax, points: List, label: str) -> None:
    """A metric over steps; long series get a moving average over the faint raw values."""
    import numpy as np
    points = sorted(points)
    steps = np.array([p[0] for p in points], dtype=float)
    values = np.array([p[1] for p in points], dtype=float)
    if len(points) <= 100:
        ax.plot(steps, values, marker='.', label=label)
        return
    ax.plot(steps, values, linewidth=0.5, alpha=0.3)
    window = max(2, len(points) // 50)
    smooth = np.convolve(values, np.ones(window) / window, mode='valid')
    ax.plot(steps[window - 1:], smooth, label=f'{label} (mean of {window})')


def format_text(s: dict) -> str:
    """The terminal summary."""
    lines = [f'Run: {s["run_dir"]}']
    for p in s['problems']:
        lines.append(f'  ! {p}')
    lines.append(f'Geometry records by mode: {s["records_by_mode"]}  by rank: {s["records_by_rank"]}')
    if s.get('images') is not None:
        lines.append(f'Images ({s["mode"]} encodes): {s["images"]}   failures: {s["failures"]}')
        for key, label in (('original_megapixels', 'original MP'), ('resized_megapixels', 'resized MP'),
                           ('original_width', 'original width'), ('original_height', 'original height'),
                           ('resized_width', 'resized width'), ('resized_height', 'resized height'),
                           ('visual_tokens_per_image', 'visual tokens/image')):
            d = s.get(key)
            if d:
                lines.append(f'  {label:20s} mean {d["mean"]:.4g}  p50 {d["p50"]:.4g}  '
                             f'p95 {d["p95"]:.4g}  max {d["max"]:.4g}')
        if s['tile_histogram']:
            lines.append(f'  tiles per image: {s["tile_histogram"]}')
        lines.append(f'  shrunk by max_pixels: {s["shrunk_by_max_pixels"]}   '
                     f'grown by min_pixels: {s["grown_by_min_pixels"]}')
        lines.append(f'  geometry mismatches (actual != predicted): {s["mismatches"]} '
                     f'{s["mismatch_fields"] or ""}')
        for msg, n in s['failure_messages'].items():
            lines.append(f'  failure x{n}: {msg}')
    rewards = s['reward_means_logged'] or s['reward_means_completions']
    if rewards:
        lines.append('Reward means: ' + ', '.join(f'{k} {v:.4f}' for k, v in rewards.items()
                                                  if v is not None))
    if s['reward_by_token_quartile']:
        lines.append(f'Rewards by visual-token quartile (rows joined by {s["completions_joined_by"]}):')
        for g in s['reward_by_token_quartile']:
            means = ', '.join(f'{k} {v:.4f}' for k, v in g['reward_means'].items())
            lines.append(f'  {g["quartile"]} tokens {g["min_tokens"]}-{g["max_tokens"]} '
                         f'({g["rows"]} rows): {means}')
    return '\n'.join(lines)


def to_json(s: dict) -> str:
    return json.dumps({k: v for k, v in s.items() if not k.startswith('_')}, indent=1, default=str)


def make_plots(s: dict, out_dir: str) -> Dict[str, str]:
    """Write the report's PNGs; returns {title: path}."""
    plt = _pyplot()
    hists = s.get('_histograms') or {}
    series = s.get('series') or {}
    made: Dict[str, str] = {}

    def save(fig, name: str, title: str) -> None:
        path = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made[title] = path

    if hists.get('visual_tokens_per_image'):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        _hist(ax, hists['visual_tokens_per_image'], 1, 'images')
        ax.set(xlabel='visual tokens per image', ylabel='images')
        save(fig, 'visual_tokens.png', 'Visual tokens per image')
    if hists.get('original_megapixels'):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        import numpy as np
        top = max(max(hists['original_megapixels']), max(hists['resized_megapixels'])) * 0.01
        edges = np.linspace(0, max(top, 0.01) * 1.02, 41)  # the same bins for both
        _hist(ax, hists['original_megapixels'], 0.01, 'original', 'tab:blue', edges)
        _hist(ax, hists['resized_megapixels'], 0.01, 'resized', 'tab:orange', edges)
        ax.set(xlabel='megapixels', ylabel='images')
        ax.legend()
        save(fig, 'megapixels.png', 'Image size before and after preprocessing')
    if hists.get('tiles'):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        tiles = hists['tiles']
        ax.bar([str(k) for k in sorted(tiles)], [tiles[k] for k in sorted(tiles)])
        ax.set(xlabel='tiles per image', ylabel='images')
        save(fig, 'tiles.png', 'Tiles per image')
    for prefix, name, title in (('rewards/', 'rewards.png', 'Rewards over steps'),
                                ('vision/', 'vision_metrics.png', 'vision/ metrics over steps')):
        keys = sorted(k for k in series if k.startswith(prefix) and not k.endswith('/std'))
        if keys:
            fig, axes = plt.subplots(len(keys), 1, figsize=(7, 1.8 * len(keys) + 0.6), squeeze=False)
            for ax, key in zip(axes[:, 0], keys):
                _series(ax, series[key], key)
                ax.set_ylabel(key.split('/', 1)[1], fontsize=7)
            axes[-1, 0].set_xlabel('step')
            save(fig, name, title)
    quart = s.get('reward_by_token_quartile') or []
    names = sorted({n for g in quart for n in g['reward_means']})
    if quart and names:
        import numpy as np
        fig, ax = plt.subplots(figsize=(7, 3.5))
        x = np.arange(len(quart))
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            ax.bar(x + i * width, [g['reward_means'].get(name, np.nan) for g in quart], width, label=name)
        ax.set_xticks(x + 0.4 - width / 2,
                      [f'{g["quartile"]}\n{g["min_tokens"]}-{g["max_tokens"]}' for g in quart])
        ax.set(xlabel='visual tokens (quartile, range)', ylabel='mean reward')
        ax.legend(fontsize=7)
        save(fig, 'reward_vs_tokens.png', 'Reward by visual-token budget')
    return made


def _table(d: dict) -> str:
    rows = ''.join(f'<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>'
                   for k, v in d.items())
    return f'<table>{rows}</table>'


def _fmt(v) -> str:
    if isinstance(v, float):
        return f'{v:.4g}'
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def write_html(s: dict, text: str, plots: Dict[str, str], path: str) -> None:
    images = ''
    for title, png in plots.items():
        with open(png, 'rb') as f:
            data = base64.b64encode(f.read()).decode()
        images += f'<h2>{html.escape(title)}</h2><img src="data:image/png;base64,{data}">'
    keys = ('images', 'failures', 'shrunk_by_max_pixels', 'grown_by_min_pixels', 'mismatches',
            'visual_tokens_per_image', 'original_megapixels', 'resized_megapixels',
            'tile_histogram', 'reward_means_logged', 'reward_means_completions')
    quart = s.get('reward_by_token_quartile') or []
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>swift-ext review</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left;font-size:13px}}
pre{{background:#f4f4f4;padding:8px;overflow-x:auto}}</style></head><body>
<h1>swift-ext review</h1><pre>{html.escape(text)}</pre>
<h2>Summary</h2>{_table({k: s[k] for k in keys if k in s})}
<h2>Reward by visual-token quartile</h2>{''.join(_table(g) for g in quart) or '<p>none</p>'}
<h2>Files</h2>{''.join(_table(f) for f in s.get('files', []))}
{images}</body></html>"""
    with open(path, 'w', encoding='utf-8') as f:
        f.write(page)


def write_report(s: dict, out_dir: str, *, plots: bool = True) -> str:
    """Write PNGs (unless ``plots`` is False) and report.html into ``out_dir``; return its path."""
    os.makedirs(out_dir, exist_ok=True)
    made = make_plots(s, out_dir) if plots else {}
    path = os.path.join(out_dir, 'report.html')
    write_html(s, format_text(s), made, path)
    return path

"""What `swift-ext review` shows: the terminal text, PNG plots (matplotlib, Agg) and one HTML page.

The page is meant to be shared: a run header, numbers formatted for people, real tables
(sortable by clicking a header, a few lines of plain JavaScript), plots in a grid with
integer count axes, and the rollout gallery. Every file is written through
``output.write_bytes`` (no symlink is ever followed). Names from the logs reach matplotlib
with ``$`` escaped, so a reward called ``$\\frac$`` is text, not broken math.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Sequence
from typing import Any

from .bounded import Histogram, short
from .output import write_bytes, write_text

MAX_BARS = 30  # histograms with more distinct values are binned
MAX_PLOTTED = 12  # metric keys drawn per figure (the rest are listed, not drawn)
LOG_SPREAD = 50  # max / min beyond which a histogram's x axis is logarithmic


# --- formatting ------------------------------------------------------------------------------------
def fmt(value: Any) -> str:
    """A number as a person reads it: ``12,845``, ``186.5``, ``0.229``; ``-`` for nothing."""
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, int):
        return f'{value:,}'
    if isinstance(value, float):
        if value != value:
            return 'NaN'
        if abs(value) >= 1000:
            return f'{value:,.0f}'
        if abs(value) >= 100:
            return f'{value:.1f}'
        if value == int(value):
            return str(int(value))
        return f'{value:.3g}'
    return str(value)


def _plain(text: str, limit: int = 60) -> str:
    """A log-controlled name as matplotlib text: ``$`` escaped (no math text), length bounded."""
    return short(str(text), limit).replace('$', r'\$')


# --- terminal ---------------------------------------------------------------------------------------
def _reward_line(s: dict) -> str | None:
    logged, comp = s.get('reward_means_logged') or {}, s.get('reward_means_completions') or {}
    missing_c = s.get('reward_missing_completions') or {}
    missing_l = s.get('reward_missing_logged') or {}
    names = sorted(set(logged) | set(comp))
    if not names:
        return None
    parts = []
    for name in names:
        value = logged.get(name) if logged.get(name) is not None else comp.get(name)
        missing = missing_c.get(name)
        rows = missing if missing is not None else missing_l.get(name)
        note = ''
        if missing is not None:
            total = missing + (_count(s, name) or 0)
            note = f' ({missing:,} of {total:,} values missing)' if missing else ''
        elif rows:
            note = f' ({rows:,} step(s) missing)'
        parts.append(f'{short(name, 60)} {fmt(value)}{note}')
    return 'Reward means: ' + ', '.join(parts)


def _count(s: dict, name: str) -> int | None:
    rows = s.get('completion_rows') or 0
    missing = (s.get('reward_missing_completions') or {}).get(name)
    return rows - missing if missing is not None else None


def format_text(s: dict) -> str:  # noqa: C901
    """The terminal summary."""
    run = s.get('run') or {}
    lines = [f'Run: {s["run_dir"]}']
    head = [f'{k} {short(str(run[k]), 80)}' for k in ('model', 'template', 'date') if run.get(k)]
    if run.get('fingerprints'):
        head.append('settings ' + ', '.join(run['fingerprints'][:3]))
    if s.get('steps') is not None:
        head.append(f'steps {s["steps"]:,}')
    if head:
        lines.append('  ' + '   '.join(head))
    for p in s['problems']:
        lines.append(f'  ! {p}')
    lines.append(f'Geometry records by mode: {s["records_by_mode"]}  by rank: {s["records_by_rank"]}')
    if s.get('images') is not None:
        unique = s.get('unique_images')
        approx = '' if s.get('unique_images_exact', True) else 'about '
        lines.append(f'Images ({s["mode"]} encodes): {s["images"]:,} encodes of {approx}{unique:,} unique '
                     f'image(s)   failures: {s["failures"]:,}')
        for key, label in (('original_megapixels', 'original MP'), ('resized_megapixels', 'resized MP'),
                           ('original_width', 'original width'), ('original_height', 'original height'),
                           ('resized_width', 'resized width'), ('resized_height', 'resized height'),
                           ('visual_tokens_per_image', 'visual tokens/image')):
            d = s.get(key)
            if d:
                lines.append(f'  {label:20s} mean {fmt(d["mean"])}  p50 {fmt(d["p50"])}  '
                             f'p95 {fmt(d["p95"])}  max {fmt(d["max"])}')
        if s.get('tile_histogram'):
            lines.append('  tiles per image: ' + ', '.join(f'{k} tiles x{v:,}' for k, v in s['tile_histogram'].items()))
        lines.append(f'  shrunk by max_pixels: {s["shrunk_by_max_pixels"]:,}   '
                     f'grown by min_pixels: {s["grown_by_min_pixels"]:,}')
        fields = ', '.join(f'{k} x{v}' for k, v in s['mismatch_fields'].items())
        detail = f' ({fields})' if fields else ''
        lines.append(f'  geometry mismatches (actual != predicted): {s["mismatches"]:,}{detail}')
        for msg, n in s['failure_messages'].items():
            lines.append(f'  failure x{n:,}: {msg}')
    reward = _reward_line(s)
    if reward:
        lines.append(reward)
    if s['reward_by_token_quartile']:
        joined = ', '.join(f'{k} {v:,}' for k, v in s['completions_joined_by'].items())
        lines.append(f'Rewards by visual-token quartile (rows joined by {joined}):')
        for g in s['reward_by_token_quartile']:
            means = ', '.join(f'{short(k, 40)} {fmt(v)}' for k, v in g['reward_means'].items())
            lines.append(f'  {g["quartile"]} tokens {g["min_tokens"]:,}-{g["max_tokens"]:,} '
                         f'({g["rows"]:,} rows): {means}')
    if s.get('gallery'):
        lines.append(f'Gallery: {len(s["gallery"])} rollout(s) drawn in report.html')
    return '\n'.join(lines)


def to_json(s: dict) -> str:
    return json.dumps({k: v for k, v in s.items() if not k.startswith('_')}, indent=1, default=str)


# --- plots ------------------------------------------------------------------------------------------
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
    """A metric over steps; long series get a moving average over the faint raw values."""
    import numpy as np
    points = sorted(points)
    steps = np.array([p[0] for p in points], dtype=float)
    values = np.array([p[1] for p in points], dtype=float)
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(points) <= 100:
        ax.plot(steps, values, marker='.', label=_plain(label))
        return
    ax.plot(steps, values, linewidth=0.5, alpha=0.3)
    window = max(2, len(points) // 50)
    smooth = np.convolve(values, np.ones(window) / window, mode='valid')
    ax.plot(steps[window - 1:], smooth, label=_plain(f'{label} (mean of {window})'))


def make_plots(s: dict) -> list[tuple[str, str, bytes]]:
    """The report's plots as ``[(file name, title, PNG bytes)]``."""
    plt = _pyplot()
    hists = s.get('_histograms') or {}
    series = s.get('series') or {}
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
    quart = s.get('reward_by_token_quartile') or []
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


# --- HTML ---------------------------------------------------------------------------------------------
CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1180px;margin:auto;padding:0 16px;
color:#222;background:#fafafa}h1{margin-bottom:2px}h2{margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0;background:#fff}td,th{border:1px solid #ddd;padding:3px 8px;
font-size:13px;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;background:#f0f0f0}table.sortable th:after{content:' \\2195';color:#aaa}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:14px}.facts dt{color:#666}
.facts dd{margin:0}.warn{color:#8a4b00}.problems li{color:#8a1f11}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(500px,1fr));gap:12px}
.plots figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px}.plots img{max-width:100%}
figcaption{font-size:13px;color:#555}details pre{background:#f4f4f4;padding:8px;overflow-x:auto}"""

SORT_JS = """document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], i = th.cellIndex;
    var asc = th.getAttribute('data-dir') !== 'asc';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    var key = function (row) { var c = row.cells[i]; return c.getAttribute('data-v') || c.textContent; };
    Array.prototype.slice.call(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    }).forEach(function (row) { body.appendChild(row); });
  });
});"""


def _cell(value: Any) -> str:
    """A table cell: numbers right-aligned with a sort key, sizes sorted by pixel count."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="n" data-v="{value!r}">{html.escape(fmt(value))}</td>'
    if isinstance(value, str) and 'x' in value:
        w, _, h = value.partition('x')
        if w.isdigit() and h.isdigit():
            return f'<td class="n" data-v="{int(w) * int(h)}">{html.escape(value)}</td>'
    return f'<td>{html.escape(fmt(value) if value is not None else "-")}</td>'


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], sortable: bool = True) -> str:
    head = ''.join(f'<th>{html.escape(h)}</th>' for h in headers)
    body = ''.join('<tr>' + ''.join(_cell(v) for v in row) + '</tr>' for row in rows)
    cls = ' class="sortable"' if sortable else ''
    return f'<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _header(s: dict) -> str:
    run = s.get('run') or {}
    facts = [('run folder', s.get('run_dir')), ('model', run.get('model')), ('template', run.get('template')),
             ('settings fingerprint', ', '.join(run.get('fingerprints') or []) or None),
             ('steps', s.get('steps')), ('date', run.get('date')), ('geometry from', s.get('mode') and
                                                                    f'{s["mode"]} encodes'),
             ('completion rows', s.get('completion_rows') or None)]
    dl = ''.join(f'<dt>{html.escape(k)}</dt><dd>{html.escape(fmt(v))}</dd>' for k, v in facts if v is not None)
    title = html.escape(short(str(run.get('run') or 'run'), 120))
    return f'<h1>swift-ext review: {title}</h1><dl class="facts">{dl}</dl>'


def _images_section(s: dict) -> str:
    if s.get('images') is None:
        return '<h2>Images</h2><p>No image geometry was logged.</p>'
    counts = [('encodes', s['encodes']),
              ('unique images' + ('' if s.get('unique_images_exact', True) else ' (estimate)'), s['unique_images']),
              ('failures', s['failures']), ('shrunk by max_pixels', s['shrunk_by_max_pixels']),
              ('grown by min_pixels', s['grown_by_min_pixels']), ('geometry mismatches', s['mismatches'])]
    out = '<h2>Images</h2>' + table(['count', 'value'], counts, sortable=False)
    rows = []
    for key, label in (('visual_tokens_per_image', 'visual tokens per image'), ('original_megapixels', 'original MP'),
                       ('resized_megapixels', 'resized MP'), ('original_width', 'original width'),
                       ('original_height', 'original height'), ('resized_width', 'resized width'),
                       ('resized_height', 'resized height')):
        d = s.get(key)
        if d:
            rows.append([label, d['mean'], d['min'], d['p50'], d['p95'], d['max']])
    out += table(['per encode', 'mean', 'min', 'p50', 'p95', 'max'], rows)
    if s.get('tile_histogram'):
        out += table(['tiles per image', 'encodes'], [[int(k), v] for k, v in s['tile_histogram'].items()])
    if s.get('failure_messages'):
        out += '<h3>Failures</h3>' + table(['message', 'count'], list(s['failure_messages'].items()))
    return out


def _rewards_section(s: dict) -> str:
    logged, comp = s.get('reward_means_logged') or {}, s.get('reward_means_completions') or {}
    missing_c, missing_l = s.get('reward_missing_completions') or {}, s.get('reward_missing_logged') or {}
    names = sorted(set(logged) | set(comp) | set(missing_c))
    if not names:
        return ''
    rows = [[name, logged.get(name), missing_l.get(name), comp.get(name), _count(s, name), missing_c.get(name)]
            for name in names]
    out = '<h2>Rewards</h2><p>Missing values are rewards that were None or NaN (no opinion); they are left out of ' \
          'the means.</p>' + table(['reward', 'mean of logged steps', 'steps missing', 'mean of completions',
                                    'values', 'values missing'], rows)
    quart = s.get('reward_by_token_quartile') or []
    if quart:
        qnames = sorted({n for g in quart for n in g['reward_means']})
        qrows = [[g['quartile'], f'{g["min_tokens"]:,}-{g["max_tokens"]:,}', g['rows'],
                  *[g['reward_means'].get(n) for n in qnames]] for g in quart]
        joined = ', '.join(f'{k} {v:,}' for k, v in s['completions_joined_by'].items())
        out += (f'<h3>Reward by visual-token quartile</h3><p>Rows joined to their tokens by {html.escape(joined)}.</p>'
                + table(['quartile', 'visual tokens', 'rows', *qnames], qrows))
    return out


def _per_image_section(s: dict) -> str:
    rows = s.get('per_image') or []
    if not rows:
        return ''
    body = [[short(r['image'], 100), r['encodes'], r['original'], r['resized'], r['tokens'], r['tiles'],
             r['clamped'], r['mismatch'], r['error']] for r in rows]
    return ('<h2>Per image</h2><p>Up to 100 images, those with an error, mismatch or clamp first. '
            'Click a header to sort.</p>'
            + table(['image', 'encodes', 'original', 'resized', 'tokens', 'tiles', 'clamped', 'mismatch', 'error'],
                    body))


def _files_section(s: dict) -> str:
    rows = [[f['file'], 'yes' if f['exists'] else 'missing', f['lines'], f['bad_lines'], f.get('long_lines', 0),
             'yes' if f['truncated_last_line'] else 'no', f['duplicate_lines']] for f in s.get('files', [])]
    return '<h2>Files</h2>' + table(['file', 'present', 'lines', 'unreadable', 'too long', 'torn last line',
                                     'duplicates'], rows)


def write_html(s: dict, text: str, plots: list[tuple[str, str, bytes]], path: str,
               gallery_section: str = '') -> None:
    figures = ''.join(f'<figure><figcaption>{html.escape(title)}</figcaption>'
                      f'<img alt="{html.escape(title)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
                      f'</figure>' for _, title, data in plots)
    problems = ''.join(f'<li>{html.escape(p)}</li>' for p in s['problems'])
    from .gallery import CSS as GALLERY_CSS
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>swift-ext review</title>
<style>{CSS}
{GALLERY_CSS}</style></head><body>
{_header(s)}
{f'<h2>Problems</h2><ul class="problems">{problems}</ul>' if problems else ''}
{_images_section(s)}
{_rewards_section(s)}
{f'<h2>Plots</h2><div class="plots">{figures}</div>' if figures else ''}
{gallery_section}
{_per_image_section(s)}
{_files_section(s)}
<details><summary>Terminal summary</summary><pre>{html.escape(text)}</pre></details>
<script>{SORT_JS}</script>
</body></html>"""
    write_text(path, page)


def write_report(s: dict, out_dir: str, *, plots: bool = True, gallery_max_bytes: int = 4 << 20) -> str:
    """Write PNGs (unless ``plots`` is False) and report.html into ``out_dir``; return its path.

    ``out_dir`` must exist (``output.prepare_out_dir``); nothing is written through a symlink.
    """
    made = make_plots(s) if plots else []
    for name, _, data in made:
        write_bytes(os.path.join(out_dir, name), data)
    section = ''
    gallery = s.get('_gallery')
    if gallery and gallery['items']:
        from .gallery import gallery_html
        section, embedded = gallery_html(gallery['items'], gallery_max_bytes, title='Rollouts')
        s['gallery'] = [item.summary() for item in gallery['items']]
        s['gallery_embedded'] = embedded
    path = os.path.join(out_dir, 'report.html')
    write_html(s, format_text(s), made, path, section)
    return path

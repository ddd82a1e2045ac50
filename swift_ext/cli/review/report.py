"""What `swift-ext review` shows: the terminal summary and one HTML page, from a ``ReviewSummary``.

The page is meant to be shared: a run header, numbers formatted for people, real tables
(sortable by clicking a header), plots in a grid with integer count axes, and the rollout
gallery. Every file is written through ``output.write_bytes`` (no symlink is ever followed).
Nothing here changes the summary: what ``--json`` prints is what the page shows.
"""
from __future__ import annotations

import base64
import os

from ..bounded import short
from ..cards import CSS as CARDS_CSS
from ..cards import gallery_html
from ..clamps import LARGE_UPSCALE, MEANINGS, summary_lines
from ..output import write_bytes, write_text
from ..page import esc, facts, fmt, page, table
from ..video_strip import CSS as STRIP_CSS
from .plots import make_plots
from .summary import ImageSummary, ReviewSummary
from .video import video_html, video_text

DESCRIBED = (('visual_tokens_per_image', 'visual tokens/image', 'visual tokens per image'),
             ('original_megapixels', 'original MP', 'original MP'), ('resized_megapixels', 'resized MP', 'resized MP'),
             ('original_width', 'original width', 'original width'),
             ('original_height', 'original height', 'original height'),
             ('resized_width', 'resized width', 'resized width'),
             ('resized_height', 'resized height', 'resized height'))
TERMINAL_ORDER = ('original_megapixels', 'resized_megapixels', 'original_width', 'original_height', 'resized_width',
                  'resized_height', 'visual_tokens_per_image')


# --- terminal ---------------------------------------------------------------------------------------
def format_text(s: ReviewSummary) -> str:
    """The terminal summary."""
    lines = [f'Run: {s.run_dir}', *_head_lines(s), *(f'  ! {p}' for p in s.problems),
             f'Geometry records by mode: {s.records_by_mode}  by rank: {s.records_by_rank}']
    if s.images is not None:
        lines += _image_lines(s.mode, s.images)
    lines += video_text(s.videos)
    reward = _reward_line(s)
    if reward:
        lines.append(reward)
    lines += _quartile_lines(s)
    if s.gallery is not None and s.gallery.cards:
        lines.append(f'Gallery: {len(s.gallery.cards)} rollout(s) drawn in report.html')
    return '\n'.join(lines)


def _head_lines(s: ReviewSummary) -> list[str]:
    run = s.run
    head = [f'{k} {short(str(run[k]), 80)}' for k in ('model', 'template', 'date') if run.get(k)]
    if run.get('fingerprints'):
        head.append('settings ' + ', '.join(run['fingerprints'][:3]))
    if s.steps is not None:
        head.append(f'steps {s.steps:,}')
    return ['  ' + '   '.join(head)] if head else []


def _image_lines(mode: str | None, m: ImageSummary) -> list[str]:
    approx = '' if m.unique_images_exact else 'about '
    lines = [f'Images ({mode} encodes): {m.images:,} encodes of {approx}{m.unique_images:,} unique '
             f'image(s)   failures: {m.failures:,}']
    labels = {key: label for key, label, _ in DESCRIBED}
    for key in TERMINAL_ORDER:
        d = getattr(m, key)
        if d:
            lines.append(f'  {labels[key]:20s} mean {fmt(d["mean"])}  p50 {fmt(d["p50"])}  '
                         f'p95 {fmt(d["p95"])}  max {fmt(d["max"])}')
    if m.tile_histogram:
        lines.append('  tiles per image: ' + ', '.join(f'{k} tiles x{v:,}' for k, v in m.tile_histogram.items()))
    lines += summary_lines(m.clamped)
    if m.large_upscales:
        lines.append(f'  enlarged {LARGE_UPSCALE:g}x or more: {m.large_upscales:,} '
                     '(the model sees interpolated pixels)')
    fields = ', '.join(f'{k} x{v}' for k, v in m.mismatch_fields.items())
    detail = f' ({fields})' if fields else ''
    lines.append(f'  geometry mismatches (actual != predicted): {m.mismatches:,}{detail}')
    lines += [f'  failure x{n:,}: {msg}' for msg, n in m.failure_messages.items()]
    return lines


def _reward_line(s: ReviewSummary) -> str | None:
    logged, comp = s.reward_means_logged, s.reward_means_completions
    names = sorted(set(logged) | set(comp))
    if not names:
        return None
    parts = []
    for name in names:
        value = logged.get(name) if logged.get(name) is not None else comp.get(name)
        missing = s.reward_missing_completions.get(name)
        note = ''
        if missing is not None:
            total = missing + (s.reward_values(name) or 0)
            note = f' ({missing:,} of {total:,} values missing)' if missing else ''
        elif s.reward_missing_logged.get(name):
            note = f' ({s.reward_missing_logged[name]:,} step(s) missing)'
        if s.reward_out_of_range.get(name):
            note += f' ({s.reward_out_of_range[name]:,} out of range, left out)'
        parts.append(f'{short(name, 60)} {fmt(value)}{note}')
    return 'Reward means: ' + ', '.join(parts)


def how_rows_were_matched(joined_by: dict[str, int]) -> str:
    """In words, how completions rows got the visual tokens of their images (``join``'s counts)."""
    words = {'column': 'the tokens of their own images (the geo_visual_tokens column geo_log writes)',
             'step': "the mean tokens per image of their step's encodes (rows without that column)",
             'none': 'no tokens (no column, and no encode logged at their step): left out'}
    parts = [f'{n:,} row(s) got {words[k]}' for k, n in joined_by.items()
             if n and k in words]
    return '; '.join(parts) + '.' if parts else 'No row could be matched to an image.'


def _quartile_lines(s: ReviewSummary) -> list[str]:
    if not s.reward_by_token_quartile:
        return []
    lines = ['Rewards by visual-token quartile. ' + how_rows_were_matched(s.completions_joined_by)]
    for g in s.reward_by_token_quartile:
        means = ', '.join(f'{short(k, 40)} {fmt(v)}' for k, v in g['reward_means'].items())
        lines.append(f'  {g["quartile"]} tokens {g["min_tokens"]:,}-{g["max_tokens"]:,} ({g["rows"]:,} rows): {means}')
    return lines


# --- HTML ---------------------------------------------------------------------------------------------
def _header(s: ReviewSummary) -> str:
    run = s.run
    pairs = [('run folder', s.run_dir), ('model', run.get('model')), ('template', run.get('template')),
             ('settings fingerprint', ', '.join(run.get('fingerprints') or []) or None),
             ('steps', s.steps), ('date', run.get('date')), ('geometry from', s.mode and f'{s.mode} encodes'),
             ('completion rows', s.completion_rows or None)]
    title = esc(short(str(run.get('run') or 'run'), 120))
    return f'<h1>swift-ext review: {title}</h1>{facts(pairs)}'


def _images_section(m: ImageSummary | None) -> str:
    if m is None:
        return '<h2>Images</h2><p>No image geometry was logged.</p>'
    counts = [('encodes', m.encodes),
              ('unique images' + ('' if m.unique_images_exact else ' (estimate)'), m.unique_images),
              ('failures', m.failures)] + [(f'clamped: {name} ({MEANINGS.get(name, "a limit")})', n)
                                           for name, n in m.clamped.items()] + [
                  (f'enlarged {LARGE_UPSCALE:g}x or more', m.large_upscales), ('geometry mismatches', m.mismatches)]
    out = '<h2>Images</h2>' + table(['count', 'value'], counts, sortable=False)
    rows = [[label, d['mean'], d['min'], d['p50'], d['p95'], d['max']]
            for key, _, label in DESCRIBED if (d := getattr(m, key))]
    out += table(['per encode', 'mean', 'min', 'p50', 'p95', 'max'], rows)
    if m.tile_histogram:
        out += table(['tiles per image', 'encodes'], [[int(k), v] for k, v in m.tile_histogram.items()])
    if m.failure_messages:
        out += '<h3>Failures</h3>' + table(['message', 'count'], list(m.failure_messages.items()))
    return out


def _rewards_section(s: ReviewSummary) -> str:
    logged, comp = s.reward_means_logged, s.reward_means_completions
    missing_c, missing_l = s.reward_missing_completions, s.reward_missing_logged
    names = sorted(set(logged) | set(comp) | set(missing_c))
    if not names:
        return ''
    headers = ['reward', 'mean of logged steps', 'steps missing', 'mean of completions', 'values', 'values missing']
    rows = [[name, logged.get(name), missing_l.get(name), comp.get(name), s.reward_values(name), missing_c.get(name)]
            for name in names]
    note = 'Missing values are rewards that were None or NaN (no opinion); they are left out of the means.'
    if s.reward_out_of_range:
        headers.append('out of range')
        rows = [[*row, s.reward_out_of_range.get(row[0], 0)] for row in rows]
        note += ' Values out of range (infinite, or beyond \u00b11e150) are left out too, and counted.'
    out = f'<h2>Rewards</h2><p>{note}</p>' + table(headers, rows)
    quart = s.reward_by_token_quartile
    if quart:
        qnames = sorted({n for g in quart for n in g['reward_means']})
        qrows = [[g['quartile'], f'{g["min_tokens"]:,}-{g["max_tokens"]:,}', g['rows'],
                  *[g['reward_means'].get(n) for n in qnames]] for g in quart]
        out += (f'<h3>Reward by visual-token quartile</h3><p>{esc(how_rows_were_matched(s.completions_joined_by))}</p>'
                + table(['quartile', 'visual tokens', 'rows', *qnames], qrows))
    return out


def _per_image_section(m: ImageSummary | None) -> str:
    if m is None or not m.per_image:
        return ''
    body = [[short(r['image'], 100), r['encodes'], r['original'], r['resized'], r['tokens'], r['tiles'],
             r['clamped'], r['mismatch'], r['error']] for r in m.per_image]
    return ('<h2>Per image</h2><p>Up to 100 images, those with an error, mismatch or clamp first. '
            'Click a header to sort.</p>'
            + table(['image', 'encodes', 'original', 'resized', 'tokens', 'tiles', 'clamped', 'mismatch', 'error'],
                    body))


def _files_section(s: ReviewSummary) -> str:
    rows = [[f['file'], 'yes' if f['exists'] else 'missing', f['lines'], f['bad_lines'], f.get('long_lines', 0),
             'yes' if f['truncated_last_line'] else 'no', f['duplicate_lines']] for f in s.files]
    return '<h2>Files</h2>' + table(['file', 'present', 'lines', 'unreadable', 'too long', 'torn last line',
                                     'duplicates'], rows)


def report_html(s: ReviewSummary, plots: list[tuple[str, str, bytes]]) -> str:
    """The whole page."""
    figures = ''.join(f'<figure><figcaption>{esc(title)}</figcaption>'
                      f'<img alt="{esc(title)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
                      f'</figure>' for _, title, data in plots)
    problems = ''.join(f'<li>{esc(p)}</li>' for p in s.problems)
    gallery = gallery_html(s.gallery, title='Rollouts') if s.gallery is not None and s.gallery.cards else ''
    body = f"""{_header(s)}
{f'<h2>Problems</h2><ul class="problems">{problems}</ul>' if problems else ''}
{_images_section(s.images)}
{video_html(s.videos, table, esc, s.video_strips)}
{_rewards_section(s)}
{f'<h2>Plots</h2><div class="plots">{figures}</div>' if figures else ''}
{gallery}
{_per_image_section(s.images)}
{_files_section(s)}
<details><summary>Terminal summary</summary><pre>{esc(format_text(s))}</pre></details>"""
    return page('swift-ext review', body, CARDS_CSS + STRIP_CSS)


def write_report(s: ReviewSummary, out_dir: str, *, plots: bool = True) -> str:
    """Write PNGs (unless ``plots`` is False) and report.html into ``out_dir``; return its path.

    ``out_dir`` must exist (``output.prepare_out_dir``); nothing is written through a symlink.
    """
    made = make_plots(s) if plots else []
    for name, _, data in made:
        write_bytes(os.path.join(out_dir, name), data)
    path = os.path.join(out_dir, 'report.html')
    write_text(path, report_html(s, made))
    return path

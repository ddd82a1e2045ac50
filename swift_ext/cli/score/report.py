"""What `swift-ext score` shows: the terminal text and the ``--html`` page."""
from __future__ import annotations

import os

from ...inference import log_dir_for
from ..cards import CSS as CARDS_CSS
from ..cards import Gallery, gallery_html
from ..page import esc, facts, page, table
from ..video_strip import CSS as STRIP_CSS
from .video import video_html, video_text


def _pct(v: float | None) -> str:
    return '-' if v is None else f'{100 * v:.1f}%'


def inference_words(r: dict) -> str:
    """Whether the settings the inference recorded match those used to score, in words."""
    found = r.get('inference') or {}
    if not found.get('sources'):
        folder = os.path.basename(log_dir_for(r['file']))
        return f'not recorded beside the result file (no {folder}/, no args.json): not checked'
    state = 'DIFFERENT from scoring (below)' if found.get('warnings') else 'the same as scoring'
    return f'{state}, read from {", ".join(found["sources"])}'


def format_text(r: dict) -> str:
    lines = [f'Scored {r["file"]} with {r["template"]} '
             f'(boxes read as {r["coords"]}, settings {r["settings_fingerprint"]})',
             f'  rows {r["rows"]:,}   scored {r["scored"]:,}   not scored {r["not_scored"]:,}',
             f'  settings at inference: {inference_words(r)}']
    lines += [f'  ! {w}' for w in (r.get('inference') or {}).get('warnings', [])]
    lines += [f'  ! {p}' for p in r['file_problems']]
    for p in r['problems']:
        lines.append(f'  ! {p["rows"]:,} row(s) not scored ({p["kind"]}), e.g. {p["example"]}')
    if r['mean_iou'] is not None:
        lines.append(f'  mean IoU {r["mean_iou"]:.4f}   Acc@0.5 {_pct(r["acc50"])}   Acc@0.75 {_pct(r["acc75"])}   '
                     f'matched (all boxes) {r["matched"]:.4f}   no parseable box {r["no_box"]:,}')
    for title, key in (('visual tokens', 'by_visual_tokens'), ('original size', 'by_original_size')):
        if r[key]:
            lines.append(f'By {title}:')
            lines.append(f'  {"bucket":<14}{"rows":>8}{"mean IoU":>10}{"Acc@0.5":>9}{"Acc@0.75":>10}{"matched":>9}'
                         f'{"no box":>8}')
            for name, b in r[key].items():
                lines.append(f'  {name:<14}{b["rows"]:>8,}{b["mean_iou"]:>10.4f}{_pct(b["acc50"]):>9}'
                             f'{_pct(b["acc75"]):>10}{b["matched"]:>9.4f}{b["no_box"]:>8,}')
    lines += video_text(r.get('video'))
    return '\n'.join(lines)


def report_html(r: dict, gallery: Gallery | None, video_strips: str = '') -> str:
    """The ``--html`` page: the metrics, the rows not scored and the gallery of predictions."""
    section = gallery_html(gallery, title='Predictions') if gallery is not None and gallery.cards else ''
    cols = ['bucket', 'rows', 'mean IoU', 'Acc@0.5', 'Acc@0.75', 'matched', 'no box']

    def rows(d):
        return [[k, b['rows'], b['mean_iou'], b['acc50'], b['acc75'], b['matched'], b['no_box']] for k, b in d.items()]
    overall = [['all rows', r['scored'], r['mean_iou'], r['acc50'], r['acc75'], r['matched'], r['no_box']]]
    problems = ''.join(f'<li>{esc(p["kind"])}: {p["rows"]:,} row(s), e.g. {esc(p["example"])}</li>'
                       for p in r['problems'])
    problems += ''.join(f'<li>{esc(p)}</li>' for p in r['file_problems'])
    differ = ''.join(f'<li>{esc(w)}</li>' for w in (r.get('inference') or {}).get('warnings', []))
    pairs = [('file', r['file']), ('template', r['template']), ('boxes read as', r['coords']),
             ('settings fingerprint', r['settings_fingerprint']), ('rows', f'{r["rows"]:,} ({r["scored"]:,} scored)'),
             ('truth joined from --dataset by', r.get('joined_by')), ('settings at inference', inference_words(r))]
    body = f"""<h1>swift-ext score: {esc(os.path.basename(r['file']))}</h1>
{facts(pairs)}
{f'<h2>Settings differ from the inference</h2><ul class="problems">{differ}</ul>' if differ else ''}
{f'<h2>Rows not scored</h2><ul class="problems">{problems}</ul>' if problems else ''}
<h2>Metrics</h2>{table(cols, overall, sortable=False)}
<h3>By visual tokens</h3>{table(cols, rows(r['by_visual_tokens']))}
<h3>By original size</h3>{table(cols, rows(r['by_original_size']))}
{video_html(r.get('video'), table, video_strips)}
{section}"""
    return page('swift-ext score', body, CARDS_CSS + STRIP_CSS)

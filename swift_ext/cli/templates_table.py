"""`swift-ext templates [--json | --markdown]`: every registered `_geo` template, its parent and family,
the coordinate convention its checkpoints answer in (and whether they were trained to write boxes
at all), the box styles `geo_format` accepts, whether `make-tiny-model --family PARENT` builds
a tiny checkpoint for it, and what it does with a video (which templates record video geometry)."""
from __future__ import annotations

import json

from ..families import describe
from ..families.base import UNTRAINED_COORDS, VERIFICATION, VIDEO_SUPPORT
from .text import ArgumentParser, echo


def rows() -> list[dict]:
    """``families.describe()`` with ``tiny_model`` true only where a recipe exists."""
    from ..testing.tiny import parents
    buildable = set(parents())
    out = describe()
    for row in out:
        row['tiny_model'] = row['tiny_model'] and row['parent'] in buildable
    return out


def _coords(row: dict) -> str:
    # geo_iou's own rule (rewards.answer_coords): no guess where the checkpoints were not trained to write boxes
    return row['geo_iou_coords'] or UNTRAINED_COORDS.replace('`', '')


def format_text(table_rows: list[dict]) -> str:
    head = ('template', 'parent', 'family', 'geo_iou reads boxes as', 'box styles', 'tiny', 'geometry verified by',
            'video')
    table = [head] + [(r['template'], r['parent'], r['family'], _coords(r), ', '.join(r['box_styles']),
                       'yes' if r['tiny_model'] else 'no', VERIFICATION[r['verification']], _VIDEO[r['video']])
                      for r in table_rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return '\n'.join('  '.join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip() for row in table)


# The short word of the text table; --markdown and --json say it in full (families.base.VIDEO_SUPPORT).
_VIDEO = {'header_and_encode': 'recorded', 'encode': 'recorded (encode)', 'as_images': 'as images',
          'refused': 'refused', 'ignored': 'ignored', 'none': '-'}


def format_markdown(table_rows: list[dict]) -> str:
    lines = ['| template | family | `geo_iou` reads boxes as | box styles | tiny checkpoint | geometry verified by '
             '| video |', '|---|---|---|---|---|---|---|']
    for r in table_rows:
        coords = f'`{r["geo_iou_coords"]}`' if r['geo_iou_coords'] else UNTRAINED_COORDS
        styles = ', '.join(f'`{s}`' for s in r['box_styles'])
        tiny = 'yes' if r['tiny_model'] else '-'
        lines.append(f'| `{r["template"]}` | {r["family"]} | {coords} | {styles} | {tiny} | '
                     f'{VERIFICATION[r["verification"]]} | {VIDEO_SUPPORT[r["video"]]} |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog='swift-ext templates', description=__doc__)
    group = p.add_mutually_exclusive_group()
    group.add_argument('--json', action='store_true', help='print machine-readable JSON')
    group.add_argument('--markdown', action='store_true', help="print README's template table")
    args = p.parse_args(argv)
    table_rows = rows()
    if args.json:
        echo(json.dumps(table_rows, indent=1))
    else:
        echo(format_markdown(table_rows) if args.markdown else format_text(table_rows))
    return 0

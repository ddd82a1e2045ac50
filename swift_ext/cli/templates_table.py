"""`swift-ext templates [--json]`: every registered `_geo` template, its parent and family,
the coordinate convention its checkpoints answer in, the box styles `geo_format` accepts, and
whether `make-tiny-model --family PARENT` can build a tiny checkpoint for it."""
from __future__ import annotations

import argparse
import json
from typing import List, Optional

from ..families import describe


def format_text(rows: List[dict]) -> str:
    head = ('template', 'parent', 'family', 'coords', 'box styles', 'tiny')
    table = [head] + [(r['template'], r['parent'], r['family'], r['coords'], ', '.join(r['box_styles']),
                       'yes' if r['tiny_model'] else 'no') for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return '\n'.join('  '.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog='swift-ext templates', description=__doc__)
    p.add_argument('--json', action='store_true', help='print machine-readable JSON')
    args = p.parse_args(argv)
    rows = describe()
    from ..testing.tiny import parents
    buildable = set(parents())
    for row in rows:  # a recipe exists only where the family declared a model type and one was written
        row['tiny_model'] = row['tiny_model'] and row['parent'] in buildable
    print(json.dumps(rows, indent=1) if args.json else format_text(rows))
    return 0

"""`swift-ext score RESULT.jsonl --template T`: grounding metrics of `swift infer` results, in original pixels.

Reads the file ``swift infer --result_path`` writes (one row per sample: ``response``, and the
dataset's columns: ``images``, ``solution`` or ms-swift's grounding ``objects``,
``chat_template_kwargs``, ...). Each predicted box is read in the template's coordinate
convention, mapped to the original image with the geometry the template gives that file
(``settings_for``: ``--max_pixels`` as ms-swift's flag, ``MAX_PIXELS`` / ``MAX_NUM`` / ... from
the environment, the row's ``chat_template_kwargs``), exactly as the `geo_iou` reward does.

Reported: mean IoU (first predicted box against the first true box, the referring-expression
convention, 0 when no box was parsed), Acc@0.5 and Acc@0.75 of that IoU, the matched score of
all boxes (``swift_ext.scoring.iou_score``, the reward's value), rows with no parseable box, and
the same per visual-token bucket and per original-size bucket. ``--html`` adds the rollout
gallery; ``--json`` prints the numbers.

Ground truth: ``solution`` in original pixels (any form ``scoring.parse_solution`` reads), else
``objects`` = ``{"ref": [...], "bbox": [[x1, y1, x2, y2], ...], "bbox_type": "real" | "norm1",
"image_id": [...]}`` (ms-swift's grounding format; points and boxes of other images are left out).

The file is streamed (memory does not grow with rows); a malformed row is counted and named
by its row number, never fatal. Exit codes: 0 scored; 2 the file or the template is unusable.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import heapq
import json
import math
import os
import random
import sys
from collections import Counter, defaultdict
from typing import Any

from ..boxes import parse_boxes
from ..geometry import COORDS, GeometryError, ImageGeometry
from ..images import read_image_size
from ..scoring import box_iou, iou_score, parse_solution
from .bounded import FileStatus, iter_raw_lines, refuse_reason, short
from .cards import CSS as CARDS_CSS
from .cards import Item, draw_gallery, gallery_html
from .output import OutputError, prepare_out_dir, write_text
from .page import esc, facts, page, table

MAX_LINE = 64 << 20
MAX_EXAMPLES = 10  # row numbers kept per kind of problem
COORDS_ENV = 'SWIFT_EXT_COORDS'
SIZE_BUCKETS = ((0.25, '< 0.25 MP'), (1.0, '0.25-1 MP'), (4.0, '1-4 MP'), (math.inf, '>= 4 MP'))


class RowError(ValueError):
    """A row that cannot be scored: the message names the rule and the value."""


# --- one row ------------------------------------------------------------------------------------------
def objects_boxes(objects: Any, width: int, height: int) -> list[list[float]] | None:
    """Boxes of image 0 from ms-swift's ``objects`` column, in original pixels; None when unusable."""
    if isinstance(objects, str):
        if len(objects) > 1 << 20:
            return None
        try:
            objects = json.loads(objects)
        except (ValueError, RecursionError):
            return None
    if not isinstance(objects, dict) or not isinstance(objects.get('bbox'), list):
        return None
    norm1 = objects.get('bbox_type') == 'norm1'
    ids = objects.get('image_id') if isinstance(objects.get('image_id'), list) else []
    out = []
    for i, box in enumerate(objects['bbox'][:100]):
        image_id = ids[i] if i < len(ids) else 0
        if image_id != 0 or not isinstance(box, list) or len(box) != 4:
            continue  # a point, or a box of another image
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            return None
        x1, y1, x2, y2 = (float(v) for v in box)
        if norm1:
            x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
        out.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
    return parse_solution(out) if out else None


def image_source(row: dict) -> tuple[Any, bytes | None, str]:
    """``(source for read_image_size, bytes to draw or None, image key)`` of the row's first image."""
    images = row.get('images')
    if isinstance(images, (str, dict)):
        images = [images]
    if not isinstance(images, list) or not images:
        raise RowError('no image: `images` must be a non-empty list')
    src = images[0]
    if isinstance(src, dict):
        data = src.get('bytes')
        if isinstance(data, str):  # bytes written to JSON as base64 text
            try:
                data = base64.b64decode(data[:64 << 20], validate=True)
            except (binascii.Error, ValueError):
                raise RowError(f'`images[0].bytes` is not base64 ({short(repr(data), 40)})') from None
        if isinstance(data, (bytes, bytearray)) and data:
            return bytes(data), bytes(data), 'in-line image'
        src = src.get('path')
    if not isinstance(src, str) or not src:
        raise RowError(f'`images[0]` must be a path or a {{"path", "bytes"}} dict, got {short(repr(src), 60)}')
    if src.startswith('data:image') and ';base64,' in src[:100]:
        try:
            data = base64.b64decode(src.split(',', 1)[1])
        except (binascii.Error, ValueError):
            raise RowError('`images[0]` is a malformed data URL') from None
        return data, data, 'data URL'
    if '://' in src and not src.startswith('file://'):
        raise RowError(f'remote image {short(repr(src), 80)}: not fetched')
    path = src[7:] if src.startswith('file://') else src
    reason = refuse_reason(path)
    if reason:
        raise RowError(f'image {short(path, 120)}: {reason}')
    return path, None, os.path.abspath(path)


def row_geometry(row: dict, settings) -> tuple[ImageGeometry, Any, bytes | None, str]:
    """The geometry the template gives the row's first image, and how to draw that image."""
    source, data, key = image_source(row)
    kwargs = row.get('chat_template_kwargs')
    if kwargs is not None and not isinstance(kwargs, dict):
        raise RowError(f'`chat_template_kwargs` must be an object, got {short(repr(kwargs), 60)}')
    try:
        width, height = read_image_size(source)
        geo, _ = settings.predict(width=width, height=height, row_kwargs=kwargs or None, name=short(key, 120))
    except (GeometryError, TypeError, ValueError) as exc:
        raise RowError(short(str(exc), 300)) from None
    return geo, source, data, key


def ground_truth(row: dict, geo: ImageGeometry) -> list[list[float]]:
    if row.get('solution') is not None:
        gt = parse_solution(row['solution'])
        if gt is None:
            raise RowError(f'`solution` is not a valid box list in original pixels: {short(repr(row["solution"]), 80)}')
        return gt
    if row.get('objects') is not None:
        gt = objects_boxes(row['objects'], geo.original_width, geo.original_height)
        if gt is None:
            raise RowError(f'`objects` holds no valid box of image 0: {short(repr(row["objects"]), 80)}')
        return gt
    raise RowError('no ground truth: neither `solution` nor `objects`')


def first_box_iou(response: str, gt: list[list[float]], geo: ImageGeometry, coords: str) -> float | None:
    """IoU of the first predicted box (in original pixels, clipped) with the first true box; None: no box."""
    for box in parse_boxes(response, max_boxes=1):
        x1, y1, x2, y2 = geo.from_model_frame(box, coords)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            return 0.0
        w, h = geo.original_width, geo.original_height
        clipped = [min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)]
        return box_iou(clipped, gt[0])
    return None


# --- aggregation ------------------------------------------------------------------------------------------
class Bucket:
    __slots__ = ('rows', 'iou', 'acc50', 'acc75', 'matched', 'no_box')

    def __init__(self):
        self.rows, self.iou, self.acc50, self.acc75, self.matched, self.no_box = 0, 0.0, 0, 0, 0.0, 0

    def add(self, iou: float | None, matched: float) -> None:
        self.rows += 1
        value = iou or 0.0
        self.iou += value
        self.acc50 += value >= 0.5
        self.acc75 += value >= 0.75
        self.matched += matched
        self.no_box += iou is None

    def to_dict(self) -> dict:
        n = self.rows or 1
        return {'rows': self.rows, 'mean_iou': self.iou / n if self.rows else None,
                'acc50': self.acc50 / n if self.rows else None, 'acc75': self.acc75 / n if self.rows else None,
                'matched': self.matched / n if self.rows else None, 'no_box': self.no_box}


def token_bucket(tokens: int) -> str:
    if tokens < 64:
        return '< 64'
    lo = 1 << (tokens.bit_length() - 1)
    return f'{lo:,}-{2 * lo - 1:,}'


def size_bucket(width: int, height: int) -> str:
    mp = width * height / 1e6
    return next(label for limit, label in SIZE_BUCKETS if mp < limit)


class Problems:
    """Rows not scored, by reason, with the first row numbers and one message each."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.rows: dict[str, list[int]] = defaultdict(list)
        self.example: dict[str, str] = {}

    def add(self, kind: str, row_no: int, message: str) -> None:
        if kind not in self.counts and len(self.counts) >= 50:
            kind = 'other'
        self.counts[kind] += 1
        if len(self.rows[kind]) < MAX_EXAMPLES:
            self.rows[kind].append(row_no)
        self.example.setdefault(kind, f'row {row_no}: {message}')

    def to_list(self) -> list[dict]:
        return [{'kind': k, 'rows': n, 'row_numbers': self.rows[k], 'example': self.example[k]}
                for k, n in self.counts.most_common()]


class GalleryPicker:
    """The best and worst rows by IoU and a seeded random sample, as row numbers (bounded)."""

    def __init__(self, size: int, seed: int = 0):
        self.size, self.extremes = size, min(3, size // 4 + 1) if size else 0
        self.best: list[tuple[float, int]] = []
        self.worst: list[tuple[float, int]] = []
        self.reservoir: list[int] = []
        self.seen = 0
        self.rng = random.Random(seed)

    def offer(self, row_no: int, iou: float) -> None:
        if not self.size:
            return
        for heap, key in ((self.best, iou), (self.worst, -iou)):
            if len(heap) < self.extremes:
                heapq.heappush(heap, (key, -row_no))
            elif (key, -row_no) > heap[0]:
                heapq.heapreplace(heap, (key, -row_no))
        self.seen += 1
        if len(self.reservoir) < self.size:
            self.reservoir.append(row_no)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.size:
                self.reservoir[j] = row_no

    def picks(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for _, neg in sorted(self.best, reverse=True):
            out.setdefault(-neg, []).append('best IoU')
        for _, neg in sorted(self.worst, reverse=True):
            out.setdefault(-neg, []).append('worst IoU')
        for row_no in sorted(self.reservoir):
            if len(out) >= self.size:
                break
            out.setdefault(row_no, ['random'])
        return out


def dataset_solutions(path: str | None):
    """``solution`` of each line of a JSONL dataset, in order (None where absent or unreadable)."""
    if path is None:
        while True:
            yield None
    status = FileStatus(path)
    for _, raw in iter_raw_lines(path, status, MAX_LINE):
        try:
            row = json.loads(raw)
        except (ValueError, RecursionError):
            row = None
        yield row.get('solution') if isinstance(row, dict) else None
    while True:
        yield None


def score_file(path: str, settings, coords: str, progress=None, gallery: int = 0,
               dataset: str | None = None) -> dict:
    """Stream ``path`` and return the metrics (and the gallery's row numbers).

    ``dataset``: the JSONL file given to ``--val_dataset``; its ``solution`` of line i is the
    ground truth of result row i where the row has none (``swift infer`` drops extra columns).
    """
    status = FileStatus(path)
    solutions = dataset_solutions(dataset)
    total, by_tokens, by_size = Bucket(), defaultdict(Bucket), defaultdict(Bucket)
    problems = Problems()
    picker = GalleryPicker(gallery)
    rows = 0
    for row_no, raw in iter_raw_lines(path, status, MAX_LINE, progress):
        rows += 1
        solution = next(solutions)
        try:
            row = json.loads(raw)
        except (ValueError, RecursionError):
            kind = 'truncated last line' if not raw.endswith(b'\n') else 'not JSON'
            problems.add(kind, row_no, 'not a JSON object')
            continue
        try:
            if not isinstance(row, dict):
                raise RowError(f'a row must be a JSON object, got {type(row).__name__}')
            if row.get('solution') is None and row.get('objects') is None and solution is not None:
                row['solution'] = solution
            response = row.get('response')
            if not isinstance(response, str):
                raise RowError(f'`response` must be a string, got {short(repr(response), 60)}')
            geo, _, _, _ = row_geometry(row, settings)
            gt = ground_truth(row, geo)
        except RowError as exc:
            problems.add(_kind(str(exc)), row_no, str(exc))
            continue
        iou = first_box_iou(response, gt, geo, coords)
        matched = iou_score(response, gt, geo, coords) or 0.0
        for bucket in (total, by_tokens[token_bucket(geo.num_tokens)],
                       by_size[size_bucket(geo.original_width, geo.original_height)]):
            bucket.add(iou, matched)
        picker.offer(row_no, iou or 0.0)
    order = {label: i for i, (_, label) in enumerate(SIZE_BUCKETS)}
    return {
        **total.to_dict(),
        'file': os.path.abspath(path), 'template': settings.template, 'coords': coords,
        'settings_fingerprint': settings.fingerprint(), 'rows': rows, 'scored': total.rows,
        'not_scored': sum(problems.counts.values()),
        'by_visual_tokens': {k: by_tokens[k].to_dict() for k in sorted(
            by_tokens, key=lambda s: int(s.split('-')[0].replace(',', '').replace('< ', '0')))},
        'by_original_size': {k: by_size[k].to_dict() for k in sorted(by_size, key=order.get)},
        'problems': problems.to_list(), 'file_problems': status.problems(), '_picks': picker.picks(),
        '_status': status,
    }


def _kind(message: str) -> str:
    for kind in ('no ground truth', '`solution`', '`objects`', '`response`', 'no image', '`images[0]`',
                 'chat_template_kwargs', 'remote image', 'missing', 'a row must'):
        if kind in message:
            return kind.strip('`')
    return 'image unreadable'


# --- gallery --------------------------------------------------------------------------------------------------
def gallery_items(path: str, picks: dict[int, list[str]], settings, coords: str,
                  dataset: str | None = None) -> list[Item]:
    items = []
    status = FileStatus(path)
    solutions = dataset_solutions(dataset)
    for row_no, raw in iter_raw_lines(path, status, MAX_LINE):
        solution = next(solutions)
        if row_no not in picks:
            continue
        try:
            row = json.loads(raw)
            if isinstance(row, dict) and row.get('solution') is None and row.get('objects') is None:
                row['solution'] = solution
            geo, _, data, key = row_geometry(row, settings)
            gt = ground_truth(row, geo)
        except (ValueError, RecursionError, RowError, AttributeError):
            continue
        items.append(Item(reasons=picks[row_no], completion=row['response'], image_key=key, image_bytes=data,
                          geometry=geo, coords=coords, solution=gt, row_label=f'{row_no:,}'))
    return items


# --- output ---------------------------------------------------------------------------------------------------
def _pct(v: float | None) -> str:
    return '-' if v is None else f'{100 * v:.1f}%'


def format_text(r: dict) -> str:
    lines = [f'Scored {r["file"]} with {r["template"]} '
             f'(boxes read as {r["coords"]}, settings {r["settings_fingerprint"]})',
             f'  rows {r["rows"]:,}   scored {r["scored"]:,}   not scored {r["not_scored"]:,}']
    lines += [f'  ! {p}' for p in r['file_problems']]
    for p in r['problems']:
        lines.append(f'  ! {p["rows"]:,} row(s) not scored ({p["kind"]}), e.g. {p["example"]}')
    if r['scored']:
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
    return '\n'.join(lines)


def write_html(r: dict, items: list[Item], path: str, max_bytes: int) -> None:
    section = gallery_html(draw_gallery(items, max_bytes), title='Predictions') if items else ''
    cols = ['bucket', 'rows', 'mean IoU', 'Acc@0.5', 'Acc@0.75', 'matched', 'no box']

    def rows(d):
        return [[k, b['rows'], b['mean_iou'], b['acc50'], b['acc75'], b['matched'], b['no_box']] for k, b in d.items()]
    overall = [['all rows', r['scored'], r['mean_iou'], r['acc50'], r['acc75'], r['matched'], r['no_box']]]
    problems = ''.join(f'<li>{esc(p["kind"])}: {p["rows"]:,} row(s), e.g. {esc(p["example"])}</li>'
                       for p in r['problems'])
    pairs = [('file', r['file']), ('template', r['template']), ('boxes read as', r['coords']),
             ('settings fingerprint', r['settings_fingerprint']), ('rows', f'{r["rows"]:,} ({r["scored"]:,} scored)')]
    body = f"""<h1>swift-ext score: {esc(os.path.basename(r['file']))}</h1>
{facts(pairs)}
{f'<h2>Rows not scored</h2><ul class="problems">{problems}</ul>' if problems else ''}
<h2>Metrics</h2>{table(cols, overall, sortable=False)}
<h3>By visual tokens</h3>{table(cols, rows(r['by_visual_tokens']))}
<h3>By original size</h3>{table(cols, rows(r['by_original_size']))}
{section}"""
    write_text(path, page('swift-ext score', body, CARDS_CSS))


# --- command line -------------------------------------------------------------------------------------------------
def build_parser(prog: str = 'swift-ext score') -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split('\n')[0])
    p.add_argument('result', metavar='RESULT.jsonl', help='the file `swift infer --result_path` wrote')
    p.add_argument('--template', required=True, help='the _geo template (or its parent) the model ran with')
    p.add_argument('--dataset', metavar='DATA.jsonl',
                   help='the --val_dataset JSONL: its `solution` column, row by row (swift infer drops it)')
    p.add_argument('--max_pixels', type=int, help="ms-swift's --max_pixels, if the inference used it")
    p.add_argument('--coords', choices=COORDS, help=f"the model's box convention (default: ${COORDS_ENV}, "
                   "else the template's)")
    p.add_argument('--json', action='store_true', help='print the numbers as JSON')
    p.add_argument('--html', metavar='PATH', help='write a page with the metrics and a gallery of predictions')
    p.add_argument('--gallery', type=int, default=12, metavar='N', help='predictions drawn in --html (default 12)')
    p.add_argument('--gallery-max-mb', type=float, default=4.0, metavar='MB', help='bound on embedded images')
    return p


def _settings(args):
    from ..settings import settings_for, template_parent
    template = args.template if args.template.endswith('_geo') else args.template + '_geo'
    template_parent(template)  # refuses a name no family serves, with the list
    return settings_for(template, swift_max_pixels=args.max_pixels)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for what, path in (('RESULT.jsonl', args.result), ('--dataset', args.dataset)):
        reason = refuse_reason(path) if path is not None else None
        if reason:
            print(f'swift-ext score: {what} {path}: {reason}.', file=sys.stderr)
            return 2
    try:
        settings = _settings(args)
    except (ValueError, KeyError) as exc:
        print(f'swift-ext score: --template {args.template!r}: {exc}', file=sys.stderr)
        return 2
    coords = args.coords or os.environ.get(COORDS_ENV) or settings.coords
    if coords not in COORDS:
        print(f'swift-ext score: {COORDS_ENV} must be one of {list(COORDS)}, got {short(repr(coords), 40)}.',
              file=sys.stderr)
        return 2
    if args.gallery < 0 or not args.gallery_max_mb > 0:
        print('swift-ext score: --gallery must be >= 0 and --gallery-max-mb > 0.', file=sys.stderr)
        return 2
    from tqdm import tqdm
    with tqdm(total=os.path.getsize(args.result), unit='B', unit_scale=True, desc='score', file=sys.stderr,
              disable=None, leave=False) as progress:
        result = score_file(args.result, settings, coords, progress, gallery=args.gallery if args.html else 0,
                            dataset=args.dataset)
    status = result.pop('_status')
    if status.refused:
        print(f'swift-ext score: RESULT.jsonl {args.result}: {status.refused}.', file=sys.stderr)
        return 2
    picks = result.pop('_picks')
    if args.html:
        try:
            prepare_out_dir(os.path.dirname(os.path.abspath(args.html)), named_by_user=True)
            write_html(result, gallery_items(args.result, picks, settings, coords, args.dataset), args.html,
                       int(args.gallery_max_mb * (1 << 20)))
        except OutputError as exc:
            print(f'swift-ext score: {exc}', file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_text(result))
        if args.html:
            print(f'Report: {args.html}')
    return 0

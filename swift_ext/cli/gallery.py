"""The rollout gallery shared by `swift-ext review` and `swift-ext score`: images with their boxes.

Each item is one completion drawn on its ORIGINAL image: the ground-truth box(es) in green,
the predicted box(es) mapped back to original pixels (``ImageGeometry.from_model_frame``
with the template's coordinate convention) in red, the tiles of a tiling family as faint
blue lines, and beside it the IoU, step, visual tokens, resized size and the completion text
(escaped). Thumbnails are JPEG, embedded in the one HTML page up to a total byte bound; past
the bound the page says how many were left out.

Which image a completions row shows (``completions.jsonl`` has no image column in ms-swift
4.6; it holds ``step``, ``prompt``, ``completion``, the rewards, ``advantages``, ``solution``
and the `geo_log` columns):

1. a ``geo_image`` column (the image key of the row's images, ';'-joined), where present;
2. an ``images`` column, where a newer ms-swift writes one;
3. else the order: in GRPO a step's rows are its samples in rank order, and the rollout
   encodes of that step (``image_geometry*.jsonl``, mode 'rollout', ranks in order) are the
   same samples in the same order. The join is used only when the step has exactly one
   encode group per row, and checked against the row's ``geo_original_size``; otherwise the
   image is shown as not identified.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..boxes import parse_boxes
from ..geometry import ImageGeometry
from ..scoring import iou_score, parse_solution
from .bounded import FileStatus, as_int, as_number, iter_lines, iter_raw_lines, refuse_reason, short

THUMB_SIDE = 360
MIN_SIDE = 240
MAX_TEXT_SHOWN = 2000  # characters of a completion shown
MAX_DRAW_PIXELS = 64_000_000  # larger images are not decoded for a thumbnail
MAX_RECORDS_PER_STEP = 10000
MAX_STEPS = 20000
GT_COLOR = (26, 152, 80)
PRED_COLOR = (215, 48, 31)
TILE_COLOR = (40, 90, 220, 90)


@dataclass
class Pick:
    """A row chosen for the gallery: where it is and why it was chosen."""

    line_no: int
    row: int
    step: int | None
    score: float | None
    reasons: list[str] = field(default_factory=list)


class RowSampler:
    """Chooses gallery rows while completions stream by, in bounded memory.

    By IoU (the ``GeoIoU`` reward column, else the first column named like ``*iou*``): the
    best and the worst row at the first, the middle and the last step; then random rows
    (a seeded reservoir) up to ``size``.
    """

    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.score_name: str | None = None
        self.per_step: dict[int, list] = {}  # step -> [best (score, line, row), worst]
        self.reservoir: list[tuple[int | None, int, int, float | None]] = []
        self.seen = 0
        self.rng = random.Random(seed)

    def _score_column(self, values: dict[str, float | None]) -> str:
        if 'GeoIoU' in values:
            return 'GeoIoU'
        return next((n for n in values if 'iou' in n.lower() and '50' not in n), '')

    def offer(self, step: int | None, line_no: int, row: int, values: dict[str, float | None]) -> None:
        if self.score_name is None:
            self.score_name = self._score_column(values)
        score = values.get(self.score_name) if self.score_name else None
        self.seen += 1
        entry = (step, line_no, row, score)
        if len(self.reservoir) < self.size:
            self.reservoir.append(entry)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.size:
                self.reservoir[j] = entry
        if score is None or step is None:
            return
        cell = self.per_step.get(step)
        if cell is None:
            if len(self.per_step) >= MAX_STEPS:
                self._thin()
            cell = self.per_step[step] = [(score, line_no, row), (score, line_no, row)]
        if score > cell[0][0]:
            cell[0] = (score, line_no, row)
        if score < cell[1][0]:
            cell[1] = (score, line_no, row)

    def _thin(self) -> None:
        """Keep every other step (the first and the latest kept): memory stays bounded."""
        steps = sorted(self.per_step)
        keep = set(steps[::2]) | {steps[0], steps[-1]}
        self.per_step = {s: v for s, v in self.per_step.items() if s in keep}

    def picks(self) -> list[Pick]:
        chosen: dict[tuple[int, int], Pick] = {}
        steps = sorted(self.per_step)
        name = self.score_name or 'score'
        if steps:
            marks = [('first', steps[0]), ('middle', steps[len(steps) // 2]), ('last', steps[-1])]
            for where, step in marks:
                best, worst = self.per_step[step]
                for label, (score, line_no, row) in (('best', best), ('worst', worst)):
                    key = (line_no, row)
                    pick = chosen.get(key)
                    if pick is None and len(chosen) >= self.size:
                        continue
                    if pick is None:
                        pick = chosen[key] = Pick(line_no, row, step, score)
                    reason = f'{label} {name} at the {where} step'
                    if reason not in pick.reasons:
                        pick.reasons.append(reason)
        for step, line_no, row, score in sorted(self.reservoir, key=lambda e: (e[1], e[2])):
            if len(chosen) >= self.size:
                break
            if (line_no, row) not in chosen:
                chosen[(line_no, row)] = Pick(line_no, row, step, score, ['random'])
        return sorted(chosen.values(), key=lambda p: (p.step is None, p.step or 0, p.line_no, p.row))


# --- one gallery item --------------------------------------------------------------------------------
@dataclass
class Item:
    """Everything one gallery card shows."""

    reasons: list[str]
    completion: str
    step: int | None = None
    image_key: str | None = None  # a path, 'sha1:...' or a URL
    image_bytes: bytes | None = None  # an in-line image (score reads them from the result file)
    geometry: ImageGeometry | None = None
    coords: str | None = None
    solution: Any = None
    rewards: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    row_label: str = ''

    @property
    def gt_boxes(self) -> list[list[float]] | None:
        return parse_solution(self.solution) if self.solution is not None else None

    @property
    def pred_boxes(self) -> list[list[float]]:
        """Predicted boxes in original pixels (unclipped), or [] when the frame is unknown."""
        if self.geometry is None or self.coords is None:
            return []
        out = []
        for box in parse_boxes(self.completion):
            mapped = self.geometry.from_model_frame(box, self.coords)
            if all(math.isfinite(v) for v in mapped):
                out.append(mapped)
        return out

    @property
    def iou(self) -> float | None:
        if self.geometry is None or self.coords is None:
            return None
        return iou_score(self.completion, self.solution, self.geometry, self.coords)

    def summary(self) -> dict:
        g = self.geometry
        return {'step': self.step, 'reasons': self.reasons, 'image': self.image_key, 'iou': self.iou,
                'visual_tokens': g.num_tokens if g else None,
                'resized': f'{g.resized_width}x{g.resized_height}' if g else None,
                'original': f'{g.original_width}x{g.original_height}' if g else None,
                'gt_boxes': self.gt_boxes, 'pred_boxes': self.pred_boxes, 'notes': self.notes}


# --- drawing -------------------------------------------------------------------------------------------
def _load(item: Item):
    """The item's image as a small RGB PIL image, or (None, why not)."""
    from PIL import Image
    try:
        from ..images import read_image_size
    except ImportError:  # before swift_ext.images existed
        from ..geometry import read_image_size
    if item.image_bytes is not None:
        source: Any = io.BytesIO(item.image_bytes)
        size_source: Any = item.image_bytes
    else:
        key = item.image_key
        if not key:
            return None, 'image not identified'
        if key.startswith('sha1:'):
            return None, f'image given in-line ({short(key, 40)}); not kept in the log, not drawn'
        if '://' in key:
            return None, f'remote image ({short(key, 80)}); not fetched'
        reason = refuse_reason(key)
        if reason == 'missing':
            return None, f'image file missing: {short(key, 160)}'
        if reason:
            return None, f'image file {short(key, 160)}: {reason}'
        source = size_source = key
    try:
        width, height = read_image_size(size_source)
        if width * height > MAX_DRAW_PIXELS:
            return None, f'image is {width}x{height}, too large to draw a thumbnail of'
        with Image.open(source) as img:
            img.draft('RGB', (THUMB_SIDE, THUMB_SIDE))  # JPEG: decode at a reduced scale
            img = img.convert('RGB')
            original = img.size
            img.thumbnail((THUMB_SIDE, THUMB_SIDE))
            if max(img.size) < MIN_SIDE:  # a 50x60 image is drawn large enough to see its boxes
                k = MIN_SIDE / max(img.size)
                img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))), Image.NEAREST)
            return (img, original), None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, f'image unreadable: {short(str(exc), 160)}'


def draw(item: Item) -> tuple[bytes | None, str | None]:
    """JPEG bytes of the item's thumbnail with its boxes and tiles, or (None, why not)."""
    from PIL import Image, ImageDraw
    loaded, why = _load(item)
    if loaded is None:
        return None, why
    img, (file_w, file_h) = loaded
    g = item.geometry
    frame_w, frame_h = (g.original_width, g.original_height) if g else (file_w, file_h)
    if g and (file_w, file_h) != (frame_w, frame_h):
        item.notes.append(f'the file is {file_w}x{file_h} now; the log says {frame_w}x{frame_h}')
    sx, sy = img.width / frame_w, img.height / frame_h

    def scaled(box):
        x1, y1, x2, y2 = box
        x1, x2 = sorted((x1 * sx, x2 * sx))
        y1, y2 = sorted((y1 * sy, y2 * sy))
        lim = 4 * THUMB_SIDE  # far outside the image: clip so PIL draws a visible edge
        return [max(-lim, min(lim, v)) for v in (x1, y1, x2, y2)]

    overlay = Image.new('RGBA', img.size, (0, 0, 0, 0))
    faint = ImageDraw.Draw(overlay)
    for line in tile_lines(g) if g else []:
        faint.line([(line[0] * sx, line[1] * sy), (line[2] * sx, line[3] * sy)], fill=TILE_COLOR, width=1)
    img = Image.alpha_composite(img.convert('RGBA'), overlay).convert('RGB')
    pen = ImageDraw.Draw(img)
    for box in item.gt_boxes or []:
        pen.rectangle(scaled(box), outline=GT_COLOR, width=3)
    for box in item.pred_boxes:
        x1, y1, x2, y2 = scaled(box)
        if x2 - x1 < 1 and y2 - y1 < 1:
            x2, y2 = x1 + 1, y1 + 1
        pen.rectangle([x1, y1, x2, y2], outline=PRED_COLOR, width=2)
    out = io.BytesIO()
    img.save(out, format='JPEG', quality=80)
    return out.getvalue(), None


def tile_lines(g: ImageGeometry) -> list[tuple[float, float, float, float]]:
    """Tile borders in original pixels: the model frame cut in ``tile_cols`` x ``tile_rows``.

    The frame is the canvas where a family pads (LLaVA-NeXT), else the resized image; its
    lines are mapped back with ``from_model_frame``, so padding and scale are honoured.
    """
    cols, rows = g.tile_cols, g.tile_rows
    if not cols or not rows or cols * rows <= 1 or cols > 64 or rows > 64:
        return []
    fw, fh = g.frame_size
    out = []
    for k in range(1, cols):
        x = fw * k / cols
        x1, y1, x2, y2 = g.from_model_frame([x, 0, x, fh], 'abs')
        out.append((x1, max(y1, 0), x2, min(y2, g.original_height)))
    for k in range(1, rows):
        y = fh * k / rows
        x1, y1, x2, y2 = g.from_model_frame([0, y, fw, y], 'abs')
        out.append((max(x1, 0), y1, min(x2, g.original_width), y2))
    return out


# --- HTML ------------------------------------------------------------------------------------------------
CSS = """.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px}
.card{border:1px solid #ddd;border-radius:6px;padding:10px;background:#fff}
.card img{max-width:100%;display:block;margin-bottom:6px;border:1px solid #eee}
.card .missing{background:#f6f0f0;color:#8a1f11;padding:28px 10px;text-align:center;border:1px dashed #d9a}
.card pre{white-space:pre-wrap;word-break:break-word;max-height:180px;overflow:auto;font-size:12px}
.card table td,.card table th{font-size:12px}
.swatch{display:inline-block;width:10px;height:10px;margin:0 3px 0 8px;vertical-align:middle}"""


def _fmt(value: Any) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.3f}'
    return str(value)


def gallery_html(items: Sequence[Item], max_bytes: int, title: str = 'Rollouts') -> tuple[str, dict]:
    """The gallery section and what was embedded: ``{'embedded', 'left_out', 'bytes'}``."""
    cards, used, left_out, embedded = [], 0, 0, 0
    for item in items:
        data, why = draw(item)
        if data is not None:
            uri = 'data:image/jpeg;base64,' + base64.b64encode(data).decode()
            if used + len(uri) > max_bytes:
                left_out += 1
                figure = ('<div class="missing">image left out: the gallery\'s bound of '
                          f'{max_bytes / (1 << 20):.1f} MB is reached</div>')
            else:
                used += len(uri)
                embedded += 1
                figure = f'<img alt="rollout image" src="{uri}">'
        else:
            figure = f'<div class="missing">{html.escape(why or "no image")}</div>'
        cards.append(_card(item, figure))
    note = ''
    if left_out:
        note = (f'<p class="warn">{left_out} of {len(items)} image(s) left out to keep the embedded images under '
                f'{max_bytes / (1 << 20):.1f} MB (--gallery-max-mb).</p>')
    legend = (f'<p><span class="swatch" style="background:rgb{GT_COLOR}"></span>ground truth'
              f'<span class="swatch" style="background:rgb{PRED_COLOR}"></span>predicted, in original pixels'
              f'<span class="swatch" style="background:rgb{TILE_COLOR[:3]};opacity:.5"></span>tiles</p>')
    section = (f'<h2 id="gallery">{html.escape(title)}</h2>{legend}{note}'
               f'<div class="gallery">{"".join(cards)}</div>')
    return section, {'embedded': embedded, 'left_out': left_out, 'bytes': used}


def _card(item: Item, figure: str) -> str:
    g = item.geometry
    facts = [('IoU', _fmt(item.iou)), ('step', _fmt(item.step))]
    if item.row_label:
        facts.append(('row', item.row_label))
    if g:
        facts += [('visual tokens', f'{g.num_tokens:,}'), ('resized', f'{g.resized_width}x{g.resized_height}'),
                  ('original', f'{g.original_width}x{g.original_height}')]
        if g.tile_cols:
            facts.append(('tiles', f'{g.tile_cols}x{g.tile_rows}' + (' + thumbnail' if g.thumbnail else '')))
    facts += [(name, _fmt(v)) for name, v in list(item.rewards.items())[:6]]
    facts.append(('chosen as', '; '.join(item.reasons)))
    gt, pred = item.gt_boxes, item.pred_boxes
    facts.append(('boxes', f'{len(gt) if gt else 0} true, {len(pred)} predicted'))
    if item.image_key:
        facts.append(('image', short(item.image_key, 90)))
    rows = ''.join(f'<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>' for k, v in facts)
    notes = ''.join(f'<p class="warn">{html.escape(n)}</p>' for n in item.notes)
    text = item.completion
    more = f'\n... ({len(text) - MAX_TEXT_SHOWN:,} more characters)' if len(text) > MAX_TEXT_SHOWN else ''
    return (f'<div class="card">{figure}<table>{rows}</table>{notes}'
            f'<pre>{html.escape(text[:MAX_TEXT_SHOWN] + more)}</pre></div>')


# --- review: from completions.jsonl rows to items ----------------------------------------------------------
def _column(table: dict, name: str, i: int) -> Any:
    column = table.get(name)
    return column[i] if isinstance(column, list) and i < len(column) else None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ''
    try:
        return short(json.dumps(value, default=str), 64 * 1024)
    except (ValueError, RecursionError):
        return f'<{type(value).__name__}>'


def fetch_rows(path: str, picks: Sequence[Pick], max_line: int) -> dict[tuple[int, int], dict]:
    """The chosen rows of completions.jsonl (a second pass, decoding only their lines)."""
    wanted: dict[int, list[int]] = {}
    for p in picks:
        wanted.setdefault(p.line_no, []).append(p.row)
    out: dict[tuple[int, int], dict] = {}
    status = FileStatus(path)
    for line_no, raw in iter_raw_lines(path, status, max_line):
        if line_no not in wanted:
            continue
        try:
            table = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if not isinstance(table, dict):
            continue
        steps = table.get('step') if isinstance(table.get('step'), list) else []
        for i in wanted[line_no]:
            out[(line_no, i)] = {'table_rows': len(steps), 'table': {
                name: _column(table, name, i) for name in list(table)[:300]}}
    return out


def _group_samples(records: list[dict]) -> list[list[dict]]:
    """Consecutive encode records of one sample: a new sample starts at image_index 0."""
    groups: list[list[dict]] = []
    previous = None
    for rec in records:
        index = as_int(rec.get('image_index'))
        if not groups or index is None or previous is None or index <= previous:
            groups.append([])
        groups[-1].append(rec)
        previous = index
    return groups


def read_step_records(geo_files: Sequence[str], steps: set, keys: set, max_line: int) -> tuple[dict, dict]:
    """Records of the given steps (by mode, ranks in order) and the first record of each key."""
    by_step: dict[int, dict[str, list[dict]]] = {}
    by_key: dict[str, dict] = {}
    for path in geo_files:
        status = FileStatus(path)
        for _, rec in iter_lines(path, status, max_line=max_line):
            if not isinstance(rec, dict):
                continue
            step = as_int(rec.get('step'))
            key = rec.get('image')
            if step in steps:
                modes = by_step.setdefault(step, {})
                mode = rec.get('mode') if rec.get('mode') in ('train', 'rollout') else 'train'
                bucket = modes.setdefault(mode, [])
                if len(bucket) < MAX_RECORDS_PER_STEP:
                    bucket.append(rec)
            if isinstance(key, str) and key in keys and (key not in by_key or step in steps):
                by_key[key] = rec
    return by_step, by_key


def geometry_of(rec: dict | None) -> tuple[ImageGeometry | None, str | None]:
    """An ImageGeometry from a log record, or (None, why not)."""
    if rec is None:
        return None, 'no geometry record for this image'
    if rec.get('error'):
        return None, f'the image failed to encode: {short(str(rec["error"]), 200)}'
    try:
        geo = ImageGeometry.from_dict(rec)
        ok = all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 31 for v in (
            geo.original_width, geo.original_height, geo.resized_width, geo.resized_height))
        if not ok or not isinstance(geo.num_tokens, int):
            return None, 'the geometry record has invalid sizes'
        if geo.tile_cols is not None and not (isinstance(geo.tile_cols, int) and isinstance(geo.tile_rows, int)):
            return None, 'the geometry record has invalid tiles'
        return geo, None
    except (TypeError, ValueError, AttributeError):
        return None, 'the geometry record is malformed'


def _first_image(value: Any) -> str | None:
    """A path from an ``images`` cell: a list of paths or ``{'path': ...}`` dicts."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, dict):
        value = value.get('path')
    return value if isinstance(value, str) and 0 < len(value) < 4096 else None


def review_gallery(run_dir: str, sampler: RowSampler, info: dict, geo_files: Sequence[str],
                   coords: str | None = None) -> dict:
    """The review gallery's items: chosen rows, their images and geometry, the box convention."""
    from ..runlog import COMPLETIONS_FILE
    from .review import MAX_COMPLETIONS_LINE, MAX_GEO_LINE
    picks = sampler.picks()
    rows = fetch_rows(os.path.join(run_dir, COMPLETIONS_FILE), picks, MAX_COMPLETIONS_LINE)
    coords, coords_note = coords_for(info, coords)
    keys, steps = set(), set()
    for p in picks:
        table = rows.get((p.line_no, p.row), {}).get('table', {})
        key = table.get('geo_image')
        if isinstance(key, str) and key:
            keys.add(key.split(';')[0])
        elif _first_image(table.get('images')) is None and p.step is not None:
            steps.add(p.step)
    by_step, by_key = read_step_records(geo_files, steps, keys, MAX_GEO_LINE)
    items = []
    for p in picks:
        found = rows.get((p.line_no, p.row))
        table = found['table'] if found else {}
        item = Item(reasons=p.reasons, completion=_text(table.get('completion')), step=p.step,
                    coords=coords, solution=table.get('solution'),
                    rewards={k: as_number(v) for k, v in table.items()
                             if k not in ('step', 'advantages') and not k.startswith('geo_')
                             and isinstance(v, (int, float)) and not isinstance(v, bool)})
        if found is None:
            item.notes.append('row not found again in completions.jsonl')
        rec = _record_for(item, table, p, found, by_step, by_key)
        item.geometry, why = geometry_of(rec)
        if why and item.image_key:
            item.notes.append(why)
        if coords_note and item.geometry:
            item.notes.append(coords_note)
        items.append(item)
    return {'items': items, 'coords': coords, 'score_column': sampler.score_name or None}


def _record_for(item: Item, table: dict, p: Pick, found, by_step, by_key) -> dict | None:
    key = table.get('geo_image')
    if isinstance(key, str) and key:
        item.image_key = key.split(';')[0]
        return by_key.get(item.image_key)
    path = _first_image(table.get('images'))
    if path is not None:
        item.image_key = path
        return None
    modes = by_step.get(p.step, {})
    records = modes.get('rollout') or modes.get('train') or []
    groups = _group_samples(records)
    rows_in_step = found['table_rows'] if found else 0
    if not groups or len(groups) != rows_in_step or p.row >= len(groups):
        item.notes.append(f'image not identified: step {p.step} has {len(groups)} encode group(s) '
                          f'for {rows_in_step} row(s)')
        return None
    group = groups[p.row]
    logged = table.get('geo_original_size')
    sizes = ';'.join(f'{r.get("original_width")}x{r.get("original_height")}' for r in group)
    if isinstance(logged, str) and logged != sizes:
        item.notes.append(f'image not identified: the row says {short(logged, 40)}, its encode {short(sizes, 40)}')
        return None
    key = group[0].get('image')
    item.image_key = key if isinstance(key, str) else None
    return group[0]


def coords_for(info: dict, named: str | None) -> tuple[str | None, str | None]:
    """The box convention of the run: ``--coords``, else its logged settings', else its template's."""
    if named:
        return named, None
    settings = info.get('settings') or {}
    coords = settings.get('coords') if isinstance(settings, dict) else None
    if coords in ('abs', 'norm1000', 'norm1'):
        return coords, None
    template = info.get('template')
    if isinstance(template, str):
        try:
            from ..settings import default_settings
            return default_settings(template).coords, None
        except (ValueError, TypeError, KeyError):
            pass
    return None, 'box convention unknown (no settings logged, template not known): pass --coords'

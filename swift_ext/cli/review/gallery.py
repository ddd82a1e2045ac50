"""The review's gallery: which completions rows it shows, and which image and geometry each row had.

Rows are chosen while completions stream by (``RowSampler``), then read again (``fetch_rows``).
Which image a row shows (``completions.jsonl`` has no image column in ms-swift 4.6; it holds
``step``, ``prompt``, ``completion``, the rewards, ``advantages``, ``solution`` and the `geo_log`
columns):

1. a ``geo_image`` column (the image key of the row's images, ';'-joined), where present;
2. an ``images`` column, where a newer ms-swift writes one;
3. else the order: in GRPO a step's rows are its samples in rank order, and the rollout
   encodes of that step (``image_geometry*.jsonl``, mode 'rollout', ranks in order) are the
   same samples in the same order. The join is used only when the step has exactly one
   encode group per row, and checked against the row's ``geo_original_size``; otherwise the
   image is shown as not identified.

Of a row's images, the one drawn is the one its boxes belong to: ``swift_ext.truth``'s rule, the row's
``image_index`` (geo_log writes it as ``geo_image_index``), the first without one. The page says in words
how the rows were matched to images (``matched_words``).
"""
from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...geometry import COORDS, ImageGeometry
from ...runlog import COMPLETIONS_FILE, MAX_COMPLETIONS_LINE, MODES, line_kind
from ...settings import default_settings
from ...truth import COMPLETION_COLUMN, IMAGE_INDEX, TruthError, image_index
from ..bounded import FileStatus, as_int, as_number, iter_raw_lines, short
from ..cards import Item
from ..embed import ImagePolicy
from .read import geometry_files, geometry_lines

MAX_RECORDS_PER_STEP = 10000
MAX_STEPS = 20000  # steps the sampler keeps a best and a worst row of (thinned past that)


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



# --- from completions.jsonl rows to items ----------------------------------------------------------------
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


def read_step_records(geo_files: Sequence[str], steps: set, keys: set) -> tuple[dict, dict]:
    """Records of the given steps (by mode, ranks in order) and the first record of each key."""
    by_step: dict[int, dict[str, list[dict]]] = {}
    by_key: dict[str, dict] = {}
    for path in geo_files:
        status = FileStatus(path)
        for _, rec in geometry_lines(path, status, decode=json.loads, errors=(ValueError, RecursionError)):
            if not isinstance(rec, dict) or line_kind(rec) == 'video':  # the gallery shows images
                continue
            step = as_int(rec.get('step'))
            key = rec.get('image')
            if step in steps:
                modes = by_step.setdefault(step, {})
                mode = rec.get('mode') if rec.get('mode') in MODES else 'train'
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


def _nth_image(value: Any, index: int) -> str | None:
    """A path from an ``images`` cell (a list of paths or ``{'path': ...}`` dicts), its ``index``-th."""
    if isinstance(value, list):
        value = value[index] if index < len(value) else None
    elif index:
        return None
    if isinstance(value, dict):
        value = value.get('path')
    return value if isinstance(value, str) and 0 < len(value) < 4096 else None


def row_index(table: dict) -> tuple[int, str | None]:
    """The image a completions row's boxes belong to (``swift_ext.truth``: geo_log's ``geo_image_index``
    column, else an ``image_index`` one; 0 without either), and a note where the value is unusable."""
    value = table.get(COMPLETION_COLUMN, table.get(IMAGE_INDEX))
    try:
        return image_index(value), None
    except TruthError as exc:
        return 0, f'{exc}: the first image is shown'


def review_gallery(run_dir: str, sampler: RowSampler, info: dict, policy: ImagePolicy,
                   coords: str | None = None) -> list[Item]:
    """The review gallery's items: chosen rows, their images and geometry, in the run's box convention.

    An image file is drawn only when the run's image_geometry records name it and ``policy``
    confirms its folder (``embed``); otherwise its card says why.
    """
    picks = sampler.picks()
    rows = fetch_rows(os.path.join(run_dir, COMPLETIONS_FILE), picks, MAX_COMPLETIONS_LINE)
    coords, coords_note = coords_for(info, coords)
    keys, steps = set(), set()
    for p in picks:
        table = rows.get((p.line_no, p.row), {}).get('table', {})
        key, index = table.get('geo_image'), row_index(table)[0]
        if isinstance(key, str) and key:
            keys.add(_nth_key(key, index))
        elif _nth_image(table.get('images'), index) is not None:
            keys.add(_nth_image(table.get('images'), index))
        elif p.step is not None:
            steps.add(p.step)
    by_step, by_key = read_step_records(geometry_files(run_dir), steps, keys)
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
    local = [i for i in items if _is_file(i.image_key)]
    policy.confirm(i.image_key for i in local if i.image_key in by_key)
    for item in local:
        if item.image_key not in by_key:
            item.withheld = ('image not embedded: no image_geometry record of this run names '
                             f'{short(item.image_key, 160)}')
        else:
            item.withheld = policy.refusal(item.image_key)
    return items


def _is_file(key: str | None) -> bool:
    return bool(key) and not key.startswith('sha1:') and '://' not in key


def _nth_key(keys: str, index: int) -> str:
    """The ``index``-th image key of a ``geo_image`` cell (';' between a row's images)."""
    parts = keys.split(';')
    return parts[index] if index < len(parts) else ''


# How a row's image was found, in words (the page says how rows were matched to images).
MATCHED = {'column': "the row's geo_image column (written by geo_log)", 'images': "the row's images column",
           'order': "the order of its step's rollout encodes (no image column in the row)",
           'none': 'not matched to an image'}


def _record_for(item: Item, table: dict, p: Pick, found, by_step, by_key) -> dict | None:
    index, why = row_index(table)
    if why:
        item.notes.append(why)
    item.matched_by = 'none'
    key = table.get('geo_image')
    if isinstance(key, str) and key:
        item.image_key = _nth_key(key, index) or None
        item.matched_by = 'column' if item.image_key else 'none'
        if item.image_key is None:
            item.notes.append(f'image not identified: the row has no image {index} (image_index)')
        return by_key.get(item.image_key) if item.image_key else None
    path = _nth_image(table.get('images'), index)
    if path is not None:
        item.image_key, item.matched_by = path, 'images'
        return by_key.get(path)
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
    if index >= len(group):
        item.notes.append(f'image not identified: the row has no image {index} (image_index)')
        return None
    key = group[index].get('image')
    item.image_key = key if isinstance(key, str) else None
    item.matched_by = 'order'
    if item.image_key:
        by_key.setdefault(item.image_key, group[index])  # the records name it: they gave it
    return group[index]


def matched_words(items: Sequence[Item]) -> str | None:
    """How the gallery's rows were matched to their images, in words; None without items."""
    counts: dict[str, int] = {}
    for item in items:
        how = getattr(item, 'matched_by', None) or 'none'
        counts[how] = counts.get(how, 0) + 1
    if not counts:
        return None
    parts = [f'{n} by {MATCHED[k]}' if k != 'none' else f'{n} {MATCHED[k]}' for k, n in counts.items()]
    return ('Rollouts were matched to their images: ' + '; '.join(parts) + ". A row's boxes are drawn on the "
            'image its image_index names (the first without one).')


def coords_for(info: dict, named: str | None) -> tuple[str | None, str | None]:
    """The box convention of the run: ``--coords``, else its logged settings', else its template's."""
    if named:
        return named, None
    settings = info.get('settings') or {}
    coords = settings.get('coords') if isinstance(settings, dict) else None
    if coords in COORDS:
        return coords, None
    template = info.get('template')
    if isinstance(template, str):
        try:
            return default_settings(template).coords, None
        except (ValueError, TypeError, KeyError):
            pass
    return None, 'box convention unknown (no settings logged, template not known): pass --coords'

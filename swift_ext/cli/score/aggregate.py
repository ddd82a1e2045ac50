"""Scoring a result file: rows streamed, metrics summed overall and per bucket, gallery rows picked.

Memory does not grow with rows: sums per bucket, problem counts with the first row numbers, and a
bounded set of gallery picks (best, worst, a seeded random sample).
"""
from __future__ import annotations

import heapq
import json
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterator

from ...scoring import iou_score
from ...truth import IMAGE_INDEX
from ..bounded import FileStatus, iter_raw_lines, short
from ..cards import Item
from ..embed import ImagePolicy
from .rows import RowError, first_box_iou, ground_truth, row_geometry
from .truth import KEY, DatasetTruth
from .video import VideoScores, add_video_row, is_video_row, mode_of

MAX_LINE = 64 << 20
MAX_EXAMPLES = 10  # row numbers kept per kind of problem
SIZE_BUCKETS = ((0.25, '< 0.25 MP'), (1.0, '0.25-1 MP'), (4.0, '1-4 MP'), (math.inf, '>= 4 MP'))


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


def joined_rows(path: str, status: FileStatus, truth: DatasetTruth | None,
                progress=None) -> Iterator[tuple[int, dict | None, tuple[str, str] | None]]:
    """``(line number, row, None)`` for each result row, with the dataset's ``solution`` where it has
    none, or ``(line number, None, (kind, why))`` for a row that cannot be read or joined.

    Raises:
        JoinError: the dataset cannot be matched to the rows (see ``truth``).
    """
    rows = 0
    for row_no, raw in iter_raw_lines(path, status, MAX_LINE, progress, long_lines=True):
        rows += 1
        row, problem = _parse(raw)
        needs = problem is None and row.get('solution') is None and row.get('objects') is None
        if truth is not None and (needs or not truth.by_key):  # by position, every row takes its place
            try:
                solution = truth.solution(row)
            except RowError as exc:
                row, problem = None, ('not in --dataset', str(exc))
            else:
                if needs and solution is not None:
                    row['solution'] = solution
        yield row_no, row, problem
    if truth is not None:
        truth.finish(rows)


def _parse(raw: bytes | None) -> tuple[dict | None, tuple[str, str] | None]:
    if raw is None:
        return None, ('line too long', f'longer than {MAX_LINE:,} bytes; not read')
    try:
        row = json.loads(raw)
    except (ValueError, RecursionError):
        return None, ('truncated last line' if not raw.endswith(b'\n') else 'not JSON', 'not a JSON object')
    if not isinstance(row, dict):
        return None, ('a row must', f'a row must be a JSON object, got {type(row).__name__}')
    return row, None


def _row_record(row_no: int, row: dict | None, iou: float | None = None, matched: float | None = None,
                geo=None, key: str | None = None, problem: tuple[str, str] | None = None) -> dict:
    """One row's line of ``--rows`` / ``--json``'s ``per_row``: its IoU and geometry, or why it was not scored."""
    out: dict = {'row': row_no}
    ident = row.get(KEY) if isinstance(row, dict) else None
    if isinstance(ident, (str, int)) and not isinstance(ident, bool):
        out[KEY] = short(ident, 200) if isinstance(ident, str) else ident
    if problem is not None:
        out.update(not_scored=problem[0], why=problem[1])
        return out
    index = row.get(IMAGE_INDEX) if isinstance(row.get(IMAGE_INDEX), int) else 0
    out.update(iou=iou, no_box=iou is None, matched=matched, image=short(key or '', 300), image_index=index,
               original=f'{geo.original_width}x{geo.original_height}',
               resized=f'{geo.resized_width}x{geo.resized_height}', visual_tokens=geo.num_tokens)
    return out


def score_file(path: str, settings, coords: str, progress=None, gallery: int = 0,
               truth: DatasetTruth | None = None, on_row=None, keep_rows: int = 0, infer_backend: str = 'pt') -> dict:
    """Stream ``path`` and return the metrics (and the gallery's row numbers).

    ``truth``: the ``--dataset`` join, for rows without a ``solution`` (``swift infer`` drops
    extra columns). ``on_row``: called with each row's record (``--rows``); ``keep_rows``: the
    first that many records are returned as ``per_row`` (``--json``), the rest counted in
    ``per_row_left_out`` (memory stays bounded). Video rows are scored by temporal IoU (``video``;
    ``infer_backend`` sets the time axis of their prompts).

    Raises:
        JoinError: the dataset cannot be matched to the rows.
    """
    status = FileStatus(path)
    total, by_tokens, by_size = Bucket(), defaultdict(Bucket), defaultdict(Bucket)
    problems = Problems()
    picker = GalleryPicker(gallery)
    videos = VideoScores(settings.template, mode_of(infer_backend), GalleryPicker(gallery))
    rows = 0
    per_row: list[dict] = []
    left_out = 0

    def emit(record: dict) -> None:
        nonlocal left_out
        if on_row is not None:
            on_row(record)
        if len(per_row) < keep_rows:
            per_row.append(record)
        else:
            left_out += 1
    for row_no, row, problem in joined_rows(path, status, truth, progress):
        rows += 1
        try:
            if problem is not None:
                raise RowError(problem[1])
            response = row.get('response')
            if not isinstance(response, str):
                raise RowError(f'`response` must be a string, got {short(repr(response), 60)}')
            if is_video_row(row):
                emit(add_video_row(videos, problems, row_no, row, response))
                continue
            geo, _, _, key = row_geometry(row, settings)
            gt = ground_truth(row, geo)
        except RowError as exc:
            kind = problem[0] if problem else _kind(str(exc))
            problems.add(kind, row_no, str(exc))
            emit(_row_record(row_no, row, problem=(kind, str(exc))))
            continue
        iou = first_box_iou(response, gt, geo, coords)
        matched = iou_score(response, gt, geo, coords) or 0.0
        emit(_row_record(row_no, row, iou, matched, geo, key))
        for bucket in (total, by_tokens[token_bucket(geo.num_tokens)],
                       by_size[size_bucket(geo.original_width, geo.original_height)]):
            bucket.add(iou, matched)
        picker.offer(row_no, iou or 0.0)
    order = {label: i for i, (_, label) in enumerate(SIZE_BUCKETS)}
    return {
        **total.to_dict(),
        'file': os.path.abspath(path), 'template': settings.template, 'coords': coords,
        'settings_fingerprint': settings.fingerprint(), 'rows': rows, 'scored': total.rows + videos.total.rows,
        'not_scored': sum(problems.counts.values()),
        'joined_by': None if truth is None else (KEY if truth.by_key else 'position'),
        'by_visual_tokens': {k: by_tokens[k].to_dict() for k in sorted(
            by_tokens, key=lambda s: int(s.split('-')[0].replace(',', '').replace('< ', '0')))},
        'by_original_size': {k: by_size[k].to_dict() for k in sorted(by_size, key=order.get)},
        'problems': problems.to_list(), 'file_problems': status.problems(), '_picks': picker.picks(),
        **({'per_row': per_row, 'per_row_left_out': left_out} if keep_rows else {}),
        '_status': status, 'video': videos.to_dict(), '_video_picks': videos.picker.picks(),
    }


def _kind(message: str) -> str:
    for needle, kind in (('no ground truth', 'no ground truth'), ('`solution`', 'solution'), ('`objects`', 'objects'),
                         ('`response`', 'response'), ('image_index', 'image_index'), ('no image', 'no image'),
                         ('`images[', 'images'), ('chat_template_kwargs', 'chat_template_kwargs'),
                         ('remote image', 'remote image'), ('missing', 'missing'), ('a row must', 'a row must')):
        if needle in message:
            return kind
    return 'image unreadable'


# --- gallery --------------------------------------------------------------------------------------------------
def gallery_items(path: str, picks: dict[int, list[str]], settings, coords: str, policy: ImagePolicy,
                  truth: DatasetTruth | None = None) -> list[Item]:
    """The picked rows as gallery items; an image file ``policy`` does not confirm is withheld (``embed``)."""
    items = []
    for row_no, row, problem in joined_rows(path, FileStatus(path), truth):
        if row_no not in picks or problem is not None:
            continue
        try:
            geo, _, data, key = row_geometry(row, settings)
            gt = ground_truth(row, geo)
        except RowError:
            continue
        items.append(Item(reasons=picks[row_no], completion=row['response'], image_key=key, image_bytes=data,
                          geometry=geo, coords=coords, solution=gt, row_label=f'{row_no:,}',
                          withheld=policy.refusal(key) if data is None else None))
    return items

"""`score` on video rows: temporal IoU of each `swift infer` response against its ``solution`` interval.

A row with ``videos`` (and no ``images``) is a temporal grounding row: ``solution`` is ``[start, end]``
seconds of the source video (or a list of them; ``temporal.parse_solution_intervals``), the response
is read as ``geo_tiou`` reads a completion (``temporal.parse_intervals``: ``[12.3, 25.0]``,
``12.3 - 25.0``, ``<t seconds>``, ``mm:ss`` ...). The template's geometry of the video, from its header,
gives the clip window both sides are clipped to and the time axis of the prompt (``--infer_backend vllm``:
ms-swift's vLLM mode, where Qwen3-VL's prompt counts from the clip start).

Reported: mean tIoU (0 for a response with no interval), R@0.3 / R@0.5 / R@0.7 (the share of rows whose
tIoU reaches it, the temporal grounding papers' R1@m), rows with no parseable interval, and the same per
sampling step (``2 / sample_fps``: an interval finer than it cannot be told apart).
"""
from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from ...cache import BoundedCache
from ...geometry import VideoGeometry
from ...temporal import parse_intervals, parse_solution_intervals, tiou_score
from ..bounded import short
from .rows import RowError
from .truth import KEY

THRESHOLDS = (0.3, 0.5, 0.7)
STEP_BUCKETS = ((0.5, '< 0.5 s'), (1.0, '0.5-1 s'), (2.0, '1-2 s'), (4.0, '2-4 s'), (math.inf, '>= 4 s'))
GEOMETRY_CACHE = 4096
VIDEO_KWARGS = ('fps', 'nframes', 'min_frames', 'max_frames', 'video_start', 'video_end', 'max_pixels',
                'min_pixels', 'total_pixels', 'resized_width', 'resized_height')


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('--infer_backend', default='pt', choices=('pt', 'transformers', 'vllm', 'sglang', 'lmdeploy'),
                   help="`swift infer`'s backend (video rows: vllm reads Qwen3-VL times from the clip start, "
                        'as ms-swift prompts it)')


def mode_of(infer_backend: str | None) -> str:
    return 'vllm' if infer_backend == 'vllm' else 'transformers'


def is_video_row(row: Mapping) -> bool:
    """A row scored by time: it has ``videos`` and no ``images``."""
    return bool(row.get('videos')) and not row.get('images')


def video_source(row: Mapping) -> Any:
    videos = row['videos']
    return videos[0] if isinstance(videos, list) else videos


class TBucket:
    __slots__ = ('rows', 'tiou', 'hits', 'no_interval')

    def __init__(self):
        self.rows, self.tiou, self.hits, self.no_interval = 0, 0.0, [0] * len(THRESHOLDS), 0

    def add(self, tiou: float, parsed: bool) -> None:
        self.rows += 1
        self.tiou += tiou
        for i, m in enumerate(THRESHOLDS):
            self.hits[i] += tiou >= m
        self.no_interval += not parsed

    def to_dict(self) -> dict:
        n = self.rows
        return {'rows': n, 'mean_tiou': self.tiou / n if n else None,
                **{f'r@{m}': (h / n if n else None) for m, h in zip(THRESHOLDS, self.hits, strict=True)},
                'no_interval': self.no_interval}


def step_bucket(step: float) -> str:
    return next(label for limit, label in STEP_BUCKETS if step < limit)


class VideoScores:
    """Temporal IoU sums over a result file's video rows (bounded: sums, a geometry cache, gallery picks)."""

    def __init__(self, template: str, mode: str = 'transformers', picker=None):
        self.template, self.mode, self.picker = template, mode, picker
        self.total, self.by_step = TBucket(), defaultdict(TBucket)
        self.geometries = BoundedCache(GEOMETRY_CACHE)

    def geometry(self, row: Mapping) -> VideoGeometry:
        """The template's geometry of the row's first video, from its header. Raises RowError naming it."""
        from ...video_rows import predict_source
        kwargs = row.get('chat_template_kwargs')
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise RowError(f'`chat_template_kwargs` must be an object, got {short(repr(kwargs), 60)}')
        kwargs = {k: v for k, v in (kwargs or {}).items() if k in VIDEO_KWARGS}
        source = video_source(row)
        key = (repr(source)[:2000], repr(sorted(kwargs.items())))
        if key not in self.geometries:
            try:
                self.geometries[key] = predict_source(self.template, source, row_kwargs=kwargs, mode=self.mode), None
            except Exception as exc:  # VideoError naming the video, a hostile row limit: the row is not scored
                self.geometries[key] = None, short(str(exc), 300)
        geo, why = self.geometries[key]
        if geo is None:
            raise RowError(why)
        return geo

    def score_row(self, row: Mapping, response: str) -> tuple[VideoGeometry, float, bool, list, list]:
        """``(geometry, tIoU, an interval was parsed, truth, predicted)``; raises RowError for a row not scored."""
        geo = self.geometry(row)
        solution = row.get('solution')
        truth = parse_solution_intervals(solution)
        if truth is None:
            raise RowError(f'`solution` is not [start, end] seconds (or a list of them): {short(repr(solution), 80)}')
        tiou = tiou_score(response, solution, window=(geo.video_start, geo.video_end), offset=geo.timestamp_origin)
        if tiou is None:
            raise RowError(f'`solution` {short(repr(solution), 80)} lies outside the clip the model saw '
                           f'({geo.video_start:g}-{geo.video_end:g} s)')
        predicted = [[s + geo.timestamp_origin, e + geo.timestamp_origin] for s, e in parse_intervals(response)]
        return geo, tiou, bool(predicted), truth, predicted

    def add(self, row_no: int, row: Mapping, response: str) -> tuple[VideoGeometry, float, bool]:
        geo, tiou, parsed, _, _ = self.score_row(row, response)
        for bucket in (self.total, self.by_step[step_bucket(geo.sampling_step)]):
            bucket.add(tiou, parsed)
        if self.picker is not None:
            self.picker.offer(row_no, tiou)
        return geo, tiou, parsed

    def to_dict(self) -> dict | None:
        if not self.total.rows:
            return None
        order = {label: i for i, (_, label) in enumerate(STEP_BUCKETS)}
        return {**self.total.to_dict(), 'time_axis': 'clip start (vLLM mode)' if self.mode == 'vllm' else 'source',
                'by_sampling_step': {k: self.by_step[k].to_dict() for k in sorted(self.by_step, key=order.get)}}


def _pct(v: float | None) -> str:
    return '-' if v is None else f'{100 * v:.1f}%'


def video_text(v: dict | None) -> list[str]:
    """The lines `score` prints for the video rows."""
    if not v:
        return []
    lines = [f'Video rows {v["rows"]:,}: mean tIoU {v["mean_tiou"]:.4f}   '
             + '   '.join(f'R@{m} {_pct(v[f"r@{m}"])}' for m in THRESHOLDS)
             + f'   no parseable interval {v["no_interval"]:,}   (times read on the {v["time_axis"]} axis)',
             'By sampling step (2 / sample fps):',
             f'  {"bucket":<10}{"rows":>8}{"mean tIoU":>11}' + ''.join(f'{"R@" + str(m):>8}' for m in THRESHOLDS)
             + f'{"no interval":>13}']
    for name, b in v['by_sampling_step'].items():
        lines.append(f'  {name:<10}{b["rows"]:>8,}{b["mean_tiou"]:>11.4f}'
                     + ''.join(f'{_pct(b[f"r@{m}"]):>8}' for m in THRESHOLDS) + f'{b["no_interval"]:>13,}')
    return lines


def video_html(v: dict | None, table, strips: str = '') -> str:
    """The page's video section: the metrics table, then the frame strips of the picked rows."""
    if not v:
        return ''
    cols = ['bucket', 'rows', 'mean tIoU', *[f'R@{m}' for m in THRESHOLDS], 'no interval']

    def row(name, b):
        return [name, b['rows'], b['mean_tiou'], *[b[f'r@{m}'] for m in THRESHOLDS], b['no_interval']]
    body = table(cols, [row('all video rows', v)] + [row(k, b) for k, b in v['by_sampling_step'].items()])
    return f'<h2>Video rows: temporal IoU</h2>{body}{strips}'


def video_strips(path: str, picks: dict[int, list[str]], scores: VideoScores, policy, rows) -> str:
    """Frame strips of the picked video rows, each with its truth (green) and prediction (red) intervals."""
    from ..video_strip import strip_data_url, strip_html
    out = []
    for row_no, row, problem in rows:
        if row_no not in picks or problem is not None or not is_video_row(row):
            continue
        try:
            geo, tiou, _, truth, predicted = scores.score_row(row, row.get('response') or '')
        except RowError:
            continue
        source = video_source(row)
        key = source if isinstance(source, str) else None
        refusal = policy.refusal(key) if key else 'in-line video: not drawn'
        url = None
        if refusal is None:
            try:
                url = strip_data_url(source, geo, truth, predicted)
            except Exception as exc:  # a file that changed or cannot be decoded: the strip says so
                refusal = f'frames not drawn: {short(str(exc), 200)}'
        caption = (f'tIoU {tiou:.3f} ({", ".join(picks[row_no])}); truth {truth}, predicted '
                   f'{[[round(s, 2), round(e, 2)] for s, e in predicted] or "none"}; '
                   f'{geo.num_frames} frames at {geo.sample_fps:.3g} fps; response: {short(row.get("response"), 200)}')
        out.append(strip_html(f'row {row_no:,}: {short(str(key or "video"), 120)}', url, caption, refusal))
    return ''.join(out)


def add_video_row(scores: VideoScores, problems, row_no: int, row: Mapping, response: str) -> dict:
    """Score one video row, or count it not scored with its reason (``problems``: ``aggregate.Problems``);
    returns the row's line of ``--rows`` / ``--json``'s ``per_row``."""
    out: dict = {'row': row_no}
    ident = row.get(KEY)
    if isinstance(ident, (str, int)) and not isinstance(ident, bool):
        out[KEY] = short(ident, 200) if isinstance(ident, str) else ident
    try:
        geo, tiou, parsed = scores.add(row_no, row, response)
    except RowError as exc:
        text = str(exc)
        kind = 'solution' if text.startswith('`solution`') else \
            'chat_template_kwargs' if 'chat_template_kwargs' in text else 'video unreadable'
        problems.add(kind, row_no, text)
        return {**out, 'not_scored': kind, 'why': text}
    return {**out, 'tiou': tiou, 'no_interval': not parsed, 'video': short(str(video_source(row)), 300),
            'frames': geo.num_frames, 'sample_fps': geo.sample_fps,
            'resized': f'{geo.resized_width}x{geo.resized_height}', 'video_tokens': geo.num_tokens}

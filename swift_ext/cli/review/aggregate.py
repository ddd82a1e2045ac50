"""Aggregates over a run's logs in bounded memory: image geometry per mode, metrics per step.

``read_geometry`` folds every image_geometry line into a ``GeometryStats`` (one ``ModeStats`` per
encode mode); ``read_logging`` keeps each reward / `vision/` / loss key of ``logging.jsonl`` as a
``Series``. Every table is capped (``MAX_*``); what a cap drops is counted, never silently lost.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ...runlog import LOGGING_FILE, MAX_LOG_LINE, MODES
from ..bounded import DistinctCount, FileStatus, Histogram, as_int, as_metric, iter_lines, short
from ..clamps import LARGE_UPSCALE, counts
from ..clamps import add as add_clamp
from .read import GeoLine, geometry_files, geometry_lines
from .video import VideoStats

MAX_EXAMPLES = 10  # examples kept per kind of problem
MAX_DISTINCT = 5000  # distinct original sizes / error texts counted exactly
MAX_SERIES = 256  # metric keys kept from logging.jsonl
MAX_POINTS = 2000  # points kept per metric (decimated evenly past that; means stay exact)
MAX_STEPS = 20000  # steps kept in per-step tables
MAX_IMAGE_ROWS = 100  # rows of the per-image table (images with a problem first)


# --- geometry ------------------------------------------------------------------------------------------
@dataclass
class ModeStats:
    """Aggregates over the image records of one encode mode ('train' or 'rollout')."""

    images: int = 0  # encodes with a geometry (an image encoded twice counts twice)
    failures: int = 0
    unique: DistinctCount = field(default_factory=DistinctCount)
    original_width: Histogram = field(default_factory=Histogram)
    original_height: Histogram = field(default_factory=Histogram)
    resized_width: Histogram = field(default_factory=Histogram)
    resized_height: Histogram = field(default_factory=Histogram)
    original_mp: Histogram = field(default_factory=Histogram)  # 0.01-megapixel bins
    resized_mp: Histogram = field(default_factory=Histogram)
    tokens: Histogram = field(default_factory=Histogram)
    tiles: Histogram = field(default_factory=Histogram)  # tiled images only
    original_sizes: Counter = field(default_factory=Counter)  # 'WxH', capped
    original_pixels: int = 0  # exact sums, for the megapixel means
    resized_pixels: int = 0
    clamped: dict = field(default_factory=lambda: counts(()))  # clamp name -> images (one vocabulary: Clamp)
    large_upscales: int = 0  # images enlarged LARGE_UPSCALE times or more on one axis, whatever the clamp
    mismatches: int = 0
    mismatch_fields: Counter = field(default_factory=Counter)
    mismatch_examples: list = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # error text, capped
    steps_dropped: int = 0
    # step -> [images, tokens, failures]
    per_step: dict[int | None, list] = field(default_factory=dict)
    image_rows: dict[str, dict] = field(default_factory=dict)  # the per-image table, capped

    def _step(self, step: int | None) -> list:
        row = self.per_step.get(step)
        if row is None:
            if len(self.per_step) >= MAX_STEPS:
                self.steps_dropped += 1
                return [0, 0, 0]
            row = self.per_step[step] = [0, 0, 0]
        return row

    def add(self, r: GeoLine) -> None:
        step = self._step(r.step)
        if r.error:
            self.failures += 1
            step[2] += 1
            _count_capped(self.errors, r.error[:200])
            self._image_row(r, problem=True)
            return
        if r.num_tokens is None or not r.original_width or not r.resized_width \
                or not r.original_height or not r.resized_height:
            return
        self.images += 1
        if r.image:
            self.unique.add(r.image)
        step[0] += 1
        step[1] += r.num_tokens
        self.tokens.add(r.num_tokens)
        self.original_width.add(r.original_width)
        self.original_height.add(r.original_height)
        self.resized_width.add(r.resized_width)
        self.resized_height.add(r.resized_height)
        original = r.original_width * r.original_height
        resized = r.resized_width * r.resized_height
        self.original_pixels += original
        self.resized_pixels += resized
        self.original_mp.add(round(original / 1e4))
        self.resized_mp.add(round(resized / 1e4))
        _count_capped(self.original_sizes, f'{r.original_width}x{r.original_height}')
        if r.tile_cols is not None:
            self.tiles.add(r.num_tiles)
        add_clamp(self.clamped, r.clamped)
        if r.original_width > 0 and r.original_height > 0 and \
                max(r.resized_width / r.original_width, r.resized_height / r.original_height) >= LARGE_UPSCALE:
            self.large_upscales += 1
        if r.mismatch:
            self.mismatches += 1
            for key in list(r.mismatch)[:20]:
                _count_capped(self.mismatch_fields, short(key, 60))
            if len(self.mismatch_examples) < MAX_EXAMPLES:
                self.mismatch_examples.append({'image': short(r.image or ''), 'step': r.step,
                                               'actual_vs_predicted': short(json.dumps(r.mismatch, default=str), 300)})
        self._image_row(r, problem=bool(r.mismatch or r.clamped))

    def _image_row(self, r: GeoLine, problem: bool) -> None:
        key = short(r.image or '(no image key)', 300)
        row = self.image_rows.get(key)
        if row is None:
            if len(self.image_rows) >= MAX_IMAGE_ROWS:
                if not problem:
                    return
                plain = next((k for k, v in self.image_rows.items() if not v['_problem']), None)
                if plain is None:
                    return
                del self.image_rows[plain]  # a problem image takes the place of a plain one
            row = self.image_rows[key] = {
                'image': key, 'encodes': 0, 'original': _size(r.original_width, r.original_height),
                'resized': _size(r.resized_width, r.resized_height), 'tokens': r.num_tokens,
                'tiles': r.num_tiles if r.tile_cols is not None else None, 'clamped': r.clamped,
                'mismatch': _mismatch_text(r.mismatch) if r.mismatch else None,
                'error': short(r.error, 160) if r.error else None, '_problem': problem}
        row['encodes'] += 1


def _mismatch_text(mismatch: dict) -> str:
    """``{'num_tokens': [500, 510]}`` as ``num_tokens 500 (predicted 510)``."""
    parts = []
    for key, value in list(mismatch.items())[:6]:
        if isinstance(value, list) and len(value) == 2:
            parts.append(f'{short(key, 30)} {short(value[0], 20)} (predicted {short(value[1], 20)})')
        else:
            parts.append(f'{short(key, 30)} {short(value, 40)}')
    return '; '.join(parts)


def _size(width: int | None, height: int | None) -> str | None:
    return f'{width}x{height}' if width and height else None


def _count_capped(counter: Counter, key: str) -> None:
    if key in counter or len(counter) < MAX_DISTINCT:
        counter[key] += 1
    else:
        counter['(other)'] += 1


@dataclass
class GeometryStats:
    files: list[FileStatus] = field(default_factory=list)
    by_mode: dict[str, ModeStats] = field(default_factory=dict)
    ranks: Counter = field(default_factory=Counter)
    templates: Counter = field(default_factory=Counter)
    video_lines: int = 0  # videos' lines, counted and left out of the image statistics
    videos: VideoStats = field(default_factory=VideoStats)  # their own statistics (review/video.py)

    def add(self, r: GeoLine) -> None:
        if r.kind == 'video':
            self.video_lines += 1
            self.videos.add(r)
            return
        if isinstance(r.clamped, list):  # an image line's is a name; a list here is read as one, cut
            r.clamped = short(','.join(str(c) for c in r.clamped), 80)
        _count_capped(self.ranks, str(r.rank))
        if r.template:
            _count_capped(self.templates, short(r.template, 80))
        mode = r.mode if r.mode in MODES else '(other)'  # a hostile log cannot make 1M modes
        stats = self.by_mode.get(mode)
        if stats is None:
            stats = self.by_mode[mode] = ModeStats()
        stats.add(r)

    @property
    def main_mode(self) -> str | None:
        """The mode the report describes: what was trained on ('train'), else the rollouts."""
        for mode in MODES:
            if mode in self.by_mode:
                return mode
        return next(iter(self.by_mode), None)




def read_geometry(run_dir: str, progress=None) -> GeometryStats:
    stats = GeometryStats()
    for path in geometry_files(run_dir):
        status = FileStatus(path)
        stats.files.append(status)
        for _, rec in geometry_lines(path, status, progress=progress):
            stats.add(rec)
    return stats


# --- logging.jsonl ---------------------------------------------------------------------------------
class Series:
    """One metric over steps: exact mean and missing count, at most ``MAX_POINTS`` points kept."""

    __slots__ = ('points', 'stride', 'seen', 'sum', 'n', 'missing', 'out_of_range', 'last_step')

    def __init__(self):
        self.points: list[tuple[int, float]] = []
        self.stride, self.seen, self.sum, self.n, self.missing, self.out_of_range = 1, 0, 0.0, 0, 0, 0
        self.last_step: int | None = None  # the step of the last value added

    def add(self, step: int, value: Any) -> None:
        self.last_step = step
        number, bad = as_metric(value)
        if number is None:
            self.out_of_range += bad
            self.missing += not bad
            return
        self.sum += number
        self.n += 1
        if self.seen % self.stride == 0:
            self.points.append((step, number))
            if len(self.points) >= 2 * MAX_POINTS:
                self.points = self.points[::2]
                self.stride *= 2
        self.seen += 1

    @property
    def mean(self) -> float | None:
        return self.sum / self.n if self.n else None


def _is_series_key(key: str) -> bool:
    return key.startswith(('rewards/', 'vision/')) or key in ('reward', 'reward_std', 'loss')


@dataclass
class LoggingStats:
    status: FileStatus
    series: dict[str, Series]
    dropped_keys: int
    last_step: int | None


def read_logging(run_dir: str, progress=None) -> LoggingStats:
    """Per-step series of rewards, `vision/` metrics and loss (``Series`` by key), and the last step.

    The train-summary line (the one with ``train_runtime``) is read too: when the last step is not a
    multiple of ``--logging_steps``, ms-swift's GRPO trainer writes that step's metrics only there
    (its ``log`` merges the pending metrics into the summary). A key the summary repeats for a step
    already logged is not added twice. The final-state line (``log_history``) repeats earlier lines
    and is skipped.
    """
    status = FileStatus(os.path.join(run_dir, LOGGING_FILE))
    series: dict[str, Series] = {}
    dropped: set = set()
    last_step = None
    for _, rec in iter_lines(status.path, status, max_line=MAX_LOG_LINE, progress=progress):
        if not isinstance(rec, dict) or 'log_history' in rec:
            continue  # the final state repeats the per-step lines
        summary = 'train_runtime' in rec
        progress_text = rec.get('global_step/max_steps')
        step = as_int(progress_text.split('/')[0]) if isinstance(progress_text, str) else None
        if step is None:
            continue
        last_step = step if last_step is None else max(last_step, step)
        for key, value in rec.items():
            if not _is_series_key(key):
                continue
            s = series.get(key)
            if s is None:
                if len(series) >= MAX_SERIES:
                    if len(dropped) < 10000:
                        dropped.add(key[:100])
                    continue
                s = series[key] = Series()
            if summary and s.last_step == step:
                continue  # the summary repeats a step already logged
            s.add(step, value)
    return LoggingStats(status, series, len(dropped), last_step)


# --- numbers from histograms ---------------------------------------------------------------------
def percentile(counter, q: float) -> float | None:
    """Exact nearest-rank percentile of a histogram (numpy's 'inverted_cdf' method)."""
    if isinstance(counter, Histogram):
        return counter.percentile(q)
    total = sum(counter.values())
    if not total:
        return None
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for value in sorted(counter):
        seen += counter[value]
        if seen >= rank:
            return value
    return max(counter)


def describe(hist: Histogram, scale: float = 1.0, mean: float | None = None) -> dict | None:
    """count, mean, min, p50, p95, max of a histogram (values multiplied by ``scale``).

    ``mean`` replaces the histogram's mean where the histogram is binned and an exact one is
    known. ``approx_within`` says how far binned percentiles may be off (absent when exact).
    """
    if not hist:
        return None
    if mean is None:
        mean = hist.sum / hist.total * scale

    def scaled(v):
        return v if scale == 1 else v * scale
    out = {'count': hist.total, 'mean': mean, 'min': scaled(hist.min), 'p50': scaled(hist.percentile(50)),
           'p95': scaled(hist.percentile(95)), 'max': scaled(hist.max)}
    if hist.width > 1:
        out['approx_within'] = scaled(hist.width)
    return out

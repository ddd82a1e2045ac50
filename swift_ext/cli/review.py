"""`swift-ext review RUN_DIR`: what image preprocessing did in a training run, from its logs.

Streams, in RUN_DIR (the ``v<N>-<timestamp>`` folder): every ``image_geometry*.jsonl``
(all ranks merged), ``logging.jsonl`` and ``completions.jsonl``. Given an ``--output_dir``
that holds ``v<N>-<time>/`` runs instead, it reviews the newest and says so (``--all``:
each). With ``--log_completions true`` runs, ``report.html`` gets a gallery of rollouts.

Bounds (the contract; see ``bounded``): only regular files are read; lines longer than
1 MiB (geometry), 32 MiB (logging) or 64 MiB (completions) are skipped and reported; every
distribution is a ``Histogram`` of at most 4,096 bins, distinct images are counted in
bounded memory, at most ``MAX_SERIES`` metric keys are kept (``MAX_POINTS`` points each) and
``MAX_STEPS`` steps; a bad line is counted with its line number, never fatal. Outputs are
written without following symlinks (``output``).

Exit codes: 0 report written; 2 RUN_DIR unusable (not a folder, no run logs in it) or the
report could not be written.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import math
import os
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from ..runlog import COMPLETION_COLUMNS, COMPLETIONS_FILE, GEOMETRY_GLOB, LOGGING_FILE, SETTINGS_FILE
from .bounded import (
    DistinctCount,
    FileStatus,
    Histogram,
    as_int,
    as_number,
    iter_lines,
    open_regular,
    refuse_reason,
    short,
)

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 10  # examples kept per kind of problem
MAX_DISTINCT = 5000  # distinct original sizes / error texts counted exactly
MAX_SERIES = 256  # metric keys kept from logging.jsonl
MAX_POINTS = 2000  # points kept per metric (decimated evenly past that; means stay exact)
MAX_STEPS = 20000  # steps kept in per-step tables
MAX_IMAGE_ROWS = 100  # rows of the per-image table (images with a problem first)
MAX_GEO_LINE = 1 << 20
MAX_LOG_LINE = 32 << 20
MAX_COMPLETIONS_LINE = 64 << 20
MAX_ARGS_BYTES = 4 << 20
MODES = ('train', 'rollout')
# Columns of GRPO's completions table that are not rewards.
NON_REWARD_COLUMNS = {'step', 'prompt', 'completion', 'advantages', 'entropy', 'solution',
                      'num_turns', 'geo_image', 'images', *COMPLETION_COLUMNS}
RUN_NAME = re.compile(r'^v(\d+)-(\d{8})-(\d{6})')

Side = Annotated[int, msgspec.Meta(ge=0, le=1 << 31)] | None


class GeoLine(msgspec.Struct):
    """The fields of an image_geometry line that review reads (others are skipped unparsed).

    Bounds on the numbers make a line with a side of 10**30 or a negative token count a bad
    line, not a crash later in the arithmetic.
    """

    step: Annotated[int, msgspec.Meta(ge=-1, le=1 << 53)] | None = None
    rank: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] = 0
    mode: str = 'train'
    image: str | None = None
    template: str | None = None
    original_width: Side = None
    original_height: Side = None
    resized_width: Side = None
    resized_height: Side = None
    num_tokens: Side = None
    tile_cols: Side = None
    num_tiles: Annotated[int, msgspec.Meta(ge=0, le=1 << 31)] = 1
    clamped: str | None = None
    mismatch: dict[str, Any] | None = None
    error: str | None = None


_GEO_DECODER = msgspec.json.Decoder(GeoLine)
GEO_ERRORS = (ValueError, RecursionError, msgspec.DecodeError)


# --- files of a run -------------------------------------------------------------------------------
def geometry_files(run_dir: str) -> list[str]:
    """The run's geometry files, rank 0 first, then by rank number (no glob on the folder name)."""
    try:
        names = [n for n in os.listdir(run_dir) if fnmatch.fnmatchcase(n, GEOMETRY_GLOB)]
    except OSError:
        return []

    def order(name: str):
        m = re.fullmatch(r'image_geometry(?:\.rank(\d+))?\.jsonl', name)
        return (0, int(m.group(1) or 0), name) if m else (1, 0, name)
    return [os.path.join(run_dir, n) for n in sorted(names, key=order)]


def has_logs(folder: str) -> bool:
    return bool(geometry_files(folder)) or any(
        os.path.exists(os.path.join(folder, f)) for f in (LOGGING_FILE, COMPLETIONS_FILE))


def find_runs(folder: str) -> list[str]:
    """``v<N>-<time>`` run folders inside ``folder`` that hold logs, oldest first."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    runs = []
    for name in names:
        m = RUN_NAME.match(name)
        path = os.path.join(folder, name)
        if m and os.path.isdir(path) and has_logs(path):
            runs.append((int(m.group(1)), name, path))
    return [p for _, _, p in sorted(runs)]


# --- geometry aggregation ------------------------------------------------------------------------
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
    shrunk_by_max_pixels: int = 0
    grown_by_min_pixels: int = 0
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
        if r.clamped == 'max_pixels':
            self.shrunk_by_max_pixels += 1
        elif r.clamped == 'min_pixels':
            self.grown_by_min_pixels += 1
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

    def add(self, r: GeoLine) -> None:
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
        for _, rec in iter_lines(path, status, max_line=MAX_GEO_LINE, progress=progress,
                                 decode=_GEO_DECODER.decode, errors=GEO_ERRORS):
            stats.add(rec)
    return stats


# --- logging.jsonl ---------------------------------------------------------------------------------
class Series:
    """One metric over steps: exact mean and missing count, at most ``MAX_POINTS`` points kept."""

    __slots__ = ('points', 'stride', 'seen', 'sum', 'n', 'missing')

    def __init__(self):
        self.points: list[tuple[int, float]] = []
        self.stride, self.seen, self.sum, self.n, self.missing = 1, 0, 0.0, 0, 0

    def add(self, step: int, value: Any) -> None:
        number = as_number(value)
        if number is None:
            self.missing += 1
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


def read_logging(run_dir: str, progress=None) -> dict:
    """Per-step series of rewards, `vision/` metrics and loss (``Series`` by key), and the last step."""
    status = FileStatus(os.path.join(run_dir, LOGGING_FILE))
    series: dict[str, Series] = {}
    dropped: set = set()
    last_step = None
    for _, rec in iter_lines(status.path, status, max_line=MAX_LOG_LINE, progress=progress):
        if not isinstance(rec, dict) or 'log_history' in rec or 'train_runtime' in rec:
            continue  # the end-of-run summary and final state repeat the per-step lines
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
            s.add(step, value)
    return {'status': status, 'series': series, 'dropped_keys': len(dropped), 'last_step': last_step}


# --- completions.jsonl and the reward / token-budget join ------------------------------------------
def _reward_names(table: dict, known: list[str]) -> list[str]:
    if known:
        return known
    return [k for k, v in list(table.items())[:MAX_SERIES] if k not in NON_REWARD_COLUMNS
            and isinstance(v, list) and v and (as_number(v[0]) is not None or v[0] is None)]


def read_completions(run_dir: str, reward_names: list[str], step_tokens: dict[int, float],
                     progress=None, sampler=None) -> dict:
    """Reward means (and missing counts) per column, and rewards grouped by visual tokens.

    The join: each completions row is one sampled completion. When the `geo_log` callback
    added ``geo_visual_tokens`` (the tokens of the row's own images), that value is used.
    Otherwise the row is joined by step: it gets the mean visual tokens per image of the
    geometry records with the row's step, so rows of a step share a value.
    Rewards are accumulated per integer token value (a bounded table), then grouped into
    quartiles of the rows' token values. ``sampler`` (the gallery's) is offered every row.
    """
    status = FileStatus(os.path.join(run_dir, COMPLETIONS_FILE))
    sums: dict[str, list] = {}  # name -> [sum, count, missing]
    by_tokens: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    rows_by_tokens = Histogram()
    joined = {'column': 0, 'step': 0, 'none': 0}
    rows = 0
    previous_steps = None
    for line_no, table in iter_lines(status.path, status, max_line=MAX_COMPLETIONS_LINE, progress=progress):
        steps = table.get('step') if isinstance(table, dict) else None
        if not isinstance(steps, list):
            status.bad(line_no)
            continue
        if steps == previous_steps and steps:
            # ms-swift logs the last step twice (the last train log and the summary log)
            status.duplicate_lines += 1
            continue
        previous_steps = steps
        names = _reward_names(table, reward_names)
        columns = {name: table.get(name) for name in names if len(sums) < MAX_SERIES or name in sums}
        geo_tokens = table.get('geo_visual_tokens')
        geo_tokens = geo_tokens if isinstance(geo_tokens, list) else []
        for i, step_value in enumerate(steps):
            rows += 1
            step = as_int(step_value)
            tokens = as_number(geo_tokens[i]) if i < len(geo_tokens) else None
            how = 'column'
            if tokens is None or tokens < 0:
                tokens, how = (step_tokens.get(step) if step is not None else None), 'step'
            if tokens is None:
                how = 'none'
            joined[how] += 1
            bucket = int(round(tokens)) if tokens is not None and tokens < 1 << 53 else None
            if bucket is not None:
                rows_by_tokens.add(bucket)
            values = {}
            for name, column in columns.items():
                cell = sums.setdefault(name, [0.0, 0, 0])
                value = as_number(column[i]) if isinstance(column, list) and i < len(column) else None
                values[name] = value
                if value is None:
                    cell[2] += 1
                    continue
                cell[0] += value
                cell[1] += 1
                if bucket is not None and len(by_tokens) < MAX_STEPS:
                    acc = by_tokens[bucket - bucket % rows_by_tokens.width][name]
                    acc[0] += value
                    acc[1] += 1
            if sampler is not None:
                sampler.offer(step, line_no, i, values)
    means = {name: s / n for name, (s, n, _) in sums.items() if n}
    missing = {name: m for name, (_, _, m) in sums.items()}
    return {'status': status, 'rows': rows, 'reward_means': means, 'reward_missing': missing,
            'joined_by': joined, 'by_token_quartile': _quartile_table(rows_by_tokens, by_tokens)}


def _quartile_table(weights: Histogram, by_tokens: dict[int, dict[str, list]]) -> list[dict]:
    """Rows grouped into token-count quartiles: token range, rows and mean of each reward."""
    if not weights:
        return []
    edges = [weights.percentile(q) for q in (25, 50, 75)]
    groups: list[dict[str, Any]] = [{'quartile': f'Q{i + 1}', 'min_tokens': None, 'max_tokens': None, 'rows': 0,
                                     'sums': defaultdict(lambda: [0.0, 0])} for i in range(4)]
    merged: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    for t, cells in by_tokens.items():  # keys made before a coarsening land in their final bin
        for name, (s, n) in cells.items():
            acc = merged[t - t % weights.width][name]
            acc[0] += s
            acc[1] += n
    for t, n in weights.items():
        g = groups[sum(t > e for e in edges)]
        g['min_tokens'] = t if g['min_tokens'] is None else g['min_tokens']
        g['max_tokens'] = t
        g['rows'] += n
        for name, (s, k) in merged.get(t, {}).items():
            g['sums'][name][0] += s
            g['sums'][name][1] += k
    out = []
    for g in groups:
        sums = g.pop('sums')
        if g['rows']:
            g['reward_means'] = {name: s / n for name, (s, n) in sorted(sums.items()) if n}
            out.append(g)
    return out


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


# --- run information -------------------------------------------------------------------------------
def read_run_info(run_dir: str) -> dict:
    """Model, template, settings fingerprints and date of a run, for the report header."""
    info: dict[str, Any] = {'run': os.path.basename(os.path.abspath(run_dir))}
    m = RUN_NAME.match(info['run'])
    if m:
        d, t = m.group(2), m.group(3)
        info['date'] = f'{d[:4]}-{d[4:6]}-{d[6:]} {t[:2]}:{t[2:4]}:{t[4:]}'
    args = _read_small_json(os.path.join(run_dir, 'args.json'))
    if isinstance(args, dict):
        for key in ('model', 'model_type', 'template', 'max_pixels', 'rlhf_type', 'num_generations'):
            if isinstance(args.get(key), (str, int, float)) and not isinstance(args.get(key), bool):
                info[key] = short(args[key], 200) if isinstance(args[key], str) else args[key]
    status = FileStatus(os.path.join(run_dir, SETTINGS_FILE))
    fingerprints: dict[str, dict] = {}
    for _, rec in iter_lines(status.path, status, max_line=MAX_GEO_LINE):
        if not isinstance(rec, dict) or not isinstance(rec.get('fingerprint'), str):
            continue
        fp = short(rec['fingerprint'], 40)
        if fp not in fingerprints and len(fingerprints) < 20:
            settings = rec.get('settings') if isinstance(rec.get('settings'), dict) else {}
            fingerprints[fp] = {'role': short(rec.get('role') or '', 40), 'settings': settings}
    info['fingerprints'] = list(fingerprints)
    first = next(iter(fingerprints.values()), None)
    if first and first['settings']:
        info['settings'] = first['settings']
        if 'template' not in info and isinstance(first['settings'].get('template'), str):
            info['template'] = short(first['settings']['template'], 80)
    return info


def _read_small_json(path: str) -> Any:
    if refuse_reason(path):
        return None
    try:
        with open_regular(path) as f:
            data = f.read(MAX_ARGS_BYTES + 1)
        return json.loads(data) if len(data) <= MAX_ARGS_BYTES else None
    except (OSError, ValueError, RecursionError):
        return None


# --- the summary ------------------------------------------------------------------------------------
def summarize(run_dir: str, progress=None, *, gallery: int = 0, coords: str | None = None,
              gallery_seed: int = 0) -> dict:
    """Everything review reports, as plain data (the --json output)."""
    geo = read_geometry(run_dir, progress)
    log = read_logging(run_dir, progress)
    series: dict[str, Series] = log['series']
    reward_names = sorted(k[len('rewards/'):-len('/mean')] for k in series
                          if k.startswith('rewards/') and k.endswith('/mean'))
    main = geo.by_mode.get(geo.main_mode) if geo.main_mode else None
    # Step -> mean visual tokens per image, for the step join: from a step's rollout
    # encodes where it has any (those produced the completions), else its train encodes.
    step_tokens: dict[int, float] = {}
    for mode in MODES:
        if mode in geo.by_mode:
            step_tokens.update({s: t / n for s, (n, t, _) in geo.by_mode[mode].per_step.items()
                                if s is not None and n})
    sampler = None
    if gallery > 0:
        from .gallery import RowSampler
        sampler = RowSampler(gallery, seed=gallery_seed)
    comp = read_completions(run_dir, reward_names, step_tokens, progress, sampler)
    files = geo.files + [log['status'], comp['status']]
    problems = [p for f in files for p in f.problems()]
    if not geo.files:
        problems.insert(0, f'no {GEOMETRY_GLOB} in {run_dir} (was --callbacks geo_log used?)')
    if log['dropped_keys']:
        problems.append(f'{LOGGING_FILE}: {log["dropped_keys"]} metric key(s) beyond the first {MAX_SERIES} ignored')
    for mode, stats in geo.by_mode.items():
        if stats.steps_dropped:
            problems.append(f'{mode} records: steps beyond the first {MAX_STEPS:,} not tabled per step '
                            f'({stats.steps_dropped:,} records)')
    info = read_run_info(run_dir)
    logged = {name: series[f'rewards/{name}/mean'] for name in reward_names}
    out: dict[str, Any] = {
        'run_dir': os.path.abspath(run_dir),
        'run': info,
        'files': [f.to_dict() for f in files],
        'problems': problems,
        'records_by_mode': {m: s.images + s.failures for m, s in geo.by_mode.items()},
        'records_by_rank': dict(sorted(geo.ranks.items(), key=lambda kv: (len(kv[0]), kv[0]))),
        'templates': dict(geo.templates.most_common(10)),
        'mode': geo.main_mode,
        'steps': log['last_step'],
        'reward_means_logged': {name: s.mean for name, s in logged.items()},
        'reward_missing_logged': {name: s.missing for name, s in logged.items()},
        'reward_means_completions': comp['reward_means'],
        'reward_missing_completions': comp['reward_missing'],
        'completion_rows': comp['rows'],
        'completions_joined_by': comp['joined_by'],
        'reward_by_token_quartile': comp['by_token_quartile'],
        'series': {k: s.points for k, s in series.items()},
        'series_means': {k: s.mean for k, s in series.items()},
    }
    if main is not None:
        out.update(_mode_summary(main))
    if sampler is not None and comp['rows']:
        from .gallery import review_gallery
        out['_gallery'] = review_gallery(run_dir, sampler, info, geometry_files(run_dir), coords=coords)
    return out


def _mode_summary(m: ModeStats) -> dict:
    images = m.images or 1  # for the exact means; describe() gives None when there is no image
    out = {
        'images': m.images,
        'encodes': m.images,
        'unique_images': m.unique.count(),
        'unique_images_exact': m.unique.exact,
        'failures': m.failures,
        'failure_messages': dict(m.errors.most_common(MAX_EXAMPLES)),
        'original_width': describe(m.original_width),
        'original_height': describe(m.original_height),
        'original_megapixels': describe(m.original_mp, 0.01, mean=m.original_pixels / 1e6 / images),
        'resized_width': describe(m.resized_width),
        'resized_height': describe(m.resized_height),
        'resized_megapixels': describe(m.resized_mp, 0.01, mean=m.resized_pixels / 1e6 / images),
        'visual_tokens_per_image': describe(m.tokens),
        'most_common_original_sizes': dict(m.original_sizes.most_common(5)),
        'shrunk_by_max_pixels': m.shrunk_by_max_pixels,
        'grown_by_min_pixels': m.grown_by_min_pixels,
        'mismatches': m.mismatches,
        'mismatch_fields': dict(m.mismatch_fields.most_common(20)),
        'mismatch_examples': m.mismatch_examples,
        'per_step': {str(s): {'images': n, 'tokens': t, 'failures': f}
                     for s, (n, t, f) in sorted(m.per_step.items(), key=lambda x: (x[0] is None, x[0] or 0))},
        'per_image': sorted(({k: v for k, v in row.items() if not k.startswith('_')} for row in m.image_rows.values()),
                            key=lambda r: (r['error'] is None, r['mismatch'] is None, r['clamped'] is None)),
        '_histograms': {'visual_tokens_per_image': m.tokens, 'original_megapixels': m.original_mp,
                        'resized_megapixels': m.resized_mp, 'tiles': m.tiles},
    }
    if m.tiles:  # tiling families only: a Qwen run has no tiles to show
        out['tile_histogram'] = {str(k): v for k, v in m.tiles.items()}
    return out


# --- command line ------------------------------------------------------------------------------------
def build_parser(prog: str = 'swift-ext review') -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split('\n')[0])
    p.add_argument('run_dir', metavar='RUN_DIR',
                   help='the run folder (v<N>-<time>/), or the --output_dir holding such folders')
    p.add_argument('--out', help='report folder (default RUN_DIR/review); with --all, one subfolder per run')
    p.add_argument('--all', action='store_true', help='review every v<N>-<time>/ run in RUN_DIR')
    p.add_argument('--json', action='store_true', help='print the summary as JSON')
    p.add_argument('--no-plots', action='store_true', help='write no PNGs (report.html has tables only)')
    p.add_argument('--gallery', type=int, default=12, metavar='N',
                   help='rollouts shown with their boxes (needs --log_completions true runs; 0: none)')
    p.add_argument('--gallery-max-mb', type=float, default=4.0, metavar='MB',
                   help='bound on the embedded gallery images (default 4 MB)')
    p.add_argument('--coords', choices=('abs', 'norm1000', 'norm1'),
                   help="the model's box convention (default: the template's, as the rewards read it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not os.path.isdir(args.run_dir):
        print(f'swift-ext review: RUN_DIR must be a folder, got {args.run_dir!r}.', file=sys.stderr)
        return 2
    if args.gallery < 0 or not args.gallery_max_mb > 0:
        print('swift-ext review: --gallery must be >= 0 and --gallery-max-mb > 0, '
              f'got {args.gallery} and {args.gallery_max_mb}.', file=sys.stderr)
        return 2
    runs = _runs_to_review(args)
    if runs is None:
        return 2
    rc = 0
    for run_dir, out_dir in runs:
        rc = max(rc, _review_one(args, run_dir, out_dir))
    return rc


def _runs_to_review(args) -> list[tuple[str, str | None]] | None:
    """``[(run folder, --out or None)]``: RUN_DIR itself, or the runs it holds."""
    if has_logs(args.run_dir) and not args.all:
        return [(args.run_dir, args.out)]
    runs = find_runs(args.run_dir)
    if not runs:
        if has_logs(args.run_dir):
            return [(args.run_dir, args.out)]
        print(f'swift-ext review: {args.run_dir} holds no run logs: expected {LOGGING_FILE}, {COMPLETIONS_FILE} '
              f'or {GEOMETRY_GLOB} in it, or v<N>-<time>/ run folders that hold them.', file=sys.stderr)
        return None
    if args.all:
        print(f'Reviewing {len(runs)} run(s) in {args.run_dir}.', file=sys.stderr)
        return [(r, os.path.join(args.out, os.path.basename(r)) if args.out else None) for r in runs]
    names = ', '.join(os.path.basename(r) for r in runs)
    print(f'{args.run_dir} holds {len(runs)} run(s) ({names}); reviewing the newest, '
          f'{os.path.basename(runs[-1])}. Use --all to review each.', file=sys.stderr)
    return [(runs[-1], args.out)]


def _review_one(args, run_dir: str, out: str | None) -> int:
    from .output import prepare_out_dir
    from .review_report import format_text, to_json, write_report
    paths = geometry_files(run_dir) + [os.path.join(run_dir, f) for f in (LOGGING_FILE, COMPLETIONS_FILE)]
    total = sum(os.path.getsize(p) for p in paths if refuse_reason(p) is None)
    from tqdm import tqdm
    with tqdm(total=total, unit='B', unit_scale=True, desc='review', file=sys.stderr,
              disable=None, leave=False) as progress:
        summary = summarize(run_dir, progress, gallery=args.gallery, coords=args.coords)
    try:
        out_dir = prepare_out_dir(out or os.path.join(run_dir, 'review'), named_by_user=out is not None)
        report = write_report(summary, out_dir, plots=not args.no_plots,
                              gallery_max_bytes=int(args.gallery_max_mb * (1 << 20)))
    except OSError as exc:
        print(f'swift-ext review: {exc}', file=sys.stderr)
        return 2
    if args.json:
        print(to_json(summary))
    else:
        print(format_text(summary))
        print(f'Report: {report}')
    return 0

"""`swift-ext review RUN_DIR`: what image preprocessing did in a training run, from its logs.

Streams, in RUN_DIR (the ``v<N>-<timestamp>`` folder): every ``image_geometry*.jsonl``
(all ranks merged), ``logging.jsonl`` and ``completions.jsonl``. Memory stays flat in
the number of lines: distributions are exact histograms over integer values
(``collections.Counter``; token counts, sides and 0.01-megapixel bins take few distinct
values), per-step tables are bounded by the number of steps, and example lists are capped.
A missing file or a bad / truncated line is reported, never fatal.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

import msgspec

from ..runlog import COMPLETION_COLUMNS, COMPLETIONS_FILE, GEOMETRY_GLOB, LOGGING_FILE
from .review_report import format_text, to_json, write_report

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 10  # examples kept per kind of problem
MAX_DISTINCT = 5000  # distinct original sizes / error texts counted exactly
# Columns of GRPO's completions table that are not rewards.
NON_REWARD_COLUMNS = {'step', 'prompt', 'completion', 'advantages', 'entropy', 'solution',
                      'num_turns', *COMPLETION_COLUMNS}


class GeoLine(msgspec.Struct):
    """The fields of an image_geometry line that review reads (others are skipped unparsed)."""

    step: Optional[int] = None
    rank: int = 0
    mode: str = 'train'
    image: Optional[str] = None
    template: Optional[str] = None
    original_width: Optional[int] = None
    original_height: Optional[int] = None
    resized_width: Optional[int] = None
    resized_height: Optional[int] = None
    num_tokens: Optional[int] = None
    tile_cols: Optional[int] = None
    num_tiles: int = 1
    clamped: Optional[str] = None
    mismatch: Optional[Dict[str, Any]] = None
    error: Optional[str] = None


_GEO_DECODER = msgspec.json.Decoder(GeoLine)


# --- reading ----------------------------------------------------------------------------------
@dataclass
class FileStatus:
    """What reading one file found."""

    path: str
    exists: bool = True
    lines: int = 0
    bad_lines: int = 0
    truncated_last_line: bool = False
    duplicate_lines: int = 0

    def problems(self) -> List[str]:
        name = os.path.basename(self.path)
        out = []
        if not self.exists:
            out.append(f'{name}: missing')
        if self.truncated_last_line:
            out.append(f'{name}: last line is truncated (ignored)')
        if self.bad_lines:
            out.append(f'{name}: {self.bad_lines} unreadable line(s) skipped')
        return out


def iter_lines(path: str, status: FileStatus, progress=None, decode=json.loads) -> Iterator[Any]:
    """Decoded lines of a JSON-lines file; a missing file, a bad or a cut-off line is recorded.

    A last line without a newline that does not decode is a write cut short: it is
    counted as truncated, not bad.
    """
    if not os.path.exists(path):
        status.exists = False
        return
    pending = 0
    with open(path, 'rb') as f:
        for line in f:
            pending += len(line)
            if progress is not None and pending > 1 << 20:
                progress.update(pending)
                pending = 0
            if not line.strip():
                continue
            status.lines += 1
            try:
                yield decode(line)
            except (ValueError, msgspec.DecodeError):
                if not line.endswith(b'\n'):
                    status.truncated_last_line = True
                else:
                    status.bad_lines += 1
    if progress is not None:
        progress.update(pending)


# --- geometry aggregation ------------------------------------------------------------------------
@dataclass
class ModeStats:
    """Aggregates over the image records of one encode mode ('train' or 'rollout')."""

    images: int = 0
    failures: int = 0
    original_width: Counter = field(default_factory=Counter)
    original_height: Counter = field(default_factory=Counter)
    resized_width: Counter = field(default_factory=Counter)
    resized_height: Counter = field(default_factory=Counter)
    original_mp: Counter = field(default_factory=Counter)  # 0.01-megapixel bins
    resized_mp: Counter = field(default_factory=Counter)
    tokens: Counter = field(default_factory=Counter)
    tiles: Counter = field(default_factory=Counter)  # tiled (InternVL) images only
    original_sizes: Counter = field(default_factory=Counter)  # 'WxH', capped
    original_pixels: int = 0  # exact sums, for the megapixel means
    resized_pixels: int = 0
    shrunk_by_max_pixels: int = 0
    grown_by_min_pixels: int = 0
    mismatches: int = 0
    mismatch_fields: Counter = field(default_factory=Counter)
    mismatch_examples: list = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # error text, capped
    # step -> [images, tokens, failures]
    per_step: Dict[Optional[int], list] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))

    def add(self, r: GeoLine) -> None:
        step = self.per_step[r.step]
        if r.error:
            self.failures += 1
            step[2] += 1
            _count_capped(self.errors, r.error[:200])
            return
        if r.num_tokens is None or not r.original_width or not r.resized_width:
            return
        self.images += 1
        step[0] += 1
        step[1] += r.num_tokens
        self.tokens[r.num_tokens] += 1
        self.original_width[r.original_width] += 1
        self.original_height[r.original_height] += 1
        self.resized_width[r.resized_width] += 1
        self.resized_height[r.resized_height] += 1
        original = r.original_width * r.original_height
        resized = r.resized_width * r.resized_height
        self.original_pixels += original
        self.resized_pixels += resized
        self.original_mp[round(original / 1e4)] += 1
        self.resized_mp[round(resized / 1e4)] += 1
        _count_capped(self.original_sizes, f'{r.original_width}x{r.original_height}')
        if r.tile_cols is not None:
            self.tiles[r.num_tiles] += 1
        if r.clamped == 'max_pixels':
            self.shrunk_by_max_pixels += 1
        elif r.clamped == 'min_pixels':
            self.grown_by_min_pixels += 1
        if r.mismatch:
            self.mismatches += 1
            self.mismatch_fields.update(r.mismatch.keys())
            if len(self.mismatch_examples) < MAX_EXAMPLES:
                self.mismatch_examples.append({'image': r.image, 'step': r.step,
                                               'actual_vs_predicted': r.mismatch})


def _count_capped(counter: Counter, key: str) -> None:
    if key in counter or len(counter) < MAX_DISTINCT:
        counter[key] += 1
    else:
        counter['(other)'] += 1


@dataclass
class GeometryStats:
    files: List[FileStatus] = field(default_factory=list)
    by_mode: Dict[str, ModeStats] = field(default_factory=dict)
    ranks: Counter = field(default_factory=Counter)
    templates: Counter = field(default_factory=Counter)

    def add(self, r: GeoLine) -> None:
        self.ranks[r.rank] += 1
        if r.template:
            self.templates[r.template] += 1
        stats = self.by_mode.get(r.mode)
        if stats is None:
            stats = self.by_mode[r.mode] = ModeStats()
        stats.add(r)

    @property
    def main_mode(self) -> Optional[str]:
        """The mode the report describes: what was trained on ('train'), else the rollouts."""
        for mode in ('train', 'rollout'):
            if mode in self.by_mode:
                return mode
        return next(iter(self.by_mode), None)


def read_geometry(run_dir: str, progress=None) -> GeometryStats:
    stats = GeometryStats()
    for path in sorted(glob.glob(os.path.join(run_dir, GEOMETRY_GLOB))):
        status = FileStatus(path)
        stats.files.append(status)
        for rec in iter_lines(path, status, progress, _GEO_DECODER.decode):
            stats.add(rec)
    return stats


# --- logging.jsonl ---------------------------------------------------------------------------------
def _is_series_key(key: str) -> bool:
    return key.startswith(('rewards/', 'vision/')) or key in ('reward', 'reward_std', 'loss')


def read_logging(run_dir: str, progress=None) -> dict:
    """Per-step series of rewards, `vision/` metrics and loss: ``{key: [(step, value), ...]}``."""
    status = FileStatus(os.path.join(run_dir, LOGGING_FILE))
    series: Dict[str, list] = defaultdict(list)
    for rec in iter_lines(status.path, status, progress):
        if not isinstance(rec, dict) or 'log_history' in rec or 'train_runtime' in rec:
            continue  # the end-of-run summary and final state repeat the per-step lines
        try:
            step = int(str(rec.get('global_step/max_steps', '')).split('/')[0])
        except ValueError:
            continue
        for key, value in rec.items():
            if _is_series_key(key) and isinstance(value, (int, float)) and math.isfinite(value):
                series[key].append((step, float(value)))
    return {'status': status, 'series': dict(series)}


# --- completions.jsonl and the reward / token-budget join ------------------------------------------
def read_completions(run_dir: str, reward_names: List[str], step_tokens: Dict[int, float],
                     progress=None) -> dict:
    """Reward means per column, and rewards grouped by the visual tokens behind each completion.

    The join: each completions row is one sampled completion. When the `geo_log` callback
    added ``geo_visual_tokens`` (the tokens of the row's own images), that value is used.
    Otherwise the row is joined by step: it gets the mean visual tokens per image of the
    geometry records with the row's step (the rollout that produced it is encoded in the
    step it is logged at when one generation serves one step), so rows of a step share a value.
    Rewards are accumulated per integer token value (a bounded table), then grouped into
    quartiles of the rows' token values.
    """
    status = FileStatus(os.path.join(run_dir, COMPLETIONS_FILE))
    sums: Dict[str, list] = defaultdict(lambda: [0.0, 0])
    by_tokens: Dict[int, Dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    rows_by_tokens: Counter = Counter()
    joined = {'column': 0, 'step': 0, 'none': 0}
    rows = 0
    previous_steps = None
    for table in iter_lines(status.path, status, progress):
        if not isinstance(table, dict) or not isinstance(table.get('step'), list):
            status.bad_lines += 1
            continue
        if table['step'] == previous_steps:
            # ms-swift logs the last step twice (the last train log and the summary log)
            status.duplicate_lines += 1
            continue
        previous_steps = table['step']
        names = reward_names or [k for k, v in table.items() if k not in NON_REWARD_COLUMNS
                                 and isinstance(v, list) and v and _is_number(v[0])]
        geo_tokens = table.get('geo_visual_tokens') or []
        for i, step in enumerate(table['step']):
            rows += 1
            tokens = geo_tokens[i] if i < len(geo_tokens) else None
            how = 'column'
            if tokens is None:
                tokens, how = _step_tokens(step, step_tokens), 'step'
            if tokens is None:
                how = 'none'
            joined[how] += 1
            if tokens is not None:
                rows_by_tokens[int(round(tokens))] += 1
            for name in names:
                column = table.get(name)
                value = column[i] if isinstance(column, list) and i < len(column) else None
                if not _is_number(value):
                    continue
                sums[name][0] += value
                sums[name][1] += 1
                if tokens is not None:
                    cell = by_tokens[int(round(tokens))][name]
                    cell[0] += value
                    cell[1] += 1
    means = {name: s / n for name, (s, n) in sums.items() if n}
    return {'status': status, 'rows': rows, 'reward_means': means, 'joined_by': joined,
            'by_token_quartile': _quartile_table(rows_by_tokens, by_tokens)}


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _step_tokens(step: Any, step_tokens: Dict[int, float]) -> Optional[float]:
    try:
        return step_tokens.get(int(step))
    except (TypeError, ValueError):
        return None


def _quartile_table(weights: Counter, by_tokens: Dict[int, Dict[str, list]]) -> List[dict]:
    """Rows grouped into token-count quartiles: token range, rows and mean of each reward."""
    if not weights:
        return []
    edges = [percentile(weights, q) for q in (25, 50, 75)]
    groups: List[Dict[str, Any]] = [{'quartile': f'Q{i + 1}', 'min_tokens': None,
                                     'max_tokens': None, 'rows': 0, 'sums': defaultdict(lambda: [0.0, 0])}
                                    for i in range(4)]
    for t in sorted(weights):
        g = groups[sum(t > e for e in edges)]
        g['min_tokens'] = t if g['min_tokens'] is None else g['min_tokens']
        g['max_tokens'] = t
        g['rows'] += weights[t]
        for name, (s, n) in by_tokens[t].items():
            g['sums'][name][0] += s
            g['sums'][name][1] += n
    out = []
    for g in groups:
        if g['rows']:
            sums = g.pop('sums')
            g['reward_means'] = {name: s / n for name, (s, n) in sorted(sums.items()) if n}
            out.append(g)
    return out


# --- numbers from histograms ---------------------------------------------------------------------
def percentile(counter: Counter, q: float) -> Optional[float]:
    """Exact nearest-rank percentile of a histogram (numpy's 'inverted_cdf' method)."""
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


def describe(counter: Counter, scale: float = 1.0, mean: Optional[float] = None) -> Optional[dict]:
    """count, mean, min, p50, p95, max of a histogram (values multiplied by ``scale``).

    ``mean`` replaces the histogram's mean where the histogram is binned and an exact one is known.
    """
    total = sum(counter.values())
    if not total:
        return None
    if mean is None:
        mean = sum(v * n for v, n in counter.items()) / total * scale
    def scaled(v):
        return v if scale == 1 else v * scale
    return {'count': total, 'mean': mean, 'min': scaled(min(counter)),
            'p50': scaled(percentile(counter, 50)), 'p95': scaled(percentile(counter, 95)),
            'max': scaled(max(counter))}


def summarize(run_dir: str, progress=None) -> dict:
    """Everything review reports, as plain data (the --json output)."""
    geo = read_geometry(run_dir, progress)
    log = read_logging(run_dir, progress)
    reward_names = sorted(k[len('rewards/'):-len('/mean')] for k in log['series']
                          if k.startswith('rewards/') and k.endswith('/mean'))
    main = geo.by_mode.get(geo.main_mode) if geo.main_mode else None
    # Step -> mean visual tokens per image, for the step join: from a step's rollout
    # encodes where it has any (those produced the completions), else its train encodes.
    step_tokens: Dict[int, float] = {}
    for mode in ('train', 'rollout'):
        if mode in geo.by_mode:
            step_tokens.update({s: t / n for s, (n, t, _) in geo.by_mode[mode].per_step.items()
                                if s is not None and n})
    comp = read_completions(run_dir, reward_names, step_tokens, progress)
    files = geo.files + [log['status'], comp['status']]
    problems = [p for f in files for p in f.problems()]
    if not geo.files:
        problems.insert(0, f'no {GEOMETRY_GLOB} in {run_dir} (was --callbacks geo_log used?)')
    out: Dict[str, Any] = {
        'run_dir': os.path.abspath(run_dir),
        'files': [{'file': os.path.basename(f.path), 'exists': f.exists, 'lines': f.lines,
                   'bad_lines': f.bad_lines, 'truncated_last_line': f.truncated_last_line,
                   'duplicate_lines': f.duplicate_lines} for f in files],
        'problems': problems,
        'records_by_mode': {m: s.images + s.failures for m, s in geo.by_mode.items()},
        'records_by_rank': {str(k): v for k, v in sorted(geo.ranks.items())},
        'templates': dict(geo.templates),
        'mode': geo.main_mode,
        'reward_means_logged': {name: _mean_of(log['series'].get(f'rewards/{name}/mean'))
                                for name in reward_names},
        'reward_means_completions': comp['reward_means'],
        'completion_rows': comp['rows'],
        'completions_joined_by': comp['joined_by'],
        'reward_by_token_quartile': comp['by_token_quartile'],
        'series': log['series'],
    }
    if main is not None:
        out.update(_mode_summary(main))
    return out


def _mode_summary(m: ModeStats) -> dict:
    images = m.images or 1  # for the exact means; describe() gives None when there is no image
    return {
        'images': m.images,
        'failures': m.failures,
        'failure_messages': dict(m.errors.most_common(MAX_EXAMPLES)),
        'original_width': describe(m.original_width),
        'original_height': describe(m.original_height),
        'original_megapixels': describe(m.original_mp, 0.01, mean=m.original_pixels / 1e6 / images),
        'resized_width': describe(m.resized_width),
        'resized_height': describe(m.resized_height),
        'resized_megapixels': describe(m.resized_mp, 0.01, mean=m.resized_pixels / 1e6 / images),
        'visual_tokens_per_image': describe(m.tokens),
        'tile_histogram': {str(k): v for k, v in sorted(m.tiles.items())},
        'most_common_original_sizes': dict(m.original_sizes.most_common(5)),
        'shrunk_by_max_pixels': m.shrunk_by_max_pixels,
        'grown_by_min_pixels': m.grown_by_min_pixels,
        'mismatches': m.mismatches,
        'mismatch_fields': dict(m.mismatch_fields),
        'mismatch_examples': m.mismatch_examples,
        'per_step': {str(s): {'images': n, 'tokens': t, 'failures': f}
                     for s, (n, t, f) in sorted(m.per_step.items(), key=lambda x: (x[0] is None, x[0] or 0))},
        '_histograms': {'visual_tokens_per_image': m.tokens, 'original_megapixels': m.original_mp,
                        'resized_megapixels': m.resized_mp, 'tiles': m.tiles},
    }


def _mean_of(points: Optional[list]) -> Optional[float]:
    return sum(v for _, v in points) / len(points) if points else None


# --- command line ------------------------------------------------------------------------------------
def build_parser(prog: str = 'swift-ext review') -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split('\n')[0])
    p.add_argument('run_dir', metavar='RUN_DIR', help='the run folder that holds logging.jsonl')
    p.add_argument('--out', help='report folder (default RUN_DIR/review)')
    p.add_argument('--json', action='store_true', help='print the summary as JSON')
    p.add_argument('--no-plots', action='store_true', help='write no PNGs (report.html has tables only)')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not os.path.isdir(args.run_dir):
        print(f'swift-ext review: RUN_DIR must be a directory, got {args.run_dir!r}.', file=sys.stderr)
        return 2
    paths = glob.glob(os.path.join(args.run_dir, GEOMETRY_GLOB)) + [
        os.path.join(args.run_dir, f) for f in (LOGGING_FILE, COMPLETIONS_FILE)]
    total = sum(os.path.getsize(p) for p in paths if os.path.exists(p))
    from tqdm import tqdm
    with tqdm(total=total, unit='B', unit_scale=True, desc='review', file=sys.stderr,
              disable=None, leave=False) as progress:
        summary = summarize(args.run_dir, progress)
    out_dir = args.out or os.path.join(args.run_dir, 'review')
    report = write_report(summary, out_dir, plots=not args.no_plots)
    if args.json:
        print(to_json(summary))
    else:
        print(format_text(summary))
        print(f'Report: {report}')
    return 0

"""`swift-ext plan DATASET --template NAME`: what a template will do to a dataset's images.

Reads only image headers (``images.read_image_header``) in worker processes and predicts each
image's geometry with the template's settings (``settings.settings_for(...).predict``) — the
same arithmetic the `_geo` templates check themselves against — so a dataset can be sized
before training. Images are found as ms-swift finds them (``swift_ext.images``).

Contract: a row that cannot be planned (not JSON, a malformed ``chat_template_kwargs``, an
image that is missing, unreadable or of a form ms-swift refuses) is reported with its row
number and the plan goes on; a worker process that dies (out of memory, killed) ends the plan
with exit status 3 within seconds, naming the rows it was reading.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import heapq
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from ..families import family_named, family_of
from ..geometry import GeometryError
from ..images import ImageSource, classify, read_image_header
from ..scoring import parse_solution
from ..settings import PreprocessSettings, settings_for, with_budget

# Pixel budgets compared by default: 256, 512, 1024, 1280 and 16384 tokens of 28x28 pixels.
DEFAULT_SWEEP = (200704, 401408, 802816, 1003520, 12845056)
# Tile limits compared by default for tiling families (a pixel budget barely moves them).
DEFAULT_TILE_SWEEP = (1, 2, 4, 6, 12)
CHUNK_ROWS = 512
CHUNK_CHARS = 8 << 20  # a chunk also ends at this many characters of rows (base64 datasets)
MAX_LINE_CHARS = 256 << 20  # a longer line is skipped and reported, never held in memory
MAX_FAILURES_SHOWN = 50
MAX_KEPT = 1000  # failures / warnings kept per kind; the rest are counted
TOP_ROWS = 10
MAX_UNIQUE = 2_000_000  # distinct images tracked (about 100 bytes each); beyond, counts are lower bounds
HEADER_CACHE = 65536  # file headers remembered per worker (datasets often repeat images)
SOLUTION_SLACK = 1.0

EXIT_OK, EXIT_USAGE, EXIT_INCOMPLETE = 0, 2, 3

HELP_EPILOG = """\
Pixel limits, as ms-swift applies them:
  --max_pixels N   ms-swift's own `--max_pixels` flag: every image above N pixels is first
                   shrunk to about N pixels (keeping its aspect ratio), for every model,
                   before the model's own resize.
  MAX_PIXELS=N     (environment) Qwen only: qwen-vl-utils' smart_resize limit, turned
                   into N // 28**2 tokens (N // 32**2 for Qwen3-VL), as ms-swift does.
  MIN_PIXELS=N     (environment) Qwen only, the lower limit, likewise. `--min_pixels N`
                   here means the same as MIN_PIXELS=N and wins over the variable.
  IMAGE_MAX_TOKEN_NUM / IMAGE_MIN_TOKEN_NUM (environment) Qwen: the limits in tokens;
                   they win over MAX_PIXELS / MIN_PIXELS, as in ms-swift.
  MAX_NUM=N        (environment) InternVL (ms-swift tiling): at most N tiles; `--max_num`
                   sets it too (and the processor's max_patches for internvl_hf).
  INPUT_SIZE=N     (environment) InternVL (ms-swift tiling): tile side in pixels.
A row's chat_template_kwargs {"max_pixels": N, "min_pixels": M} applies to that row only.
The sweep recomputes the plan with each value as MAX_PIXELS (Qwen) or as --max_pixels;
tiling families sweep their tile limit instead (--sweep_max_num).
Row numbers are 1-based line numbers (jsonl) or list positions (json).
Relative image paths resolve as ms-swift resolves them: against the working directory,
then ROOT_IMAGE_DIR; run plan from where training runs. A path that exists only next to
the dataset file, or names another file there, is reported.
Exit status: 0 plan printed (failing rows are listed, not an error), 2 bad arguments or
unreadable dataset, 3 plan incomplete (a worker process died)."""


class PlanAborted(RuntimeError):
    """The plan could not finish (a worker died); says which rows were being read."""


# --- settings ---------------------------------------------------------------------------------
def plan_settings(template: str, *, max_pixels: int | None = None,
                  min_pixels: int | None = None, max_num: int | None = None,
                  env: dict[str, str] | None = None) -> PreprocessSettings:
    """The settings a `_geo` template would run with, under these flags and environment."""
    return settings_for(template, env=env, swift_max_pixels=max_pixels, min_pixels=min_pixels, max_num=max_num)


def sweep_settings(settings: PreprocessSettings, value: int) -> PreprocessSettings:
    """``settings`` with a pixel budget, applied as the family's own knob (MAX_PIXELS for Qwen)."""
    return with_budget(settings, value)


def tile_knob(settings: PreprocessSettings) -> str | None:
    """The settings field that caps a tiling family's tiles (``max_num``, ...), or None."""
    return family_named(settings.family).tile_knob


def tile_settings(settings: PreprocessSettings, value: int) -> PreprocessSettings:
    return dataclasses.replace(settings, **{tile_knob(settings): value})


# --- reading the dataset ---------------------------------------------------------------------------
def iter_rows(path: str) -> Iterator[tuple[int, Any]]:
    """``(row_number, row)`` for a .jsonl (one object a line), .json (a list) or .parquet dataset.

    jsonl lines are handed over as text (parsed in the worker); a line over ``MAX_LINE_CHARS``
    gives ``(row_number, ValueError(...))`` without being held in memory. A .json dataset is
    read whole.
    """
    if path.endswith('.parquet'):
        yield from _parquet_rows(path)
        return
    if path.endswith('.json'):
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        if not isinstance(data, list):
            raise ValueError(f'{path}: a .json dataset must hold a list of rows, '
                             f'got {type(data).__name__}.')
        yield from enumerate(data, 1)
        return
    with open(path, encoding='utf-8', errors='replace') as f:
        number = 0
        while True:
            line = f.readline(MAX_LINE_CHARS)
            if not line:
                return
            number += 1
            if len(line) >= MAX_LINE_CHARS and not line.endswith('\n'):
                skipped = len(line)
                while line and not line.endswith('\n'):  # skip the rest, a bounded piece at a time
                    line = f.readline(MAX_LINE_CHARS)
                    skipped += len(line)
                yield number, ValueError(f'line is longer than {MAX_LINE_CHARS} characters ({skipped}); skipped')
            elif line.strip():
                yield number, line


def _parquet_rows(path: str) -> Iterator[tuple[int, Any]]:
    """Rows of a parquet dataset (as ms-swift loads it), a batch at a time; images may hold raw bytes."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ValueError(f'{path}: reading parquet needs pyarrow ({exc})') from None
    try:
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except Exception as exc:  # pyarrow's own error types: the file is not a readable parquet
        raise ValueError(f'not a readable parquet file ({_cut(str(exc), 300)})') from None


def row_images(row: dict) -> list:
    """The row's image sources: ``images`` (a list or one item) or a single ``image``."""
    images = row.get('images')
    if images is None:
        images = row.get('image')
    if images is None:
        return []
    return list(images) if isinstance(images, (list, tuple)) else [images]


def row_limits(row: dict) -> dict:
    """The row's ``chat_template_kwargs`` pixel limits; refuses a value that is not an object."""
    kwargs = row.get('chat_template_kwargs')
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise ValueError(f'`chat_template_kwargs` must be a JSON object, got {type(kwargs).__name__} '
                         f'{_cut(repr(kwargs), 60)}')
    return {k: kwargs[k] for k in ('max_pixels', 'min_pixels') if kwargs.get(k) is not None}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + '...'


# --- the per-chunk work ---------------------------------------------------------------------------
def _sums() -> list:
    return [0, 0, 0, 0]  # tokens total, shrunk, failing images, max tokens of a sample


@dataclass
class PlanStats:
    """Sums over rows; chunks are merged with ``merge``."""

    rows: int = 0
    rows_with_images: int = 0
    images: int = 0
    tokens_per_image: Counter = field(default_factory=Counter)
    tokens_per_sample: Counter = field(default_factory=Counter)  # samples with every image planned
    tiles: Counter = field(default_factory=Counter)
    shrunk: int = 0
    grown: int = 0
    remote: int = 0
    samples_unchecked: int = 0  # samples left out of the token counts: a remote image
    unique: dict[int, int] = field(default_factory=dict)  # image identity hash -> tokens (first seen)
    unique_overflow: bool = False
    top_rows: list = field(default_factory=list)  # (tokens, -row) of the most expensive samples
    failures: list = field(default_factory=list)  # (row, image_index, image, message), first MAX_KEPT
    failure_count: int = 0
    failing_rows: int = 0
    path_warnings: list = field(default_factory=list)  # (row, image_index, image, message)
    path_warning_count: int = 0
    exif: list = field(default_factory=list)  # (row, image_index, image, orientation)
    exif_count: int = 0
    solution_issues: list = field(default_factory=list)  # (row, box, 'WxH', likely_norm1000)
    solution_issue_count: int = 0
    sweep: dict[int, list] = field(default_factory=dict)  # value -> _sums()
    tile_sweep: dict[int, list] = field(default_factory=dict)  # tile limit -> _sums()
    verified: bool = False  # whether --verify checked file bodies, not just headers

    def merge(self, other: PlanStats) -> None:
        for name in ('rows', 'rows_with_images', 'images', 'shrunk', 'grown', 'remote', 'samples_unchecked',
                     'failure_count', 'failing_rows', 'path_warning_count', 'exif_count', 'solution_issue_count'):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ('tokens_per_image', 'tokens_per_sample', 'tiles'):
            getattr(self, name).update(getattr(other, name))
        for name in ('failures', 'path_warnings', 'exif', 'solution_issues'):
            mine = getattr(self, name)
            mine.extend(getattr(other, name)[:max(0, MAX_KEPT - len(mine))])
        for key, tokens in other.unique.items():
            if len(self.unique) >= MAX_UNIQUE:
                self.unique_overflow = True
                break
            self.unique.setdefault(key, tokens)
        self.unique_overflow |= other.unique_overflow
        self.top_rows = heapq.nlargest(TOP_ROWS, self.top_rows + other.top_rows)
        for mine_all, theirs_all in ((self.sweep, other.sweep), (self.tile_sweep, other.tile_sweep)):
            for value, sums in theirs_all.items():
                mine = mine_all.setdefault(value, _sums())
                for i in range(3):
                    mine[i] += sums[i]
                mine[3] = max(mine[3], sums[3])


_WORKER: dict = {}


def _init_worker(settings: PreprocessSettings, sweep: Sequence[int], tile_sweep: Sequence[int],
                 base_dir: str, verify: bool) -> None:
    _WORKER.clear()
    _WORKER.update(settings=settings, base_dir=base_dir, verify=verify, headers={},
                   sweep=[(v, sweep_settings(settings, v)) for v in sweep],
                   tile_sweep=[(v, tile_settings(settings, v)) for v in tile_sweep])


def _header(src: Any, info: ImageSource, verify: bool):
    """``(ImageHeader, None)`` or ``(None, GeometryError)``; file headers cached by resolved path."""
    cache = _WORKER['headers']
    key = (info.path, verify) if info.kind == 'path' else None  # payloads are never cached
    if key is not None and key in cache:
        return cache[key]
    try:
        result = read_image_header(src, verify=verify), None
    except GeometryError as exc:
        result = None, exc
    if key is not None:
        if len(cache) >= HEADER_CACHE:
            cache.pop(next(iter(cache)))
        cache[key] = result
    return result


def _identity(info: ImageSource) -> int:
    return int.from_bytes(hashlib.blake2b(info.key.encode(), digest_size=8).digest(), 'little')


def _keep(stats: PlanStats, name: str, item: tuple) -> None:
    items = getattr(stats, name)
    if len(items) < MAX_KEPT:
        items.append(item)
    count = {'failures': 'failure_count', 'path_warnings': 'path_warning_count', 'exif': 'exif_count',
             'solution_issues': 'solution_issue_count'}[name]
    setattr(stats, count, getattr(stats, count) + 1)


def _path_note(src: Any, info: ImageSource, base_dir: str) -> tuple[str | None, bool]:
    """A warning about a relative path, and whether ms-swift will miss a file found next to the dataset."""
    raw = src.get('bytes') or src.get('path') if isinstance(src, dict) else src
    if not isinstance(raw, str) or info.kind != 'path' or os.path.isabs(raw.strip()):
        return None, False
    local = os.path.join(base_dir, raw.strip())
    if not os.path.exists(local) or os.path.abspath(local) == info.key:
        return None, False
    if not os.path.exists(info.key):
        return (f'{info.name}: exists next to the dataset ({local}) but ms-swift resolves relative paths '
                'against the working directory, then ROOT_IMAGE_DIR, and finds nothing there: run from the '
                f"dataset's folder or set ROOT_IMAGE_DIR={base_dir}"), True
    if os.path.realpath(local) != os.path.realpath(info.key):
        return (f'{info.name}: ms-swift reads {info.key} (working directory / ROOT_IMAGE_DIR), '
                f'not the file of that name next to the dataset ({local})'), False
    return None, False


def _plan_image(stats: PlanStats, number: int, index: int, src: Any, limits: dict, settings, base_dir: str,
                verify: bool):
    """Plan one image: ``(geo, header)`` or None (failed: recorded) or 'remote'."""
    info = classify(src)
    if info.kind == 'url':
        stats.remote += 1  # not fetched: plan reads local data only
        return 'remote'
    note, missed = _path_note(src, info, base_dir)
    if note and not missed:
        _keep(stats, 'path_warnings', (number, index, info.name, note))
    header, error = _header(src, info, verify)
    if error is None:
        if header.orientation != 1:
            _keep(stats, 'exif', (number, index, info.name, header.orientation))
        try:
            geo, clamped = settings.predict(width=header.width, height=header.height, row_kwargs=limits,
                                            name=info.name)
        except GeometryError as exc:
            error = exc
    if error is not None:
        _keep(stats, 'failures', (number, index, info.name, note if missed else str(error)))
        return None
    stats.tokens_per_image[geo.num_tokens] += 1
    if geo.tile_cols is not None:
        stats.tiles[geo.num_tiles] += 1
    stats.shrunk += clamped == 'max_pixels'
    stats.grown += clamped == 'min_pixels'
    if len(stats.unique) < MAX_UNIQUE:
        stats.unique.setdefault(_identity(info), geo.num_tokens)
    else:
        stats.unique_overflow = True
    return geo, header


def _swept_tokens(swept: Sequence, headers: list, limits: dict, sums_all: dict[int, list]) -> None:
    """Add one sample to every sweep value's sums."""
    for value, s in swept:
        sums, total = sums_all[value], 0
        for header in headers:
            try:
                g, c = s.predict(width=header.width, height=header.height, row_kwargs=limits)
            except GeometryError:
                sums[2] += 1
                continue
            total += g.num_tokens
            sums[1] += c == 'max_pixels'
        sums[0] += total
        sums[3] = max(sums[3], total)


def _check_solution(stats: PlanStats, number: int, row: dict, headers: list) -> None:
    """Ground truth outside its original image (often 0-1000 units where pixels are expected)."""
    solution = row.get('solution')
    if solution is None or not headers:
        return
    index = row.get('image_index', 0)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(headers):
        return
    boxes = parse_solution(solution)
    header = headers[index]
    if not boxes or header is None:
        return
    w, h = header.width, header.height
    outside = [b for b in boxes if b[2] > w + SOLUTION_SLACK or b[3] > h + SOLUTION_SLACK]
    if outside:
        norm = all(v <= 1000 for b in boxes for v in b)
        _keep(stats, 'solution_issues', (number, [round(v, 1) for v in outside[0]], f'{w}x{h}', norm))


def _plan_row(stats: PlanStats, number: int, row: Any) -> None:
    settings, base_dir, verify = _WORKER['settings'], _WORKER['base_dir'], _WORKER['verify']
    if isinstance(row, Exception):
        raise ValueError(str(row))
    if isinstance(row, str):
        row = json.loads(row)
    if not isinstance(row, dict):
        raise ValueError(f'a row must be a JSON object, got {type(row).__name__}')
    images, limits = row_images(row), row_limits(row)
    if not images:
        return
    stats.rows_with_images += 1
    stats.images += len(images)
    tokens, failed, remote, headers = 0, False, False, []
    for index, src in enumerate(images):
        result = _plan_image(stats, number, index, src, limits, settings, base_dir, verify)
        if result is None:
            failed = True
            headers.append(None)
        elif result == 'remote':
            remote = True
            headers.append(None)
        else:
            tokens += result[0].num_tokens
            headers.append(result[1])
    if failed:  # ms-swift drops (SFT) or stops on (GRPO) a sample whose image fails
        stats.failing_rows += 1
        for sums in list(stats.sweep.values()) + list(stats.tile_sweep.values()):
            sums[2] += 1
    elif remote:
        stats.samples_unchecked += 1  # its tokens are unknown: not a 0-token sample
    else:
        stats.tokens_per_sample[tokens] += 1
        stats.top_rows = heapq.nlargest(TOP_ROWS, stats.top_rows + [(tokens, -number)])
        _swept_tokens(_WORKER['sweep'], headers, limits, stats.sweep)
        _swept_tokens(_WORKER['tile_sweep'], headers, limits, stats.tile_sweep)
    _check_solution(stats, number, row, headers)


def plan_chunk(chunk: list[tuple[int, Any]]) -> PlanStats:
    """Plan a chunk of ``(row_number, row)``; runs in a worker after ``_init_worker``. Never raises."""
    stats = PlanStats(sweep={v: _sums() for v, _ in _WORKER['sweep']},
                      tile_sweep={v: _sums() for v, _ in _WORKER['tile_sweep']})
    for number, row in chunk:
        stats.rows += 1
        try:
            _plan_row(stats, number, row)
        except (ValueError, RecursionError) as exc:  # not JSON, too deep, a malformed field
            stats.failing_rows += 1
            _keep(stats, 'failures', (number, None, None, f'unreadable row: {_cut(str(exc), 300)}'))
        except Exception as exc:  # anything else a hostile row provokes: reported, never a crash
            stats.failing_rows += 1
            _keep(stats, 'failures', (number, None, None, f'row could not be planned: {type(exc).__name__}: '
                                      f'{_cut(str(exc), 300)}'))
    return stats


def _row_chars(row: Any) -> int:
    """About how much memory a row holds: its text, or the images it carries in memory."""
    if isinstance(row, str):
        return len(row)
    if not isinstance(row, dict):
        return 0
    total = 0
    for src in row_images(row):
        if isinstance(src, dict):
            total += sum(len(v) for v in src.values() if isinstance(v, (str, bytes)))
        elif isinstance(src, (str, bytes)):
            total += len(src)
    return total


def _chunks(rows: Iterator, size: int) -> Iterator[list]:
    chunk, chars = [], 0
    for row in rows:
        chunk.append(row)
        chars += _row_chars(row[1])
        if len(chunk) == size or chars >= CHUNK_CHARS:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


def plan_dataset(path: str, settings: PreprocessSettings, *, sweep: Sequence[int] = DEFAULT_SWEEP,
                 tile_sweep: Sequence[int] = (), workers: int | None = None, verify: bool = False,
                 progress=None) -> PlanStats:
    """Plan every row of the dataset at ``path`` with ``workers`` processes (all cores by default).

    Raises:
        PlanAborted: a worker process died; the message names the rows it held.
        OSError, ValueError: the dataset cannot be read.
    """
    workers = max(1, workers or os.cpu_count() or 1)
    if tile_sweep and tile_knob(settings) is None:
        raise ValueError(f'--sweep_max_num: {settings.template} has no tile limit to sweep.')
    init = (settings, tuple(sweep), tuple(tile_sweep), os.path.dirname(os.path.abspath(path)), verify)
    total = PlanStats(sweep={v: _sums() for v in sweep}, tile_sweep={v: _sums() for v in tile_sweep},
                      verified=verify)
    chunks = _chunks(iter_rows(path), CHUNK_ROWS)
    if workers == 1:
        _init_worker(*init)
        for chunk in chunks:
            _add(total, plan_chunk(chunk), progress)
    else:
        _run_pool(chunks, workers, init, total, progress)
    total.failures.sort(key=lambda f: (f[0], -1 if f[1] is None else f[1]))
    return total


def _add(total: PlanStats, stats: PlanStats, progress) -> None:
    total.merge(stats)
    if progress is not None:
        progress.update(stats.rows)


def _run_pool(chunks: Iterator[list], workers: int, init: tuple, total: PlanStats, progress) -> None:
    """Chunks through a process pool, at most 2 per worker in flight (bounded memory), in order."""
    executor = concurrent.futures.ProcessPoolExecutor(workers, initializer=_init_worker, initargs=init)
    pending: list[tuple[concurrent.futures.Future, tuple[int, int]]] = []
    try:
        for chunk in chunks:
            pending.append((executor.submit(plan_chunk, chunk), (chunk[0][0], chunk[-1][0])))
            while len(pending) >= 2 * workers:
                _collect(pending.pop(0), total, progress)
        while pending:
            _collect(pending.pop(0), total, progress)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _collect(item, total: PlanStats, progress) -> None:
    future, (first, last) = item
    try:
        stats = future.result()
    except BrokenProcessPool:
        raise PlanAborted(f'a worker process died while planning rows {first}-{last} (killed, or out of '
                          'memory?); the plan is incomplete. Try fewer --workers, or find the row with '
                          '--workers 1.') from None
    _add(total, stats, progress)


# --- output -------------------------------------------------------------------------------------------
def describe(counts: Counter) -> dict | None:
    """count, mean, p50, p95, max of a histogram of integers (exact; integers stay integers)."""
    n = sum(counts.values())
    if not n:
        return None
    values = sorted(counts.items())

    def percentile(p: float) -> int:
        rank, seen = max(1, -(-n * p // 100)), 0
        for value, count in values:
            seen += count
            if seen >= rank:
                return int(value)
        return int(values[-1][0])
    mean = sum(v * c for v, c in values) / n
    return {'count': n, 'mean': round(mean, 1), 'p50': percentile(50), 'p95': percentile(95),
            'max': int(values[-1][0])}


def summary(stats: PlanStats, settings: PreprocessSettings) -> dict:
    unique_tokens = Counter(stats.unique.values())
    family = family_of(settings.template)[0]
    return {
        'template': settings.template,
        'settings': settings.to_dict(),
        'rows': stats.rows, 'rows_with_images': stats.rows_with_images, 'images': stats.images,
        'unique_images': len(stats.unique), 'unique_images_is_lower_bound': stats.unique_overflow,
        'samples_planned': sum(stats.tokens_per_sample.values()),
        'samples_unchecked_remote': stats.samples_unchecked,
        'visual_tokens_total': int(sum(t * n for t, n in stats.tokens_per_sample.items())),
        'visual_tokens_per_image': describe(stats.tokens_per_image),
        'visual_tokens_per_unique_image': describe(unique_tokens),
        'visual_tokens_per_sample': describe(stats.tokens_per_sample),
        'most_expensive_rows': [{'row': -r, 'visual_tokens': int(t)} for t, r in stats.top_rows],
        'tile_histogram': {str(k): v for k, v in sorted(stats.tiles.items())},
        'verified': stats.verified,
        'shrunk_by_max_pixels': stats.shrunk, 'grown_by_min_pixels': stats.grown,
        'remote_images_not_checked': stats.remote,
        'failing_rows': stats.failing_rows,
        'failure_count': stats.failure_count,
        'failures': [{'row': r, 'image_index': i, 'image': n, 'error': e} for r, i, n, e in stats.failures],
        'path_warning_count': stats.path_warning_count,
        'path_warnings': [{'row': r, 'image_index': i, 'image': n, 'warning': w}
                          for r, i, n, w in stats.path_warnings],
        'exif_rotated_count': stats.exif_count,
        'exif_rotated': [{'row': r, 'image_index': i, 'image': n, 'orientation': o} for r, i, n, o in stats.exif],
        'solution_outside_image_count': stats.solution_issue_count,
        'solution_outside_image': [{'row': r, 'box': b, 'image_size': s, 'looks_like_0_1000': norm}
                                   for r, b, s, norm in stats.solution_issues],
        'sweep': [{'pixels': v, 'applied_as': family.sweep_knob, 'visual_tokens_total': t,
                   'max_visual_tokens_per_sample': m, 'shrunk_by_max_pixels': s, 'failing_images': f}
                  for v, (t, s, f, m) in stats.sweep.items()],
        'tile_sweep': [{tile_knob(settings) or 'max_num': v, 'visual_tokens_total': t,
                        'max_visual_tokens_per_sample': m, 'failing_images': f}
                       for v, (t, s, f, m) in stats.tile_sweep.items()],
    }


def format_text(s: dict) -> str:  # noqa: C901
    lines = [f'Template {s["template"]}: {s["rows"]} rows, {s["rows_with_images"]} with images, '
             f'{s["images"]} images ({s["unique_images"]}{"+" if s["unique_images_is_lower_bound"] else ""} unique)']
    for key, label in (('visual_tokens_per_image', 'per image'), ('visual_tokens_per_unique_image', 'per unique'),
                       ('visual_tokens_per_sample', 'per sample')):
        d = s[key]
        if d:
            lines.append(f'  visual tokens {label:10s} mean {d["mean"]:.1f}  p50 {d["p50"]}  '
                         f'p95 {d["p95"]}  max {d["max"]}')
    lines.append(f'  visual tokens total: {s["visual_tokens_total"]} over {s["samples_planned"]} samples')
    if s['most_expensive_rows']:
        lines.append('  most expensive rows: ' + ', '.join(f'row {r["row"]} ({r["visual_tokens"]})'
                                                         for r in s['most_expensive_rows'][:5]))
    if s['tile_histogram']:
        lines.append(f'  tiles per image: {s["tile_histogram"]}')
    lines.append(f'  shrunk by max_pixels: {s["shrunk_by_max_pixels"]}   '
                 f'grown by min_pixels: {s["grown_by_min_pixels"]}')
    if s['remote_images_not_checked']:
        lines.append(f'  remote images not checked: {s["remote_images_not_checked"]} '
                     f'({s["samples_unchecked_remote"]} samples left out of the token counts)')
    _listing(lines, 'Relative paths to check', s['path_warning_count'],
             [f'row {w["row"]} image {w["image_index"]}: {w["warning"]}' for w in s['path_warnings']])
    _listing(lines, 'Images with an EXIF orientation (a viewer rotates them; ms-swift and the model do not, '
             'so boxes drawn in a viewer are in another frame)', s['exif_rotated_count'],
             [f'row {e["row"]} image {e["image_index"]}: {e["image"]} (orientation {e["orientation"]})'
              for e in s['exif_rotated']])
    _listing(lines, 'Rows whose solution lies outside the image', s['solution_outside_image_count'],
             [f'row {x["row"]}: box {x["box"]} on a {x["image_size"]} image'
              + (' (looks like 0-1000 units; solution must be original pixels)' if x['looks_like_0_1000'] else '')
              for x in s['solution_outside_image']])
    lines.append(f'Images that will fail: {s["failure_count"]} (in {s["failing_rows"]} rows)')
    for f in s['failures'][:MAX_FAILURES_SHOWN]:
        where = f'row {f["row"]}' + ('' if f['image_index'] is None else f' image {f["image_index"]}')
        lines.append(f'  {where}: {f["error"]}')
    if s['failure_count'] > MAX_FAILURES_SHOWN:
        lines.append(f'  ... and {s["failure_count"] - MAX_FAILURES_SHOWN} more (see --json)')
    if not s.get('verified'):
        lines.append('  (headers only: files cut short after their header are found with --verify)')
    if s['sweep']:
        lines.append(f'Sweep (value applied as {s["sweep"][0]["applied_as"]}):')
        lines.append(f'  {"pixels":>10s} {"tokens total":>14s} {"max/sample":>11s} {"shrunk":>8s} {"failing":>8s}')
        for row in s['sweep']:
            lines.append(f'  {row["pixels"]:>10d} {row["visual_tokens_total"]:>14d} '
                         f'{row["max_visual_tokens_per_sample"]:>11d} {row["shrunk_by_max_pixels"]:>8d} '
                         f'{row["failing_images"]:>8d}')
    if s['tile_sweep']:
        knob = next(k for k in s['tile_sweep'][0] if k not in ('visual_tokens_total', 'max_visual_tokens_per_sample',
                                                                'failing_images'))
        lines.append(f'Sweep of {knob}:')
        lines.append(f'  {knob:>10s} {"tokens total":>14s} {"max/sample":>11s} {"failing":>8s}')
        for row in s['tile_sweep']:
            lines.append(f'  {row[knob]:>10d} {row["visual_tokens_total"]:>14d} '
                         f'{row["max_visual_tokens_per_sample"]:>11d} {row["failing_images"]:>8d}')
    return '\n'.join(lines)


def _listing(lines: list, title: str, count: int, items: list[str]) -> None:
    if not count:
        return
    lines.append(f'{title}: {count}')
    lines.extend(f'  {item}' for item in items[:MAX_FAILURES_SHOWN])
    if count > MAX_FAILURES_SHOWN:
        lines.append(f'  ... and {count - MAX_FAILURES_SHOWN} more (see --json)')


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(',') if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected integers separated by commas, got {_cut(text, 60)!r}') from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f'expected positive integers, got {_cut(text, 60)!r}')
    return values


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer, got {_cut(text, 60)!r}') from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {value}')
    return value


def build_parser(prog: str = 'swift-ext plan') -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split('\n')[0],
                                epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('dataset', metavar='DATASET', help='a .jsonl, .json or .parquet dataset in ms-swift format')
    p.add_argument('--template', required=True, help='a `_geo` template, e.g. qwen2_5_vl_geo')
    p.add_argument('--max_pixels', type=_positive, help="ms-swift's --max_pixels (a pre-rescale)")
    p.add_argument('--min_pixels', type=_positive, help='as MIN_PIXELS (Qwen smart_resize lower limit)')
    p.add_argument('--max_num', type=_positive, help='InternVL: most tiles per image (as MAX_NUM)')
    p.add_argument('--sweep', type=_int_list, default=None,
                   help=f'pixel budgets to compare, comma-separated (default: {",".join(map(str, DEFAULT_SWEEP))}; '
                        'for tiling families, none)')
    p.add_argument('--sweep_max_num', type=_int_list, default=None,
                   help=f'tile limits to compare for tiling families (default: '
                        f'{",".join(map(str, DEFAULT_TILE_SWEEP))})')
    p.add_argument('--workers', type=_positive, default=os.cpu_count(), help='processes (default: all cores)')
    p.add_argument('--verify', action='store_true',
                   help='also read each file past its header (slower; finds cut-off files)')
    p.add_argument('--json', action='store_true', help='print machine-readable JSON')
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = plan_settings(args.template, max_pixels=args.max_pixels,
                                 min_pixels=args.min_pixels, max_num=args.max_num)
    except ValueError as exc:
        print(f'swift-ext plan: {exc}', file=sys.stderr)
        return EXIT_USAGE
    if args.min_pixels is not None and not hasattr(settings, 'min_pixels'):
        print(f'swift-ext plan: --min_pixels does not apply to {settings.template}; ignored.', file=sys.stderr)
    if args.max_num is not None and not hasattr(settings, 'max_num'):
        print(f'swift-ext plan: --max_num does not apply to {settings.template}; ignored.', file=sys.stderr)
    if not os.path.isfile(args.dataset):
        print(f'swift-ext plan: DATASET must be a regular file, got {args.dataset!r}.', file=sys.stderr)
        return EXIT_USAGE
    tiling = tile_knob(settings) is not None
    sweep = args.sweep if args.sweep is not None else ([] if tiling else list(DEFAULT_SWEEP))
    tile_sweep = args.sweep_max_num if args.sweep_max_num is not None else (
        list(DEFAULT_TILE_SWEEP) if tiling and args.sweep is None else [])
    from tqdm import tqdm
    try:
        with tqdm(unit='rows', desc='plan', file=sys.stderr, disable=None, leave=False) as progress:
            stats = plan_dataset(args.dataset, settings, sweep=sweep, tile_sweep=tile_sweep,
                                 workers=args.workers, verify=args.verify, progress=progress)
    except PlanAborted as exc:
        print(f'swift-ext plan: {exc}', file=sys.stderr)
        return EXIT_INCOMPLETE
    except (OSError, ValueError, RecursionError) as exc:
        print(f'swift-ext plan: {args.dataset}: {_cut(str(exc), 500)}', file=sys.stderr)
        return EXIT_USAGE
    s = summary(stats, settings)
    print(json.dumps(s, indent=1) if args.json else format_text(s))
    return EXIT_OK

"""`swift-ext plan DATASET --template NAME`: what a template will do to a dataset's images.

Reads only image headers (``geometry.read_image_size``) in parallel and predicts each
image's geometry with ``settings.default_settings(...).predict`` — the same arithmetic the
`_geo` templates check themselves against — so a dataset can be sized before training.
"""
from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..geometry import GeometryError, describe_source, read_image_size
from .review import describe
from ..families import family_of
from ..settings import PreprocessSettings, settings_for, with_budget

# Pixel budgets compared by default: 256, 512, 1024, 1280 and 16384 tokens of 28x28 pixels.
DEFAULT_SWEEP = (200704, 401408, 802816, 1003520, 12845056)
CHUNK_ROWS = 512
MAX_FAILURES_SHOWN = 50
HEADER_CACHE = 65536  # image sizes remembered per worker (datasets often repeat images)

HELP_EPILOG = """\
Pixel limits, as ms-swift applies them:
  --max_pixels N   ms-swift's own `--max_pixels` flag: every image above N pixels is first
                   shrunk to about N pixels (keeping its aspect ratio), for every model,
                   before the model's own resize.
  MAX_PIXELS=N     (environment) Qwen only: qwen-vl-utils' smart_resize limit, turned
                   into N // 28**2 tokens (N // 32**2 for Qwen3-VL), as ms-swift does.
  MIN_PIXELS=N     (environment) Qwen only, the lower limit, likewise. `--min_pixels N`
                   here means the same as MIN_PIXELS=N and wins over the variable.
  MAX_NUM=N        (environment) InternVL (ms-swift tiling): at most N tiles; `--max_num`
                   sets it too (and the processor's max_patches for internvl_hf).
  INPUT_SIZE=N     (environment) InternVL (ms-swift tiling): tile side in pixels.
A row's chat_template_kwargs {"max_pixels": N, "min_pixels": M} applies to that row only.
The sweep recomputes totals with each value as MAX_PIXELS (Qwen) or as --max_pixels
(InternVL). Row numbers are 1-based line numbers (jsonl) or list positions (json).
Relative image paths are looked up next to the dataset file first, then as ms-swift
does (working directory, then ROOT_IMAGE_DIR)."""


# --- settings ---------------------------------------------------------------------------------
def plan_settings(template: str, *, max_pixels: Optional[int] = None,
                  min_pixels: Optional[int] = None, max_num: Optional[int] = None,
                  env: Optional[Dict[str, str]] = None) -> PreprocessSettings:
    """The settings a `_geo` template would run with, under these flags and environment."""
    return settings_for(template, env=env, swift_max_pixels=max_pixels, min_pixels=min_pixels, max_num=max_num)


def sweep_settings(settings: PreprocessSettings, value: int) -> PreprocessSettings:
    """``settings`` with a pixel budget, applied as the family's own knob (MAX_PIXELS for Qwen)."""
    return with_budget(settings, value)


# --- reading the dataset ---------------------------------------------------------------------------
def iter_rows(path: str) -> Iterator[Tuple[int, Any]]:
    """``(row_number, row)`` for a .jsonl (one object a line) or .json (a list) dataset.

    A line that is not JSON gives ``(row_number, ValueError(...))``.
    """
    if path.endswith('.json'):
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        if not isinstance(data, list):
            raise ValueError(f'{path}: a .json dataset must hold a list of rows, '
                             f'got {type(data).__name__}.')
        yield from enumerate(data, 1)
        return
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield number, line  # parsed in the worker


def row_images(row: dict) -> list:
    """The row's image sources: ``images`` (a list or one item) or a single ``image``."""
    images = row.get('images')
    if images is None:
        images = row.get('image')
    if images is None:
        return []
    return list(images) if isinstance(images, (list, tuple)) else [images]


def row_limits(row: dict) -> dict:
    kwargs = row.get('chat_template_kwargs') or {}
    if isinstance(kwargs, str):
        kwargs = json.loads(kwargs)
    return {k: kwargs[k] for k in ('max_pixels', 'min_pixels') if kwargs.get(k) is not None}


def resolve(source: Any, base_dir: str) -> Tuple[Any, bool]:
    """The source with a relative path resolved, and whether only the dataset's directory has it."""
    path = source.get('path') if isinstance(source, dict) and not source.get('bytes') else source
    if not isinstance(path, str) or os.path.isabs(path) or '://' in path or path.startswith('data:'):
        return source, False
    local = os.path.join(base_dir, path)
    if os.path.exists(local):
        swift_finds = os.path.exists(path) or bool(
            os.environ.get('ROOT_IMAGE_DIR') and os.path.exists(os.path.join(os.environ['ROOT_IMAGE_DIR'], path)))
        return local, not swift_finds
    root = os.environ.get('ROOT_IMAGE_DIR')
    if not os.path.exists(path) and root:
        return os.path.join(root, path), False
    return path, False


# --- the per-chunk work ---------------------------------------------------------------------------
@dataclass
class PlanStats:
    """Sums over rows; chunks are merged with ``merge``."""

    rows: int = 0
    rows_with_images: int = 0
    images: int = 0
    tokens_per_image: Counter = field(default_factory=Counter)
    tokens_per_sample: Counter = field(default_factory=Counter)  # samples with no failing image
    tiles: Counter = field(default_factory=Counter)
    shrunk: int = 0
    grown: int = 0
    remote: int = 0
    only_next_to_dataset: int = 0
    failures: list = field(default_factory=list)  # (row, image_index, image, message)
    sweep: Dict[int, list] = field(default_factory=dict)  # value -> [tokens, shrunk, failures]
    verified: bool = False  # whether --verify checked file bodies, not just headers

    def merge(self, other: 'PlanStats') -> None:
        for name in ('rows', 'rows_with_images', 'images', 'shrunk', 'grown', 'remote',
                     'only_next_to_dataset'):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ('tokens_per_image', 'tokens_per_sample', 'tiles'):
            getattr(self, name).update(getattr(other, name))
        self.failures.extend(other.failures)
        for value, sums in other.sweep.items():
            mine = self.sweep.setdefault(value, [0, 0, 0])
            for i, x in enumerate(sums):
                mine[i] += x


_WORKER: dict = {}


def _init_worker(settings: PreprocessSettings, sweep: Sequence[int], base_dir: str,
                 verify: bool) -> None:
    _WORKER.update(settings=settings, base_dir=base_dir, verify=verify,
                   sweep=[(v, sweep_settings(settings, v)) for v in sweep])


@functools.lru_cache(maxsize=HEADER_CACHE)
def _cached_size(path: str, verify: bool):
    try:
        return read_image_size(path, verify=verify), None
    except GeometryError as exc:
        return None, exc


def _image_size(source: Any, verify: bool):
    if isinstance(source, str):
        return _cached_size(source, verify)
    try:
        return read_image_size(source, verify=verify), None
    except GeometryError as exc:
        return None, exc


def plan_chunk(chunk: List[Tuple[int, Any]]) -> PlanStats:
    """Plan a chunk of ``(row_number, row)``; runs in a worker after ``_init_worker``."""
    settings, base_dir, verify = _WORKER['settings'], _WORKER['base_dir'], _WORKER['verify']
    stats = PlanStats(sweep={v: [0, 0, 0] for v, _ in _WORKER['sweep']})
    for number, row in chunk:
        stats.rows += 1
        try:
            if isinstance(row, str):
                row = json.loads(row)
            if not isinstance(row, dict):
                raise ValueError(f'a row must be a JSON object, got {type(row).__name__}')
            images, limits = row_images(row), row_limits(row)
        except ValueError as exc:
            stats.failures.append((number, None, None, f'unreadable row: {exc}'))
            continue
        if not images:
            continue
        stats.rows_with_images += 1
        sample_tokens, sample_failed = 0, False
        for index, source in enumerate(images):
            stats.images += 1
            name = describe_source(source)
            if isinstance(source, str) and source.startswith(('http://', 'https://')):
                stats.remote += 1  # not fetched: plan reads local files only
                continue
            source, only_here = resolve(source, base_dir)
            stats.only_next_to_dataset += only_here
            size, error = _image_size(source, verify)
            if error is None:
                try:
                    geo, clamped = settings.predict(width=size[0], height=size[1],
                                                    row_kwargs=limits, name=name)
                except GeometryError as exc:
                    error = exc
            if error is not None:
                stats.failures.append((number, index, name, str(error)))
                sample_failed = True
                for sums in stats.sweep.values():
                    sums[2] += 1
                continue
            stats.tokens_per_image[geo.num_tokens] += 1
            sample_tokens += geo.num_tokens
            if geo.tile_cols is not None:
                stats.tiles[geo.num_tiles] += 1
            stats.shrunk += clamped == 'max_pixels'
            stats.grown += clamped == 'min_pixels'
            for value, swept in _WORKER['sweep']:
                sums = stats.sweep[value]
                try:
                    g, c = swept.predict(width=size[0], height=size[1], row_kwargs=limits, name=name)
                except GeometryError:
                    sums[2] += 1
                    continue
                sums[0] += g.num_tokens
                sums[1] += c == 'max_pixels'
        if not sample_failed:  # ms-swift drops a sample whose image fails
            stats.tokens_per_sample[sample_tokens] += 1
    return stats


def _chunks(rows: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def plan_dataset(path: str, settings: PreprocessSettings, *, sweep: Sequence[int] = DEFAULT_SWEEP,
                 workers: Optional[int] = None, verify: bool = False, progress=None) -> PlanStats:
    """Plan every row of the dataset at ``path`` with ``workers`` processes (all cores by default)."""
    workers = workers or os.cpu_count() or 1
    init = (settings, tuple(sweep), os.path.dirname(os.path.abspath(path)), verify)
    total = PlanStats(sweep={v: [0, 0, 0] for v in sweep}, verified=verify)
    chunks = _chunks(iter_rows(path), CHUNK_ROWS)
    if workers == 1:
        _init_worker(*init)
        results = map(plan_chunk, chunks)
        pool = None
    else:
        pool = multiprocessing.get_context().Pool(workers, _init_worker, init)
        results = pool.imap(plan_chunk, chunks)
    try:
        for stats in results:
            total.merge(stats)
            if progress is not None:
                progress.update(stats.rows)
    finally:
        if pool is not None:
            pool.terminate()
    total.failures.sort(key=lambda f: (f[0], -1 if f[1] is None else f[1]))
    return total


# --- output -------------------------------------------------------------------------------------------
def summary(stats: PlanStats, settings: PreprocessSettings) -> dict:
    per_sample = describe(stats.tokens_per_sample)
    return {
        'template': settings.template,
        'settings': settings.to_dict(),
        'rows': stats.rows, 'rows_with_images': stats.rows_with_images, 'images': stats.images,
        'visual_tokens_total': sum(t * n for t, n in stats.tokens_per_sample.items()),
        'visual_tokens_per_image': describe(stats.tokens_per_image),
        'visual_tokens_per_sample': per_sample,
        'tile_histogram': {str(k): v for k, v in sorted(stats.tiles.items())},
        'verified': stats.verified,
        'shrunk_by_max_pixels': stats.shrunk, 'grown_by_min_pixels': stats.grown,
        'remote_images_not_checked': stats.remote,
        'relative_paths_only_next_to_dataset': stats.only_next_to_dataset,
        'failures': [{'row': r, 'image_index': i, 'image': n, 'error': e}
                     for r, i, n, e in stats.failures],
        'sweep': [{'pixels': v, 'applied_as': family_of(settings.template)[0].sweep_knob,
                   'visual_tokens_total': t, 'shrunk_by_max_pixels': s, 'failing_images': f}
                  for v, (t, s, f) in stats.sweep.items()],
    }


def format_text(s: dict) -> str:
    lines = [f'Template {s["template"]}: {s["rows"]} rows, {s["rows_with_images"]} with images, '
             f'{s["images"]} images']
    for key, label in (('visual_tokens_per_image', 'per image'), ('visual_tokens_per_sample', 'per sample')):
        d = s[key]
        if d:
            lines.append(f'  visual tokens {label:10s} mean {d["mean"]:.1f}  p50 {d["p50"]}  '
                         f'p95 {d["p95"]}  max {d["max"]}')
    lines.append(f'  visual tokens total: {s["visual_tokens_total"]}')
    if s['tile_histogram']:
        lines.append(f'  tiles per image: {s["tile_histogram"]}')
    lines.append(f'  shrunk by max_pixels: {s["shrunk_by_max_pixels"]}   '
                 f'grown by min_pixels: {s["grown_by_min_pixels"]}')
    if s['remote_images_not_checked']:
        lines.append(f'  remote images not checked: {s["remote_images_not_checked"]}')
    if s['relative_paths_only_next_to_dataset']:
        lines.append(f'  ! {s["relative_paths_only_next_to_dataset"]} relative image paths exist only next '
                     'to the dataset file: ms-swift resolves them against the working directory '
                     '(or ROOT_IMAGE_DIR), so run it from there or set ROOT_IMAGE_DIR.')
    failures = s['failures']
    lines.append(f'Images that will fail: {len(failures)}')
    for f in failures[:MAX_FAILURES_SHOWN]:
        where = f'row {f["row"]}' + ('' if f['image_index'] is None else f' image {f["image_index"]}')
        lines.append(f'  {where}: {f["error"]}')
    if len(failures) > MAX_FAILURES_SHOWN:
        lines.append(f'  ... and {len(failures) - MAX_FAILURES_SHOWN} more (see --json)')
    if not s.get('verified'):
        lines.append('  (headers only: files cut short after their header are found with --verify)')
    if s['sweep']:
        lines.append(f'Sweep (value applied as {s["sweep"][0]["applied_as"]}):')
        lines.append(f'  {"pixels":>10s} {"tokens total":>14s} {"shrunk":>8s} {"failing":>8s}')
        for row in s['sweep']:
            lines.append(f'  {row["pixels"]:>10d} {row["visual_tokens_total"]:>14d} '
                         f'{row["shrunk_by_max_pixels"]:>8d} {row["failing_images"]:>8d}')
    return '\n'.join(lines)


def _int_list(text: str) -> List[int]:
    try:
        return [int(x) for x in text.split(',') if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected integers separated by commas, got {text!r}') from None


def build_parser(prog: str = 'swift-ext plan') -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split('\n')[0],
                                epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('dataset', metavar='DATASET', help='a .jsonl or .json dataset in ms-swift format')
    p.add_argument('--template', required=True, help='a `_geo` template, e.g. qwen2_5_vl_geo')
    p.add_argument('--max_pixels', type=int, help="ms-swift's --max_pixels (a pre-rescale)")
    p.add_argument('--min_pixels', type=int, help='as MIN_PIXELS (Qwen smart_resize lower limit)')
    p.add_argument('--max_num', type=int, help='InternVL: most tiles per image (as MAX_NUM)')
    p.add_argument('--sweep', type=_int_list, default=list(DEFAULT_SWEEP),
                   help='pixel budgets to compare, comma-separated (default: %(default)s)')
    p.add_argument('--workers', type=int, default=os.cpu_count(), help='processes (default: all cores)')
    p.add_argument('--verify', action='store_true',
                   help='also check each file past its header (slower; finds cut-off files)')
    p.add_argument('--json', action='store_true', help='print machine-readable JSON')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = plan_settings(args.template, max_pixels=args.max_pixels,
                                 min_pixels=args.min_pixels, max_num=args.max_num)
    except ValueError as exc:
        print(f'swift-ext plan: {exc}', file=sys.stderr)
        return 2
    if args.min_pixels is not None and not hasattr(settings, 'min_pixels'):
        print(f'swift-ext plan: --min_pixels does not apply to {settings.template}; ignored.', file=sys.stderr)
    if args.max_num is not None and not hasattr(settings, 'max_num'):
        print(f'swift-ext plan: --max_num does not apply to {settings.template}; ignored.', file=sys.stderr)
    if not os.path.isfile(args.dataset):
        print(f'swift-ext plan: DATASET must be a file, got {args.dataset!r}.', file=sys.stderr)
        return 2
    from tqdm import tqdm
    try:
        with tqdm(unit='rows', desc='plan', file=sys.stderr, disable=None, leave=False) as progress:
            stats = plan_dataset(args.dataset, settings, sweep=args.sweep, workers=args.workers,
                                 verify=args.verify, progress=progress)
    except (OSError, ValueError) as exc:
        print(f'swift-ext plan: {exc}', file=sys.stderr)
        return 2
    s = summary(stats, settings)
    print(json.dumps(s, indent=1) if args.json else format_text(s))
    return 0

"""Running a plan: rows in chunks through a pool of worker processes, their sums merged in order.

Memory stays bounded (at most 2 chunks per worker in flight, a chunk ends at ``CHUNK_ROWS`` rows or
``CHUNK_CHARS`` characters); a worker that dies ends the plan within seconds (``PlanAborted``),
naming the rows it held.
"""
from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ...settings import PreprocessSettings
from ..dataset import iter_rows, row_images
from .stats import PlanStats, new_sums
from .work import init_worker, plan_chunk, tile_knob

# Pixel budgets compared by default: 256, 512, 1024, 1280 and 16384 tokens of 28x28 pixels.
DEFAULT_SWEEP = (200704, 401408, 802816, 1003520, 12845056)
# Tile limits compared by default for tiling families (a pixel budget barely moves them).
DEFAULT_TILE_SWEEP = (1, 2, 4, 6, 12)
CHUNK_ROWS = 512
CHUNK_CHARS = 8 << 20  # a chunk also ends at this many characters of rows (base64 datasets)


class PlanAborted(RuntimeError):
    """The plan could not finish (a worker died); says which rows were being read."""


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
                 progress=None, per_image: bool = False) -> PlanStats:
    """Plan every row of the dataset at ``path`` with ``workers`` processes (all cores by default).

    Raises:
        PlanAborted: a worker process died; the message names the rows it held.
        OSError, ValueError: the dataset cannot be read.
    """
    workers = max(1, workers or os.cpu_count() or 1)
    if tile_sweep and tile_knob(settings) is None:
        raise ValueError(f'--sweep_max_num: {settings.template} has no tile limit to sweep.')
    init = (settings, tuple(sweep), tuple(tile_sweep), os.path.dirname(os.path.abspath(path)), verify, per_image)
    total = PlanStats(sweep={v: new_sums() for v in sweep}, tile_sweep={v: new_sums() for v in tile_sweep},
                      verified=verify)
    chunks = _chunks(iter_rows(path), CHUNK_ROWS)
    if workers == 1:
        init_worker(*init)
        for chunk in chunks:
            _add(total, plan_chunk(chunk), progress)
    else:
        _run_pool(chunks, workers, init, total, progress)
    for name in ('failures', 'upscales', 'per_image'):  # chunks finish in order; a sort keeps it so anyway
        getattr(total, name).sort(key=lambda f: (f[0], -1 if f[1] is None else f[1]))
    return total


def _add(total: PlanStats, stats: PlanStats, progress) -> None:
    total.merge(stats)
    if progress is not None:
        progress.update(stats.rows)


def _run_pool(chunks: Iterator[list], workers: int, init: tuple, total: PlanStats, progress) -> None:
    """Chunks through a process pool, at most 2 per worker in flight (bounded memory), in order."""
    executor = concurrent.futures.ProcessPoolExecutor(workers, initializer=init_worker, initargs=init)
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

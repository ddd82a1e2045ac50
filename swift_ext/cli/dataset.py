"""Reading a dataset's rows as ms-swift does: .jsonl (a row a line), .json (a list) or .parquet.

Used by `plan` (what each row's images will cost) and `check --dataset` (how many images two
settings resize differently). A row's images are its ``images`` (a list or one item) or a single
``image``; its pixel limits are its ``chat_template_kwargs``. Bounded: a jsonl line over
``MAX_LINE_CHARS`` is reported and skipped unread; parquet is read a batch at a time.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

MAX_LINE_CHARS = 256 << 20  # a longer line is skipped and reported, never held in memory


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
        raise ValueError(f'not a readable parquet file ({cut(str(exc), 300)})') from None


def row_images(row: dict) -> list:
    """The row's image sources: ``images`` (a list or one item) or a single ``image``."""
    return _sources(row, 'images', 'image')


def row_videos(row: dict) -> list:
    """The row's video sources: ``videos`` (a list or one item) or a single ``video``."""
    return _sources(row, 'videos', 'video')


def _sources(row: dict, many: str, one: str) -> list:
    found = row.get(many)
    if found is None:
        found = row.get(one)
    if found is None:
        return []
    return list(found) if isinstance(found, (list, tuple)) else [found]


def row_limits(row: dict) -> dict:
    """The row's ``chat_template_kwargs`` pixel limits; refuses a value that is not an object."""
    kwargs = row.get('chat_template_kwargs')
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise ValueError(f'`chat_template_kwargs` must be a JSON object, got {type(kwargs).__name__} '
                         f'{cut(repr(kwargs), 60)}')
    return {k: kwargs[k] for k in ('max_pixels', 'min_pixels') if kwargs.get(k) is not None}


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with ``...`` where cut."""
    return text if len(text) <= limit else text[:limit] + '...'

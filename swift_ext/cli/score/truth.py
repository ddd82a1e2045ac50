"""`score --dataset`: the ground truth `swift infer` drops from its rows, joined back to each row.

By key where the rows carry one: when the result file's first row and the dataset's first row both
hold an ``id`` (``KEY``), every result row gets the ``solution`` of the dataset row with its id.
Otherwise by position, result row i getting dataset row i, and only when that is sound: a dataset
line that cannot be read (longer than ``dataset.MAX_LINE_CHARS``, not a JSON object) or a dataset
with more or fewer rows than the result file is refused (``JoinError``, exit 2), because a row
skipped on one side would give every later row another row's truth.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..bounded import FileStatus, iter_raw_lines, short
from ..dataset import MAX_LINE_CHARS, iter_rows
from .rows import RowError

KEY = 'id'
MAX_KEYS = 5_000_000  # dataset rows held for a join by key (a key and a small solution each)
MAX_SOLUTION_CHARS = 1 << 16  # a longer solution is not held (parse_solution refuses it anyway)
HINT = f'give both files an `{KEY}` column to join by, or pass the dataset the results were made from'


class JoinError(ValueError):
    """The result file and the dataset cannot be matched; says why and how to fix it."""


def first_row_has_key(path: str, max_line: int) -> bool:
    """Whether the first readable row of a jsonl file carries ``KEY``."""
    for _, raw in iter_raw_lines(path, FileStatus(path), max_line):
        try:
            row = json.loads(raw)
        except (ValueError, RecursionError):
            return False
        return isinstance(row, dict) and _key(row.get(KEY)) is not None
    return False


def _key(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return json.dumps(value) if isinstance(value, int) or len(value) <= 1024 else None


def _solution(row: dict) -> Any:
    value = row.get('solution')
    if isinstance(value, str) and len(value) > MAX_SOLUTION_CHARS:
        return None
    return value


class DatasetTruth:
    """The dataset's ``solution`` for each result row, in the order the rows come."""

    def __init__(self, path: str, *, by_key: bool):
        self.path, self.by_key = path, by_key
        self.rows = 0  # dataset rows read
        if by_key:
            self._index = self._read_keys()
        else:
            self._positions = self._read_rows()

    def solution(self, row: Any) -> Any:
        """The truth for the next result row (``row`` parsed; None where it could not be)."""
        if not self.by_key:
            try:
                return next(self._positions)
            except StopIteration:
                raise JoinError(f'--dataset {self.path} has {self.rows:,} rows and the result file more: rows '
                                f'cannot be matched by position ({HINT}).') from None
        key = _key(row.get(KEY)) if isinstance(row, dict) else None
        if key is None:
            raise RowError(f'no `{KEY}` to find the row in --dataset by')
        if key not in self._index:
            raise RowError(f'`{KEY}` {short(key, 60)} is not in --dataset')
        return self._index[key]

    def finish(self, result_rows: int) -> None:
        """Refuse a positional join that left dataset rows over."""
        if not self.by_key and next(self._positions, _END) is not _END:
            raise JoinError(f'--dataset {self.path} has more rows than the {result_rows:,} of the result file: '
                            f'rows cannot be matched by position ({HINT}).')

    def _read_rows(self) -> Iterator[Any]:
        for number, row in self._rows():
            if row is None:
                raise JoinError(f'--dataset {self.path}: line {number} could not be read (longer than '
                                f'{MAX_LINE_CHARS:,} characters, or not a JSON object); every later row would be '
                                f'matched to the wrong result row ({HINT}).')
            yield _solution(row)

    def _read_keys(self) -> dict[str, Any]:
        index: dict[str, Any] = {}
        for number, row in self._rows():
            key = _key(row.get(KEY)) if row is not None else None
            if key is None:
                continue
            if key in index:
                raise JoinError(f'--dataset {self.path}: line {number} repeats `{KEY}` {short(key, 60)}; rows '
                                'cannot be joined by it.')
            if len(index) >= MAX_KEYS:
                raise JoinError(f'--dataset {self.path}: more than {MAX_KEYS:,} rows to join by `{KEY}`.')
            index[key] = _solution(row)
        return index

    def _rows(self) -> Iterator[tuple[int, dict | None]]:
        """``(line number, row or None where unreadable)`` of the dataset."""
        for number, row in iter_rows(self.path):
            self.rows += 1
            if isinstance(row, str):
                try:
                    row = json.loads(row)
                except (ValueError, RecursionError):
                    row = None
            yield number, row if isinstance(row, dict) else None


_END = object()

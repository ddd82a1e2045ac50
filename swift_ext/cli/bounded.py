"""Reading logs and result files that no one here wrote, in bounded time and memory.

The bounds (part of the review / score contract):

* only regular files are read: a FIFO, a device (``/dev/zero``), a socket or a folder given
  as a log file is refused by type before it is opened for reading, so nothing blocks or
  grows without end;
* a line longer than the reader's ``max_line`` bytes is skipped (counted, its line number
  reported) after being read past in 1 MiB chunks: a 500 MB line costs one chunk of memory;
* a line that is valid JSON of the wrong shape, too deep (``RecursionError``), or an
  integer too long to convert is a bad line, counted with its number, never fatal;
* ``Histogram`` keeps at most ``MAX_BINS`` distinct values: past that it doubles its bin
  width (values stay exact to the bin), so 1M distinct values cost the same as 4,096;
* ``DistinctCount`` counts distinct keys exactly up to ``DISTINCT_EXACT`` and estimates
  beyond (k minimum values of a 64-bit hash, about 1% error), in bounded memory.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

CHUNK = 1 << 20
MAX_BINS = 4096
DISTINCT_EXACT = 16384
MAX_LINE_NUMBERS = 10  # line numbers kept per kind of problem


def refuse_reason(path: str) -> str | None:
    """Why ``path`` is not read as a log file (missing, not a regular file), or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return 'missing'
    except OSError as exc:
        return f'cannot be read ({exc.strerror or exc})'
    if not stat.S_ISREG(st.st_mode):
        return f'not a regular file ({file_kind(st.st_mode)}); not read'
    return None


def file_kind(mode: int) -> str:
    """What a file that is not regular is ('a FIFO', 'a character device', ...), for messages."""
    for test, name in ((stat.S_ISDIR, 'a folder'), (stat.S_ISFIFO, 'a FIFO'), (stat.S_ISCHR, 'a character device'),
                       (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket')):
        if test(mode):
            return name
    return 'a special file'


def open_regular(path: str):
    """Open ``path`` for binary reading if, once opened, it is a regular file; else OSError.

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for a writer; the
    type is then checked on the open descriptor (no race with a swapped file).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_CLOEXEC', 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f'{path}: not a regular file ({file_kind(mode)})')
        return os.fdopen(fd, 'rb')
    except BaseException:
        os.close(fd)
        raise


@dataclass
class FileStatus:
    """What reading one file found."""

    path: str
    exists: bool = True
    refused: str | None = None  # why the file was not read (not a regular file, ...)
    lines: int = 0
    bad_lines: int = 0
    long_lines: int = 0
    truncated_last_line: bool = False
    duplicate_lines: int = 0
    bad_line_numbers: list[int] = field(default_factory=list)
    long_line_numbers: list[int] = field(default_factory=list)
    max_line: int = 0

    def bad(self, line_no: int) -> None:
        self.bad_lines += 1
        if len(self.bad_line_numbers) < MAX_LINE_NUMBERS:
            self.bad_line_numbers.append(line_no)

    def undecodable(self, line_no: int, line: bytes) -> None:
        """A line that does not decode: a last line without its newline is a write cut short, else bad."""
        if not line.endswith(b'\n'):
            self.truncated_last_line = True
        else:
            self.bad(line_no)

    def problems(self) -> list[str]:
        name = os.path.basename(self.path)
        out = []
        if not self.exists:
            out.append(f'{name}: missing')
        if self.refused:
            out.append(f'{name}: {self.refused}')
        if self.truncated_last_line:
            out.append(f'{name}: last line is truncated (ignored)')
        if self.bad_lines:
            out.append(f'{name}: {self.bad_lines} unreadable line(s) skipped '
                       f'(line {_numbers(self.bad_line_numbers, self.bad_lines)})')
        if self.long_lines:
            out.append(f'{name}: {self.long_lines} line(s) longer than {self.max_line:,} bytes skipped '
                       f'(line {_numbers(self.long_line_numbers, self.long_lines)})')
        return out

    def to_dict(self) -> dict:
        return {'file': os.path.basename(self.path), 'exists': self.exists, 'refused': self.refused,
                'lines': self.lines, 'bad_lines': self.bad_lines, 'bad_line_numbers': self.bad_line_numbers,
                'long_lines': self.long_lines, 'long_line_numbers': self.long_line_numbers,
                'truncated_last_line': self.truncated_last_line, 'duplicate_lines': self.duplicate_lines}


def _numbers(numbers: list[int], total: int) -> str:
    text = ', '.join(str(n) for n in numbers)
    return text + (', ...' if total > len(numbers) else '')


def iter_raw_lines(path: str, status: FileStatus, max_line: int, progress=None, *,
                   long_lines: bool = False) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes)`` of the non-empty lines of ``path`` up to ``max_line`` bytes each.

    Longer lines are read past in chunks, counted and skipped (with ``long_lines``, yielded as
    ``(line number, None)``, so a reader that matches rows by position keeps its place). A missing
    or non-regular file is recorded in ``status`` and yields nothing.
    """
    status.max_line = max_line
    reason = refuse_reason(path)
    if reason == 'missing':
        status.exists = False
        return
    if reason:
        status.refused = reason
        return
    try:
        f = open_regular(path)
    except OSError as exc:
        status.refused = f'cannot be read ({exc})'
        return
    pending = 0
    line_no = 0
    with f:
        while True:
            line = f.readline(max_line + 1)
            if not line:
                break
            line_no += 1
            pending += len(line)
            if len(line) > max_line and not line.endswith(b'\n'):
                pending += _skip_rest(f)
                status.long_lines += 1
                if len(status.long_line_numbers) < MAX_LINE_NUMBERS:
                    status.long_line_numbers.append(line_no)
                if long_lines:
                    yield line_no, None
                continue
            if progress is not None and pending > CHUNK:
                progress.update(pending)
                pending = 0
            if not line.strip():
                continue
            status.lines += 1
            yield line_no, line
    if progress is not None:
        progress.update(pending)


def _skip_rest(f) -> int:
    skipped = 0
    while True:
        chunk = f.readline(CHUNK)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b'\n'):
            return skipped


def iter_lines(path: str, status: FileStatus, *, max_line: int, progress=None,
               decode: Callable[[bytes], Any] = json.loads,
               errors: tuple = (ValueError, RecursionError)) -> Iterator[tuple[int, Any]]:
    """``(line number, decoded value)`` per line; bad lines counted, a cut-off last line noted.

    A last line without a newline that does not decode is a write cut short: it is
    counted as truncated, not bad.
    """
    for line_no, line in iter_raw_lines(path, status, max_line, progress):
        try:
            value = decode(line)
        except errors:
            status.undecodable(line_no, line)
            continue
        yield line_no, value


# --- values of unknown type ---------------------------------------------------------------------
MAX_INT = 1 << 53  # larger "counts" or "steps" are not real ones


def as_int(value: Any, *, lo: int = 0, hi: int = MAX_INT) -> int | None:
    """An integer in ``[lo, hi]`` from an int, an integral float or a numeric string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not (0 < len(value) <= 20):
            return None
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    if isinstance(value, int) and lo <= value <= hi:
        return value
    return None


def as_number(value: Any) -> float | None:
    """A finite float from an int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


MAX_METRIC = 1e150  # a metric value beyond this (or infinite) is counted as out of range, never used


def as_metric(value: Any) -> tuple[float | None, bool]:
    """A logged metric or reward: ``(number, False)``; ``(None, False)`` for no value (None, NaN, not a
    number); ``(None, True)`` for a number out of range (infinite, an int too large for a float, or
    beyond ``MAX_METRIC``, where a sum, a square or a plot's axis range overflows a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, False
    try:
        number = float(value)
    except OverflowError:
        return None, True
    if number != number:
        return None, False
    if not -MAX_METRIC <= number <= MAX_METRIC:
        return None, True
    return number, False


def short(value: Any, limit: int = 200) -> str:
    """``str(value)`` cut to ``limit`` characters (for table cells and messages)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


# --- bounded aggregates -------------------------------------------------------------------------------
class Histogram:
    """Counts of integer values with at most ``MAX_BINS`` bins; exact min, max, sum.

    While there are few distinct values every value is its own bin (exact percentiles).
    Past ``MAX_BINS`` the bin width doubles (values merge onto multiples of the width) until
    the bins fit again: percentiles are then exact to within ``width``.
    """

    __slots__ = ('counts', 'width', 'total', 'sum', 'min', 'max')

    def __init__(self):
        self.counts: dict = {}
        self.width = 1
        self.total = 0
        self.sum = 0
        self.min: int | None = None
        self.max: int | None = None

    def add(self, value: int, n: int = 1) -> None:
        self.total += n
        self.sum += value * n
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)
        key = value - value % self.width
        self.counts[key] = self.counts.get(key, 0) + n
        if len(self.counts) > MAX_BINS:
            self._coarsen()

    def _coarsen(self) -> None:
        while len(self.counts) > MAX_BINS:
            self.width *= 2
            merged: dict = {}
            for key, n in self.counts.items():
                k = key - key % self.width
                merged[k] = merged.get(k, 0) + n
            self.counts = merged

    def __bool__(self) -> bool:
        return self.total > 0

    def __len__(self) -> int:
        return len(self.counts)

    def items(self):
        return sorted(self.counts.items())

    def percentile(self, q: float) -> int | None:
        """Nearest-rank percentile (numpy's 'inverted_cdf'); exact while ``width`` is 1."""
        if not self.total:
            return None
        rank = max(1, math.ceil(q / 100 * self.total))
        seen = 0
        for value, n in self.items():
            seen += n
            if seen >= rank:
                return min(max(value, self.min), self.max)
        return self.max


class DistinctCount:
    """How many distinct keys were seen: exact up to ``DISTINCT_EXACT``, then estimated.

    The estimator keeps the ``k`` smallest 64-bit hashes (KMV): with ``k`` kept, the
    distinct count is about ``(k - 1) / (largest kept hash / 2**64)``.
    """

    def __init__(self, k: int = DISTINCT_EXACT):
        self.k = k
        self._heap: list[int] = []  # negated hashes: a max-heap of the k smallest
        self._kept: set = set()

    def add(self, key: str) -> None:
        h = int.from_bytes(hashlib.blake2b(key.encode('utf-8', 'replace'), digest_size=8).digest(), 'big')
        if h in self._kept:
            return
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, -h)
            self._kept.add(h)
        elif h < -self._heap[0]:
            self._kept.discard(-heapq.heappushpop(self._heap, -h))
            self._kept.add(h)

    @property
    def exact(self) -> bool:
        return len(self._heap) < self.k

    def count(self) -> int:
        if self.exact:
            return len(self._heap)
        return int(round((self.k - 1) / (-self._heap[0] / 2 ** 64)))

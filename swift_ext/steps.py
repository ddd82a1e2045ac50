"""Which training step trained on which image lines: the join of the geometry log and the batch log.

A line written after the trainer trained on its batch carries that step. The others carry ``step``
null and ``row`` (the fingerprint of the encode's token ids, or a name of its process and encode where
that process collated it: an opaque string either way): those written by a dataloader worker
when it collated the batch, by a streaming or packing worker, or before their batch was collated.
The batch log names the rows each batch holds (``collate``: only rows that carry image data) and the
step that trained on it (``consume``); a batch trained on twice (GRPO ``--num_iterations``) counts
for both steps. A row is matched to the oldest unmatched encode with that fingerprint, so the same
sample encoded twice (two epochs, identical completions) is counted once per batch that holds it.

:class:`StepIndex` is fed lines and events as they are read (the geo_log callback, every step) or all
at once (``review``); ``batch_lines(batch)`` answers None where a batch cannot be accounted for whole
(no collate event seen, or a row with image data whose lines are missing), never a short list.
Internal module.
"""
from __future__ import annotations

import collections
from collections.abc import Iterable

MAX_WAITING = 200_000  # image lines kept for rows no trained batch has claimed yet
MAX_TAKEN = 256  # batches kept after they were trained on, for a second pass over them


class StepIndex:
    """Image lines by the batch that holds them, from lines and batch events fed in file order."""

    def __init__(self, max_waiting: int = MAX_WAITING):
        self.max_waiting = max_waiting
        self.rows_of: collections.OrderedDict = collections.OrderedDict()  # batch -> [row fingerprints]
        self.waiting: collections.OrderedDict = collections.OrderedDict()  # row -> deque of encode groups
        self.failures: dict = collections.defaultdict(list)  # batch -> failure lines
        self.taken: collections.OrderedDict = collections.OrderedDict()  # batch -> its lines (trained on)
        self.waiting_lines = 0
        self.evicted = 0  # lines dropped unclaimed (too many waiting)
        self._group: tuple = (None, None)  # (pid, encode) of the group being filled

    def add_lines(self, lines: Iterable[dict]) -> None:
        for line in lines:
            if not isinstance(line, dict):
                continue
            if line.get('error'):
                batch = line.get('batch')
                if isinstance(batch, str):
                    self.failures[batch].append(line)
                continue
            row = line.get('row')
            if not isinstance(row, str):
                continue
            group_key = (line.get('pid'), line.get('encode'))
            groups = self.waiting.get(row)
            if groups and self._group == group_key:
                groups[-1].append(line)  # the next image of the same encode
            else:
                if groups is None:
                    groups = self.waiting[row] = collections.deque()
                groups.append([line])
            self._group = group_key
            self.waiting_lines += 1
        while self.waiting_lines > self.max_waiting and self.waiting:
            _, groups = self.waiting.popitem(last=False)
            dropped = sum(len(g) for g in groups)
            self.waiting_lines -= dropped
            self.evicted += dropped

    def add_events(self, events: Iterable[dict]) -> list:
        """Record ``collate`` events; returns the ``consume`` events, in order, for the caller to place."""
        consumed = []
        for event in events:
            if not isinstance(event, dict) or not isinstance(event.get('batch'), str):
                continue
            if event.get('event') == 'collate' and isinstance(event.get('rows'), list):
                self.rows_of[event['batch']] = [r for r in event['rows'] if isinstance(r, str)]
                while len(self.rows_of) > self.max_waiting:
                    self.rows_of.popitem(last=False)
            elif event.get('event') == 'consume':
                consumed.append(event)
        return consumed

    def batch_lines(self, batch: str) -> list | None:
        """The image and failure lines of ``batch`` (again if trained on before), or None if not known whole."""
        if batch in self.taken:
            return self.taken[batch]
        rows = self.rows_of.get(batch)
        if rows is None:
            return None
        groups = []
        for row in rows:
            found = self.waiting.get(row)
            if not found:
                for group in reversed(groups):  # give back what was taken: the batch may be known whole later
                    self.waiting.setdefault(group[0]['row'], collections.deque()).appendleft(group)
                return None
            groups.append(found.popleft())
            if not found:
                del self.waiting[row]
        lines = [line for group in groups for line in group]
        self.waiting_lines -= len(lines)
        lines += self.failures.pop(batch, [])
        del self.rows_of[batch]
        self.taken[batch] = lines
        while len(self.taken) > MAX_TAKEN:
            self.taken.popitem(last=False)
        return lines


def trained_steps(lines: Iterable[dict], events: Iterable[dict]) -> tuple[list, dict]:
    """A rank's whole log joined: its lines with ``step`` filled where a consume event gives it, and
    ``{step: lines trained at that step}`` (a batch trained on twice is in both steps; a line no trained
    batch claimed keeps ``step`` null and is in no step). Lines are copied, never changed in place."""
    lines = [dict(line) for line in lines if isinstance(line, dict)]
    index = StepIndex(max_waiting=len(lines) + 1)
    index.add_lines(lines)
    per_step: dict = collections.defaultdict(list)
    for event in index.add_events(events):
        found = index.batch_lines(event['batch'])
        if found is None:
            continue
        for line in found:
            if line.get('step') is None:
                line['step'] = event.get('step')
        per_step[event.get('step')].extend(found)
    return lines, dict(per_step)

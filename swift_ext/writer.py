"""The recorder's writer: one thread a process that renders the lines the triggers took and writes them, in the
order they were handed over.

Rendering a batch's lines as JSON and writing them cost tens of microseconds a sample on CPU caches an encode
just filled; off the dataloader's path they overlap the next encodes (benchmark 1), as
``logging.handlers.QueueHandler`` keeps a slow handler out of a request's thread. The thread starts at the first
hand-off and ends after ``WRITER_IDLE`` seconds with nothing to write (a process that has stopped encoding
holds no thread, and few forks copy one). After each write it rests ``REST_SECONDS`` unless a sync or a trigger
that wants its lines out now (a count, time or lookup trigger) cuts the rest short, so that a batch's collates
are written together. A trigger waits only where ``MAX_HANDED`` hand-offs wait already. A
forked child gets a new recorder, so a new writer: what its parent handed over is its parent's to write.
Internal module.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from . import runlog
from .forksafe import Lock

logger = logging.getLogger(__name__)

WRITER_IDLE = 2.0  # seconds the thread waits for work before it ends (the next hand-off starts another)
SYNC_SECONDS = 30.0  # longest wait for the writer at a flush or exit (a log folder on a hung network mount)
# After a write the thread rests this long (a sync() or a trigger that wants its lines out cuts it short): the
# collates of that time (a batch collated row by row hands over 8) are rendered together and written in one call
# per file, the GIL taken once for them.
REST_SECONDS = 0.05
MAX_HANDED = 256  # hand-offs waiting before a trigger waits for the writer (a disk slower than the encodes)


class Writer:
    """Renders and writes ``(folder, items, events)`` hand-offs; ``items`` are ``(lines, step, batch, row, encode)``.

    ``count_lost(lines, exc)`` counts and warns about lines that could not be rendered or handed over.
    """

    def __init__(self, count_lost: Callable[[Any, Exception], None]):
        self.count_lost = count_lost
        self.queue: queue.Queue = queue.Queue(MAX_HANDED)  # hand-offs, and Events that sync() waits on
        self.thread: threading.Thread | None = None
        self.lock = Lock()  # between a hand-off starting a thread and the thread ending when idle
        self.hurry = threading.Event()  # a sync() waits: write now

    def hand_off(self, work: Any) -> bool:
        """Queue ``work``, starting the thread where none runs; False where it could not be queued."""
        try:
            self.queue.put_nowait(work)
        except queue.Full:  # the thread is behind: wait for it, as long as a flush would
            try:
                self.queue.put(work, timeout=SYNC_SECONDS)
            except queue.Full:  # stuck in a write (a hung network mount): lose these lines, not the run
                if not isinstance(work, threading.Event):
                    self.count_lost([x[0] for x in work[1]], OSError(f'the log writer was stuck for {SYNC_SECONDS} s'))
                return False
        if self.thread is not None:
            return True
        with self.lock:
            if self.thread is not None:
                return True
            thread = threading.Thread(target=self._loop, name='swift-ext-geometry-writer', daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no new thread at interpreter shutdown: written here
                self._write_queued()
                return True
            self.thread = thread
        return True

    def sync(self, timeout: float = SYNC_SECONDS) -> bool:
        """Wait until everything handed over so far is written: False if ``timeout`` seconds passed."""
        if self.thread is None and self.queue.empty():
            return True
        done = threading.Event()
        if not self.hand_off(done):
            return False
        self.hurry.set()
        return done.wait(timeout)

    def _loop(self) -> None:
        while True:
            try:
                work = self.queue.get(timeout=WRITER_IDLE)
            except queue.Empty:
                # Ended first, then looked again: a hand-off that saw this thread still running queued its work
                # before the look, and one that saw it ended starts another.
                with self.lock:
                    self.thread = None
                if self.queue.empty():
                    return
                with self.lock:
                    if self.thread is not None:
                        return
                    self.thread = threading.current_thread()
                continue
            works = [work]
            while True:
                try:
                    works.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(works)
            except Exception:  # the thread must not die: triggers would wait for it
                logger.debug('swift-ext: the geometry log writer failed', exc_info=True)
            self.hurry.wait(REST_SECONDS)  # what the triggers hand over meanwhile is written together next
            self.hurry.clear()

    def _write_queued(self) -> None:
        works = []
        while True:
            try:
                works.append(self.queue.get_nowait())
            except queue.Empty:
                break
        self._write(works)

    def _write(self, works: list) -> None:
        """Each folder's lines and events in one write each, in hand-off order; an Event set once what came
        before it is written."""
        text, images, events, directory = [], 0, [], None
        for work in works + [None]:
            if work is None or isinstance(work, threading.Event) or work[0] != directory:
                if directory is not None and (text or events):
                    runlog.write(directory, ''.join(text), images, events)
                text, images, events, directory = [], 0, [], None
                if work is None:
                    return
                if isinstance(work, threading.Event):
                    work.set()
                    continue
            directory, items, more = work
            for lines, step, batch, row, encode in items:
                try:
                    text.append(lines.render(step=step, batch=batch, row=row, encode=encode))
                    images += lines.count
                except Exception as exc:
                    self.count_lost(lines, exc)
            events += more

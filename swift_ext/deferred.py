"""Work an encode leaves for later: reading its geometry and recording it, done in batches.

Right after an encode the CPU caches hold its pixels, and each step swift-ext takes there costs
3-10x what it costs a moment later in a loop. So a `_geo` template only queues what it needs
(references to the encode's output, the step, the time) and the records are made together:
- before anything reads them: a geometry-store lookup (rewards, the completions table) or a
  run-log write;
- when the template collates a batch (with a run log), and at a step's end (geo_log callback);
- when MAX_JOBS encodes wait, or the oldest waited MAX_SECONDS at the next encode;
- at a normal exit of the process (a dataloader worker included).

What waits holds the ids and small tensors a family reads (of pixels only their shape), and
MAX_JOBS bounds how many encodes wait. A forked child starts empty: its parent records what it queued.
"""
from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

MAX_JOBS = 16
# Only for encodes that no collate, lookup or step end follows (`swift infer`, a user's own loop):
# in training those come first. At 1 s it fired inside a training batch's encodes (8 samples of
# 60 ms pass a second), so records were made a few at a time, in the caches of the encode just
# done: benchmark 1 read glm4_5v at 1.011-1.016 then, 1.004 at 10 s.
MAX_SECONDS = 10.0

_JOBS: collections.deque = collections.deque()
_SINCE = [0.0]  # when the oldest waiting job was queued
_LOCK = threading.Lock()  # one drain at a time: a lookup waits for a drain in progress
_DRAINING = threading.local()
# Called after the exit drain (the run log writes what it produced).
AFTER_EXIT: list[Callable[[], None]] = []
_EXIT_PID = [None]
_PID = [os.getpid()]  # kept current by the fork hook: os.getpid() is a system call


def defer(func: Callable, *args) -> None:
    """Queue ``func(*args)``; it runs at the latest when something reads, and never raises."""
    if not _JOBS:
        _SINCE[0] = time.monotonic()
        if _EXIT_PID[0] != _PID[0]:
            _at_exit_of_this_process()
    _JOBS.append((func, args))
    if len(_JOBS) >= MAX_JOBS or time.monotonic() - _SINCE[0] >= MAX_SECONDS:
        resolve()


def resolve() -> None:
    """Run every queued job now (in queue order). Called again from inside a job, does nothing."""
    # A drain in another thread may hold a job it took but has not finished: wait for it too.
    if getattr(_DRAINING, 'on', False) or not (_JOBS or _LOCK.locked()):
        return
    _DRAINING.on = True
    try:
        with _LOCK:
            while _JOBS:
                func, args = _JOBS.popleft()  # only drains pop, one at a time
                try:
                    func(*args)
                except Exception:  # jobs guard themselves: this is a bug, but never the caller's failure
                    logger.exception('swift-ext: a deferred job failed')
    finally:
        _DRAINING.on = False


def waiting() -> int:
    return len(_JOBS)


def _exit() -> None:
    resolve()
    for func in AFTER_EXIT:
        func()


def _at_exit_of_this_process() -> None:
    # atexit for the main process; a multiprocessing child (a dataloader worker) runs only its finalizers.
    _EXIT_PID[0] = _PID[0]
    import multiprocessing.util
    multiprocessing.util.Finalize(None, _exit, exitpriority=200)
    atexit.register(_exit)


def _after_fork_in_child() -> None:
    global _LOCK
    _PID[0] = os.getpid()
    _JOBS.clear()
    _LOCK = threading.Lock()
    _DRAINING.on = False


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)

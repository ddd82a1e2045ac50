"""One fork hook for the whole package: locks and per-process state a forked child must not inherit.

A process forked while another of its threads holds a lock gets a copy of the lock that nobody will
ever release: the child hangs on first use. Every lock swift-ext takes is a :class:`Lock` from here,
and the one ``os.register_at_fork`` hook of this module gives each a fresh lock in the child, then
runs the functions modules registered with :func:`after_fork_in_child` (the recorder's queue, the log
writer's descriptors, ...). Internal module.
"""
from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

_LOCKS: weakref.WeakSet = weakref.WeakSet()
_AFTER_FORK: list[Callable[[], None]] = []


class Lock:
    """A ``threading.Lock`` that a forked child gets fresh (unlocked) instead of copied."""

    __slots__ = ('_lock', '__weakref__')

    def __init__(self):
        self._lock = threading.Lock()
        _LOCKS.add(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc) -> None:
        self._lock.release()


def after_fork_in_child(func: Callable[[], None]) -> Callable[[], None]:
    """Run ``func()`` in every forked child, after its locks are replaced (usable as a decorator)."""
    _AFTER_FORK.append(func)
    return func


def _in_child() -> None:
    for lock in list(_LOCKS):
        lock._lock = threading.Lock()
    for func in _AFTER_FORK:
        func()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_in_child)

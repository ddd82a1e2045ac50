"""One registration policy for what swift-ext adds to ms-swift's tables, and one warn-once.

A second registration of the same object is a no-op; a different object under a taken name
is refused with a plain sentence. "The same" means the same module and qualified name, so a
plugin file that ms-swift imports twice (a fresh module object each time) still registers.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import MutableMapping
from typing import Any

logger = logging.getLogger('swift_ext')
_WARNED: set = set()
_WARNED_LOCK = threading.Lock()


def qualified_name(obj: Any) -> str:
    return f'{getattr(obj, "__module__", "?")}.{getattr(obj, "__qualname__", repr(obj))}'


def register(table: MutableMapping[str, Any], name: str, obj: Any, what: str) -> None:
    """``table[name] = obj`` unless ``name`` already holds another object."""
    existing = table.get(name)
    if existing is not None and existing is not obj and qualified_name(existing) != qualified_name(obj):
        raise ValueError(f'{what} name {name!r} is already registered to {qualified_name(existing)}, '
                         f'not {qualified_name(obj)}.')
    table[name] = obj


def warn_once(cause: str, message: str, *, limit: int = 2000) -> None:
    """Log ``message`` (cut to ``limit`` characters) the first time ``cause`` is seen in this process."""
    with _WARNED_LOCK:
        if cause in _WARNED:
            return
        _WARNED.add(cause)
    if len(message) > limit:
        message = message[:limit] + f'... [{len(message) - limit} more characters]'
    logger.warning(message)


def _new_lock_in_child() -> None:
    # A fork while another thread holds the lock would leave the child's copy locked forever.
    global _WARNED_LOCK
    _WARNED_LOCK = threading.Lock()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def reset_warnings() -> None:
    """Forget which causes were warned about (tests)."""
    with _WARNED_LOCK:
        _WARNED.clear()

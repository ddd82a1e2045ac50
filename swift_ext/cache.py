"""One bounded memo table: results that are cheap to recompute, remembered while a run repeats them.

A run sees the same image sizes, paths and geometries again and again; these tables keep the answers
and start over when full (a clear, not an LRU: a miss only costs a recomputation, and a clear keeps a
hit to one dict lookup). Internal module.
"""
from __future__ import annotations

from typing import Any

DEFAULT_SIZE = 4096


class BoundedCache(dict):
    """A dict that empties itself before a new key would make it hold more than ``size`` entries."""

    __slots__ = ('size',)

    def __init__(self, size: int = DEFAULT_SIZE):
        super().__init__()
        self.size = size

    def __setitem__(self, key: Any, value: Any) -> None:
        if len(self) >= self.size and key not in self:
            self.clear()
        super().__setitem__(key, value)

    def remember(self, key: Any, value: Any) -> Any:
        """``self[key] = value``, returning ``value`` (for ``x = cache.remember(k, compute())``)."""
        self[key] = value
        return value

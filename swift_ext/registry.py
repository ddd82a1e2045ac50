"""One registration policy for what swift-ext adds to ms-swift's tables.

A second registration of the same object is a no-op; a different object under a taken name
is refused with a plain sentence. "The same" means the same module and qualified name, so a
plugin file that ms-swift imports twice (a fresh module object each time) still registers.

Internal module.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any


def qualified_name(obj: Any) -> str:
    return f'{getattr(obj, "__module__", "?")}.{getattr(obj, "__qualname__", repr(obj))}'


def register(table: MutableMapping[str, Any], name: str, obj: Any, what: str) -> None:
    """``table[name] = obj`` unless ``name`` already holds another object."""
    existing = table.get(name)
    if existing is not None and existing is not obj and qualified_name(existing) != qualified_name(obj):
        raise ValueError(f'{what} name {name!r} is already registered to {qualified_name(existing)}, '
                         f'not {qualified_name(obj)}.')
    table[name] = obj

"""Per-process memory of what the `_geo` templates saw, for rewards in the same process.

In GRPO with the PyTorch rollout (and vLLM colocate) the template encodes each prompt in
the trainer's process right before the reward functions run, so the reward can look up
the exact geometry the template recorded instead of recomputing it.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from typing import Any, Mapping, Optional, Tuple

from .geometry import ImageGeometry
from .registry import warn_once  # noqa: F401  (re-exported: the templates and rewards use it)

# Enough for any realistic rollout batch several times over; bounded so a long run's
# memory stays flat.
MAX_RECORDS = 50_000


def image_key(source: Any) -> str:
    """A stable identity for an image source, the same in the template and in a reward.

    Mirrors ms-swift's choice of what to load: a dict's bytes win over its path.
    """
    if isinstance(source, Mapping):
        if source.get('bytes'):
            return _bytes_key(source['bytes'])
        if source.get('path'):
            return _path_key(source['path'])
        return 'empty'
    if isinstance(source, (bytes, bytearray)):
        return _bytes_key(source)
    if isinstance(source, (str, os.PathLike)):
        s = os.fspath(source)
        if s.startswith('data:') or len(s) > 4096:
            return _bytes_key(s.encode())
        return _path_key(s)
    if hasattr(source, 'tobytes') and hasattr(source, 'size'):  # PIL image
        return _bytes_key(source.tobytes())
    return f'object:{id(source)}'


def _bytes_key(data: bytes) -> str:
    return 'sha1:' + hashlib.sha1(bytes(data)).hexdigest()[:20]


def _path_key(path: str) -> str:
    if path.startswith('file://'):
        path = path[7:]
    if '://' in path:
        return path
    return os.path.abspath(path)


def row_limits_key(row_kwargs: Optional[Mapping]) -> Tuple:
    """The part of a row's chat_template_kwargs that can change an image's geometry."""
    if not row_kwargs:
        return (None, None)
    return (row_kwargs.get('min_pixels'), row_kwargs.get('max_pixels'))


class GeometryStore:
    """Thread-safe, bounded map (image key, row limits, template) -> latest ImageGeometry."""

    def __init__(self, max_records: int = MAX_RECORDS):
        self._data: 'OrderedDict[Tuple, ImageGeometry]' = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_records

    def put(self, key: str, limits: Tuple, template: str, geometry: ImageGeometry) -> None:
        k = (key, limits, template)
        with self._lock:
            self._data[k] = geometry
            self._data.move_to_end(k)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def get(self, key: str, limits: Tuple, template: str) -> Optional[ImageGeometry]:
        with self._lock:
            return self._data.get((key, limits, template))

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


STORE = GeometryStore()

_ACTIVE: dict = {}
_ACTIVE_LOCK = threading.Lock()


def set_active_settings(settings) -> None:
    """Remember the settings of a `_geo` template built in this process."""
    with _ACTIVE_LOCK:
        _ACTIVE.pop(settings.template, None)
        _ACTIVE[settings.template] = settings


def active_settings(template: Optional[str] = None):
    """Settings of the `_geo` template built in this process (the named one, or the latest)."""
    with _ACTIVE_LOCK:
        if template is not None:
            return _ACTIVE.get(template)
        return next(reversed(_ACTIVE.values())) if _ACTIVE else None


def reset() -> None:
    """Forget every record and active template of this process (tests, a new run in-process)."""
    STORE.clear()
    with _ACTIVE_LOCK:
        _ACTIVE.clear()

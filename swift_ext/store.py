"""The geometry store: per process, the geometry a `_geo` template recorded for each image (``STORE``) and
each video (``VIDEO_STORE``) it encoded.

In GRPO with the PyTorch rollout or vLLM colocate the template encodes each prompt in the trainer's
process before the reward functions run, so a reward looks up the exact geometry the encode produced
(or, for vLLM, the resized image it handed over) instead of recomputing it. Internal module; rewards
use it through ``swift_ext.rewards``.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from .forksafe import Lock
from .geometry import ImageGeometry
from .recorder import recorder

# Enough for any realistic rollout batch several times over; bounded so a long run's memory stays flat.
MAX_ENTRIES = 50_000

NO_LIMITS = (None, None)


def row_limits_key(row_kwargs: Any) -> tuple:
    """The part of a row's chat_template_kwargs that can change an image's geometry, hashable.

    Anything that is not a mapping counts as no limits; an unhashable limit (a list, a dict)
    is keyed by its ``repr``, cut, so a store lookup never raises.
    """
    if not row_kwargs or not isinstance(row_kwargs, Mapping):  # the common empty case first: one check
        return NO_LIMITS
    key = tuple(_hashable(row_kwargs.get(k)) for k in ('min_pixels', 'max_pixels'))
    # PaddleOCR-VL takes its limits as edges; other families never see these keys.
    edges = tuple(_hashable(row_kwargs.get(k)) for k in ('shortest_edge', 'longest_edge'))
    return key + edges if any(v is not None for v in edges) else key


# chat_template_kwargs qwen-vl-utils' fetch_video reads for a video (the frames, their window and size).
VIDEO_ROW_KEYS = ('fps', 'nframes', 'min_frames', 'max_frames', 'video_start', 'video_end', 'min_pixels',
                  'max_pixels', 'total_pixels', 'resized_height', 'resized_width')


def video_limits_key(row_kwargs: Any) -> tuple:
    """``row_limits_key`` for a video: the row's ``VIDEO_ROW_KEYS``, hashable; ``()`` when none is set."""
    if not row_kwargs or not isinstance(row_kwargs, Mapping):
        return ()
    return tuple((k, _hashable(row_kwargs[k])) for k in VIDEO_ROW_KEYS if row_kwargs.get(k) is not None)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return 'unhashable:' + repr(value)[:200]
    return value


class GeometryStore:
    """Thread-safe, bounded map (image or video key, row limits, template) -> latest geometry."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self._data: OrderedDict[tuple, ImageGeometry] = OrderedDict()
        self._lock = Lock()
        self._max = max_entries

    def put(self, key: str, limits: tuple, template: str, geometry: ImageGeometry) -> None:
        k = (key, limits, template)
        with self._lock:
            self._data[k] = geometry
            self._data.move_to_end(k)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def put_all(self, limits: tuple, template: str, items) -> None:
        """``put`` of each ``(geometry, key, ...)`` in ``items`` (an encode's images), under one lock."""
        if not items:
            return
        data = self._data
        with self._lock:
            for item in items:
                k = (item[1], limits, template)
                data[k] = item[0]
                data.move_to_end(k)
            while len(data) > self._max:
                data.popitem(last=False)

    def get(self, key: str, limits: tuple, template: str) -> ImageGeometry | None:
        recorder().resolve()  # encodes not read yet
        with self._lock:
            return self._data.get((key, limits, template))

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        recorder().resolve()
        return len(self._data)


STORE = GeometryStore()
# Videos: (video key, video_limits_key + the time axis of the prompt, template) -> VideoGeometry.
VIDEO_STORE = GeometryStore()

_ACTIVE: dict = {}
_ACTIVE_LOCK = Lock()


def set_active_settings(settings) -> None:
    """Remember the settings of a `_geo` template built in this process."""
    with _ACTIVE_LOCK:
        _ACTIVE.pop(settings.template, None)
        _ACTIVE[settings.template] = settings


def active_settings(template: str | None = None):
    """Settings of the `_geo` template built in this process (the named one, or the latest)."""
    with _ACTIVE_LOCK:
        if template is not None:
            return _ACTIVE.get(template)
        return next(reversed(_ACTIVE.values())) if _ACTIVE else None


def reset() -> None:
    """Forget every geometry and active template of this process (tests, a new run in-process)."""
    STORE.clear()
    VIDEO_STORE.clear()
    with _ACTIVE_LOCK:
        _ACTIVE.clear()

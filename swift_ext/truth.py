"""Which image of a row its ground truth belongs to: the one rule rewards, review, score and plan read.

A row's ``solution`` (boxes in original pixels) belongs to ONE image of the row: the image its
``image_index`` column names, an integer counting from 0 in the row's ``images`` (absent or null: 0,
the first image). A row with boxes on two images is two rows, one per image, each with its
``image_index``.

ms-swift's grounding column ``objects`` names each box's image itself (``image_id``, one per box, 0
when absent); the truth of a row is then the boxes whose ``image_id`` is the row's ``image_index``.

In a GRPO run the `geo_log` callback writes each row's ``image_index`` into ``completions.jsonl`` as
``COMPLETION_COLUMN``, so `swift-ext review` draws each rollout on the image its reward scored.
"""
from __future__ import annotations

import json
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from .scoring import parse_solution

IMAGE_INDEX = 'image_index'
COMPLETION_COLUMN = 'geo_image_index'
MAX_OBJECTS = 100  # boxes read from an `objects` column (scoring.MAX_GT_BOXES)


class TruthError(ValueError):
    """A row whose ``image_index`` names no image. ``kind``: 'type' (not an integer) or 'range'."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def image_index(value: Any, count: int | None = None, *, name: str = IMAGE_INDEX, what: str = 'image') -> int:
    """``value`` read as a row's ``image_index`` (None: 0), checked against ``count`` images where given.

    Integers and numpy integers are accepted; booleans, floats and strings are not (``1.0`` or ``"1"``
    in a dataset is a bug to fix, not a guess to make).

    Raises:
        TruthError: the value is not an integer, or names no image of ``count``.
    """
    if value is None:
        value = 0
    try:
        if isinstance(value, bool):
            raise TypeError
        index = operator.index(value)
    except TypeError:
        raise TruthError(f'`{name}` must be an integer, got {str(value)[:40]!r}', 'type') from None
    if index < 0 or (count is not None and index >= count):
        raise TruthError(f'`{name}` {index} names no {what} of a row with {count} {what}(s)'
                         if count is not None else f'`{name}` must be >= 0, got {index}', 'range')
    return index


def row_image_index(row: Mapping, count: int | None = None) -> int:
    """The index of the image a row's truth belongs to (``image_index``, else 0). Raises TruthError."""
    return image_index(row.get(IMAGE_INDEX), count)


def pick(items: Sequence, index_value: Any) -> tuple[int, Any]:
    """``(index, items[index])`` for the row's ``image_index``. Raises TruthError."""
    index = image_index(index_value, len(items))
    return index, items[index]


def objects_boxes(objects: Any, width: int, height: int, index: int = 0) -> list[list[float]] | None:
    """Boxes of image ``index`` from ms-swift's ``objects`` column, in original pixels; None when unusable.

    ``objects`` = ``{"ref": [...], "bbox": [[x1, y1, x2, y2], ...], "bbox_type": "real" | "norm1",
    "image_id": [...]}`` (or its JSON text); ``norm1`` boxes are scaled by ``width`` x ``height``,
    the size of that image. Points and boxes of other images are left out.
    """
    if isinstance(objects, str):
        if len(objects) > 1 << 20:
            return None
        try:
            objects = json.loads(objects)
        except (ValueError, RecursionError):
            return None
    if not isinstance(objects, dict) or not isinstance(objects.get('bbox'), list):
        return None
    norm1 = objects.get('bbox_type') == 'norm1'
    ids = objects.get('image_id') if isinstance(objects.get('image_id'), list) else []
    out = []
    for i, box in enumerate(objects['bbox'][:MAX_OBJECTS]):
        image_id = ids[i] if i < len(ids) else 0
        if isinstance(image_id, bool) or image_id != index or not isinstance(box, list) or len(box) != 4:
            continue  # a point, or a box of another image
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            return None
        try:
            x1, y1, x2, y2 = (float(v) for v in box)
        except OverflowError:  # an integer too large for a float (10**400): a bad box, not a crash
            return None
        if norm1:
            x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
        out.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
    return parse_solution(out) if out else None

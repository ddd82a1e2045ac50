"""One row of a `swift infer` result file: its image, the geometry the template gives it, its truth.

Each function raises ``RowError`` (a message naming the rule and the value) for a row that cannot
be scored; the caller counts it by kind and goes on.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import os
from typing import Any

from ...boxes import parse_boxes
from ...geometry import GeometryError, ImageGeometry
from ...images import read_image_size
from ...scoring import box_iou, parse_solution
from ..bounded import refuse_reason, short


class RowError(ValueError):
    """A row that cannot be scored: the message names the rule and the value."""


def objects_boxes(objects: Any, width: int, height: int) -> list[list[float]] | None:
    """Boxes of image 0 from ms-swift's ``objects`` column, in original pixels; None when unusable."""
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
    for i, box in enumerate(objects['bbox'][:100]):
        image_id = ids[i] if i < len(ids) else 0
        if image_id != 0 or not isinstance(box, list) or len(box) != 4:
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


def image_source(row: dict) -> tuple[Any, bytes | None, str]:
    """``(source for read_image_size, bytes to draw or None, image key)`` of the row's first image."""
    images = row.get('images')
    if isinstance(images, (str, dict)):
        images = [images]
    if not isinstance(images, list) or not images:
        raise RowError('no image: `images` must be a non-empty list')
    src = images[0]
    if isinstance(src, dict):
        data = src.get('bytes')
        if isinstance(data, str):  # bytes written to JSON as base64 text
            try:
                data = base64.b64decode(data[:64 << 20], validate=True)
            except (binascii.Error, ValueError):
                raise RowError(f'`images[0].bytes` is not base64 ({short(repr(data), 40)})') from None
        if isinstance(data, (bytes, bytearray)) and data:
            return bytes(data), bytes(data), 'in-line image'
        src = src.get('path')
    if not isinstance(src, str) or not src:
        raise RowError(f'`images[0]` must be a path or a {{"path", "bytes"}} dict, got {short(repr(src), 60)}')
    if src.startswith('data:image') and ';base64,' in src[:100]:
        try:
            data = base64.b64decode(src.split(',', 1)[1])
        except (binascii.Error, ValueError):
            raise RowError('`images[0]` is a malformed data URL') from None
        return data, data, 'data URL'
    if '://' in src and not src.startswith('file://'):
        raise RowError(f'remote image {short(repr(src), 80)}: not fetched')
    path = src[7:] if src.startswith('file://') else src
    reason = refuse_reason(path)
    if reason:
        raise RowError(f'image {short(path, 120)}: {reason}')
    return path, None, os.path.abspath(path)


def row_geometry(row: dict, settings) -> tuple[ImageGeometry, Any, bytes | None, str]:
    """The geometry the template gives the row's first image, and how to draw that image."""
    source, data, key = image_source(row)
    kwargs = row.get('chat_template_kwargs')
    if kwargs is not None and not isinstance(kwargs, dict):
        raise RowError(f'`chat_template_kwargs` must be an object, got {short(repr(kwargs), 60)}')
    try:
        width, height = read_image_size(source)
        geo, _ = settings.predict(width=width, height=height, row_kwargs=kwargs or None, name=short(key, 120))
    except (GeometryError, TypeError, ValueError) as exc:
        raise RowError(short(str(exc), 300)) from None
    return geo, source, data, key


def ground_truth(row: dict, geo: ImageGeometry) -> list[list[float]]:
    if row.get('solution') is not None:
        gt = parse_solution(row['solution'])
        if gt is None:
            raise RowError(f'`solution` is not a valid box list in original pixels: {short(repr(row["solution"]), 80)}')
        return gt
    if row.get('objects') is not None:
        gt = objects_boxes(row['objects'], geo.original_width, geo.original_height)
        if gt is None:
            raise RowError(f'`objects` holds no valid box of image 0: {short(repr(row["objects"]), 80)}')
        return gt
    raise RowError('no ground truth: neither `solution` nor `objects`')


def first_box_iou(response: str, gt: list[list[float]], geo: ImageGeometry, coords: str) -> float | None:
    """IoU of the first predicted box (in original pixels, clipped) with the first true box; None: no box."""
    for box in parse_boxes(response, max_boxes=1):
        x1, y1, x2, y2 = geo.from_model_frame(box, coords)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            return 0.0
        w, h = geo.original_width, geo.original_height
        clipped = [min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)]
        return box_iou(clipped, gt[0])
    return None

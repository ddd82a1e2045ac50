"""One row of a `swift infer` result file: its image, the geometry the template gives it, its truth.

Each function raises ``RowError`` (a message naming the rule and the value) for a row that cannot
be scored; the caller counts it by kind and goes on.
"""
from __future__ import annotations

import math
from typing import Any

from ...boxes import parse_boxes
from ...geometry import GeometryError, ImageGeometry
from ...images import classify, payload_bytes, read_image_size
from ...scoring import box_iou, parse_solution
from ...truth import IMAGE_INDEX, TruthError, objects_boxes, pick, row_image_index
from ..bounded import refuse_reason, short


class RowError(ValueError):
    """A row that cannot be scored: the message names the rule and the value."""


def image_source(row: dict) -> tuple[int, Any, bytes | None, str]:
    """``(index, source for read_image_size, bytes to draw or None, image name)`` of the image the row's
    truth belongs to (its ``image_index``, ``swift_ext.truth``).

    The source is read as ms-swift reads it (``swift_ext.images.classify``: a path, resolved as ms-swift
    resolves it; a ``{"path", "bytes"}`` dict; base64 text; a data URL). An in-memory image is named by
    its identity (``sha1:<hex> (N bytes, base64)``), as the geometry log names it: never by its payload.
    """
    images = row.get('images')
    if isinstance(images, (str, dict)):
        images = [images]
    if not isinstance(images, list) or not images:
        raise RowError('no image: `images` must be a non-empty list')
    try:
        index, src = pick(images, row.get(IMAGE_INDEX))
    except TruthError as exc:
        raise RowError(str(exc)) from None
    info = classify(src)
    where = f'`images[{index}]`'
    if info.kind == 'invalid':
        raise RowError(f'{where} {info.name}: {info.error}')
    if info.kind == 'url':
        raise RowError(f'remote image {short(info.name, 80)}: not fetched')
    if info.kind == 'path':
        reason = refuse_reason(info.path)
        if reason:
            raise RowError(f'image {short(info.name, 120)}: {reason}')
        return index, info.path, None, info.key
    try:
        data = payload_bytes(src)
    except (ValueError, TypeError):
        raise RowError(f'{where} {info.name}: not decodable') from None
    return index, data, data, info.name


def row_geometry(row: dict, settings) -> tuple[ImageGeometry, Any, bytes | None, str]:
    """The geometry the template gives the image the row's truth belongs to, and how to draw that image."""
    _, source, data, key = image_source(row)
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
    """The row's true boxes in original pixels: ``solution``, else the ``objects`` of its image."""
    if row.get('solution') is not None:
        gt = parse_solution(row['solution'])
        if gt is None:
            raise RowError(f'`solution` is not a valid box list in original pixels: {short(repr(row["solution"]), 80)}')
        return gt
    if row.get('objects') is not None:
        try:
            index = row_image_index(row)
        except TruthError as exc:
            raise RowError(str(exc)) from None
        gt = objects_boxes(row['objects'], geo.original_width, geo.original_height, index)
        if gt is None:
            raise RowError(f'`objects` holds no valid box of image {index}: {short(repr(row["objects"]), 80)}')
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

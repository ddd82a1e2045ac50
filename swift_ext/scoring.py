"""Box IoU scoring for grounding rewards: predicted boxes against ground truth.

The reward contract: a score is a float in ``[0, 1]``, or ``None`` meaning "no opinion on
this sample" (ground truth missing or invalid). A completion can never make scoring raise:
whatever the model wrote, the worst it gets is ``0.0``.

Coordinates:

* ground truth (``solution``) is in ORIGINAL image pixels, as datasets store it;
* predictions are in the model's frame (``ImageGeometry.from_model_frame``): ``'abs'`` =
  pixels of the image the model saw (Qwen2.5-VL), ``'norm1000'`` = 0-1000 of that frame
  (Qwen2-VL, Qwen3-VL, InternVL, whose frame is the tile canvas), ``'norm1'`` = 0-1,
  ``'norm999'`` = 0-999 (DeepSeek-VL2, DeepSeek-OCR), ``'bins1000'`` / ``'bins1024'`` = integer location
  bins (Florence-2 / PaliGemma; ``geometry.BINS``).

Importing this module imports neither scipy nor numpy; ``matched_iou`` imports them on
its first multi-box call. One box against one box (most grounding rewards) takes a fast
path: two regexes and one IoU, no JSON parse, no lists, no matching; it gives exactly the
result of the general path, which handles everything else. The assignment is scipy's ``linear_sum_assignment`` (the
Hungarian algorithm), not a greedy match: greedy can pair a box with its best partner
and leave the rest worse off.
"""
from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

from swift_ext.boxes import MAX_SCAN_CHARS, answer_region, parse_boxes
from swift_ext.geometry import COORDS, ImageGeometry

MAX_GT_BOXES = 100
# A JSON solution is at most 100 boxes with labels; longer strings are refused unread.
MAX_SOLUTION_CHARS = 64 * 1024
# `[{"bbox_2d": [...]}]` is 3 levels deep (8 leaves room for brackets inside labels);
# deeper JSON is refused before json.loads sees it (its C scanner recurses per level).
_MAX_SOLUTION_DEPTH = 8

# --- the single-box fast path's patterns -----------------------------------------------------
# A ground truth that is exactly one JSON box: JSON's own number grammar and whitespace, so
# what matches is what json.loads would read as a list of four numbers (a '+' sign, a leading
# zero or NaN does not match and takes the general path, which refuses it as json.loads does).
_JSON_NUM = r'(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)'
_JSON_WS = r'[ \t\n\r]*'
_ONE_GT_BOX_RE = re.compile(_JSON_WS + r'\[' + _JSON_WS + (_JSON_WS + ',' + _JSON_WS).join([_JSON_NUM] * 4)
                            + _JSON_WS + r'\]' + _JSON_WS)
# boxes' `qwen2_5_json` style with boxes' number grammar (see `swift_ext.boxes`); a test pins
# that the fast path and parse_boxes agree on every case the fast path takes.
_BOX_NUM = r'([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)'
_BBOX_2D_RE = re.compile(r'["\']bbox_2d["\']\s*:\s*\[\s*' + r'\s*,\s*'.join([_BOX_NUM] * 4) + r'\s*\]')
_NOT_FAST = object()  # "not a single-box case": the general path decides


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes with ordered corners.

    Example:
        >>> box_iou([0, 0, 10, 10], [5, 0, 15, 10])  # 50 / 150
        0.3333333333333333
    """
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if not union > 0:
        return 0.0
    return min(1.0, max(0.0, inter / union))


def _iou_matrix(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]):
    """``box_iou`` of every pair as a (len(pred), len(gt)) array, same arithmetic, vectorized."""
    import numpy as np
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 4)[:, None, :]
    g = np.asarray(gt, dtype=np.float64).reshape(-1, 4)[None, :, :]
    inter_w = np.minimum(p[..., 2], g[..., 2]) - np.maximum(p[..., 0], g[..., 0])
    inter_h = np.minimum(p[..., 3], g[..., 3]) - np.maximum(p[..., 1], g[..., 1])
    with np.errstate(all='ignore'):
        inter = np.where((inter_w > 0) & (inter_h > 0), inter_w * inter_h, 0.0)
        union = ((p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
                 + (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1]) - inter)
        ious = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.clip(np.nan_to_num(ious, nan=0.0), 0.0, 1.0)


def matched_iou(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]) -> float:
    """Mean IoU over the best one-to-one matching, counting unmatched boxes as 0.

    The sum of IoUs of an optimal matching divided by ``max(len(pred), len(gt))``: a
    missed object and an extra prediction each cost as much as a wrong box.

    Args:
        pred: predicted boxes.
        gt: ground-truth boxes, in the same frame.

    Returns:
        A float in ``[0, 1]``; ``0.0`` when either list is empty.

    Example:
        >>> matched_iou([[0, 0, 10, 10]], [[0, 0, 10, 10]])
        1.0
        >>> matched_iou([[0, 0, 10, 10], [50, 50, 60, 60]], [[0, 0, 10, 10]])  # one extra
        0.5
    """
    if len(pred) == 0 or len(gt) == 0:  # len(), not truth: numpy arrays are accepted
        return 0.0
    if len(pred) == 1 and len(gt) == 1:
        return box_iou(pred[0], gt[0])
    from scipy.optimize import linear_sum_assignment
    ious = _iou_matrix(pred, gt)
    rows, cols = linear_sum_assignment(ious, maximize=True)
    # fsum is correctly rounded, so the order the solver lists the pairs in (which differs
    # between matched_iou(a, b) and matched_iou(b, a)) cannot change the result.
    total = math.fsum(ious[rows, cols].tolist())
    return min(1.0, max(0.0, total / max(len(pred), len(gt))))


def _json_depth_ok(text: str) -> bool:
    depth = 0
    for ch in text:
        if ch in '[{':
            depth += 1
            if depth > _MAX_SOLUTION_DEPTH:
                return False
        elif ch in ']}':
            depth -= 1
    return True


def _gt_box(item: Any) -> list[float] | None:
    if isinstance(item, dict):
        item = item.get('bbox_2d')
    if not isinstance(item, (list, tuple)) or len(item) != 4:
        return None
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in item):
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in item)
    except OverflowError:  # an integer too large for a float (10**400): a bad box, not a crash
        return None
    if not all(math.isfinite(v) and v >= 0 for v in (x1, y1, x2, y2)):
        return None
    if not (x1 < x2 and y1 < y2):  # inverted or zero-area: a dataset bug, not reordered
        return None
    return [x1, y1, x2, y2]


def parse_solution(solution: Any) -> list[list[float]] | None:
    """Ground-truth boxes in original image pixels, or None when they are unusable.

    Accepted: one box ``[x1, y1, x2, y2]``; a list of boxes; ``{"bbox_2d": box}`` or a list
    of such dicts (Qwen2.5-VL's own format); or a JSON string of any of these.
    Ground truth is held to a stricter rule than predictions: coordinates must be finite,
    non-negative numbers with ``x1 < x2`` and ``y1 < y2``. Inverted corners are NOT
    reordered, so a dataset bug shows up as a sample without a score instead of a
    silently different box. Any invalid box, an empty list, or more than ``MAX_GT_BOXES``
    boxes makes the whole solution invalid.

    Args:
        solution: the dataset's ``solution`` column for one sample.

    Returns:
        A list of boxes, or None.

    Example:
        >>> parse_solution('[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]')
        [[10.0, 20.0, 30.0, 40.0]]
        >>> parse_solution([30, 20, 10, 40]) is None  # x1 > x2
        True
    """
    if isinstance(solution, str):
        if len(solution) > MAX_SOLUTION_CHARS or not _json_depth_ok(solution):
            return None
        try:
            solution = json.loads(solution)
        except ValueError:  # JSONDecodeError, or an integer too long to convert
            return None
    if hasattr(solution, 'tolist') and not isinstance(solution, (list, tuple)):
        solution = solution.tolist()  # a numpy array from a dataset column
    if isinstance(solution, dict):
        solution = [solution]
    if not isinstance(solution, (list, tuple)) or not solution:
        return None
    if len(solution) == 4 and all(isinstance(v, numbers.Real) for v in solution):
        solution = [solution]
    if len(solution) > MAX_GT_BOXES:
        return None
    boxes = [_gt_box(item) for item in solution]
    if any(box is None for box in boxes):
        return None
    return boxes


def _to_original(box: list[float], geometry: ImageGeometry, coords: str) -> list[float] | None:
    """A predicted box mapped to original pixels and clipped to the image, or None."""
    x1, y1, x2, y2 = geometry.from_model_frame(box, coords)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):  # 1e308 scaled past float
        return None
    width, height = geometry.original_width, geometry.original_height
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if not (x1 < x2 and y1 < y2):  # nothing left inside the image
        return None
    return [x1, y1, x2, y2]


def iou_score(completion: str, solution: Any, geometry: ImageGeometry,
              coords: str) -> float | None:
    """Matched IoU of a completion's boxes against the ground truth, in original pixels.

    Predicted boxes (``boxes.parse_boxes``) are mapped to the original image, clipped to
    ``[0, W] x [0, H]``; boxes with no area left, or whose mapping overflows a float, are
    dropped; the rest are scored with ``matched_iou``.

    Args:
        completion: the model's output text.
        solution: ground truth in original pixels (see ``parse_solution``).
        geometry: what the preprocessor did to the image (``swift_ext.geometry``).
        coords: ``'abs'`` (pixels of the resized frame, Qwen2.5-VL), ``'norm1000'``
            (0-1000 of the frame: Qwen2-VL, Qwen3-VL, InternVL), ``'norm1'`` (0-1), ``'norm999'``
            (0-999: DeepSeek-VL2, DeepSeek-OCR), or the location bins ``'bins1000'`` (Florence-2) /
            ``'bins1024'`` (PaliGemma).

    Returns:
        A float in ``[0, 1]`` (``0.0`` when no usable box was predicted), or None when the
        ground truth is missing or invalid.

    Raises:
        ValueError: ``coords`` is not one of ``COORDS``.

    Example:
        >>> from swift_ext import predict_geometry
        >>> geometry = predict_geometry('qwen2_5_vl_geo', width=640, height=480, env={})  # resized to 644 x 476
        >>> round(iou_score('{"bbox_2d": [64.4, 47.6, 322, 238]}', [64, 48, 320, 240],
        ...                 geometry, 'abs'), 6)
        1.0
        >>> round(iou_score('<|box_start|>(100,100),(500,500)<|box_end|>',
        ...                 [64, 48, 320, 240], geometry, 'norm1000'), 6)
        1.0
        >>> iou_score('no box', [64, 48, 320, 240], geometry, 'abs')
        0.0
    """
    if coords not in COORDS:
        raise ValueError(f'`coords` should be one of {list(COORDS)}, got {coords!r}.')
    score = _single_box_score(completion, solution, geometry, coords)
    if score is not _NOT_FAST:
        return score
    return _general_score(completion, solution, geometry, coords)


def _general_score(completion: str, solution: Any, geometry: ImageGeometry, coords: str) -> float | None:
    """iou_score for any number of boxes: parse both sides, map, clip, match."""
    gt = parse_solution(solution)
    if gt is None:
        return None
    pred = [box for box in (_to_original(b, geometry, coords) for b in parse_boxes(completion))
            if box is not None]
    return matched_iou(pred, gt)


# --- single-box fast path ---------------------------------------------------------------------
# Written flat (comparisons instead of min/max, no generators, no lists): at a few
# microseconds per completion, every call and temporary shows in `swift-ext bench`.
def _one_gt_box(solution: Any):
    """The ground truth as (x1, y1, x2, y2) when it is one valid box; None when not this case."""
    if type(solution) is str:
        if len(solution) > MAX_SOLUTION_CHARS:
            return None
        match = _ONE_GT_BOX_RE.fullmatch(solution)
        if match is None:
            return None
        a, b, c, d = match.groups()
        x1, y1, x2, y2 = float(a), float(b), float(c), float(d)
    elif type(solution) is list and len(solution) == 4:
        for v in solution:  # exactly int or float: bool, str, numpy scalars take the general path
            if type(v) is not int and type(v) is not float:
                return None
        x1, y1, x2, y2 = float(solution[0]), float(solution[1]), float(solution[2]), float(solution[3])
    else:
        return None
    # _gt_box's rule: finite, non-negative, x1 < x2 and y1 < y2. NaN fails every comparison;
    # an infinite x1/y1 fails x1 < x2, an infinite x2/y2 the isfinite.
    if 0.0 <= x1 < x2 and 0.0 <= y1 < y2 and math.isfinite(x2) and math.isfinite(y2):
        return x1, y1, x2, y2
    return None


def _one_predicted_box(completion: Any):
    """The box when parse_boxes would return exactly one `qwen2_5_json` box; else None.

    parse_boxes tries box tokens and `<box>` tags first; without either, and with a single
    "bbox_2d" key in the answer region, its result is this pattern's one match.
    """
    if type(completion) is not str:
        return None
    region = answer_region(completion)
    if len(region) > MAX_SCAN_CHARS or region.count('bbox_2d') != 1 or '<|box_start|>' in region \
            or '<box>' in region:
        return None
    match = _BBOX_2D_RE.search(region)
    if match is None:
        return None
    a, b, c, d = match.groups()
    x1, y1, x2, y2 = float(a), float(b), float(c), float(d)
    # One test for four: the sum is finite when every term is (a finite sum that overflows
    # only sends a valid box to the general path, which gives the same score).
    if not math.isfinite(x1 + y1 + x2 + y2):
        return None
    if x1 > x2:
        x1, x2 = x2, x1
    if y1 > y2:
        y1, y2 = y2, y1
    return x1, y1, x2, y2


def _single_box_score(completion: Any, solution: Any, geometry: ImageGeometry, coords: str):
    """iou_score for one predicted box against one ground-truth box, or _NOT_FAST.

    The same arithmetic as the general path (_to_original, then box_iou), step for step, so
    the two give the same float.
    """
    gt = _one_gt_box(solution)
    if gt is None:
        return _NOT_FAST
    pred = _one_predicted_box(completion)
    if pred is None:
        return _NOT_FAST
    x1, y1, x2, y2 = geometry.from_model_frame(pred, coords)
    if not math.isfinite(x1 + y1 + x2 + y2):  # scaled past a float (or a sum that overflows)
        return _NOT_FAST
    width, height = geometry.original_width, geometry.original_height
    x1 = 0.0 if x1 < 0.0 else (width if x1 > width else x1)
    x2 = 0.0 if x2 < 0.0 else (width if x2 > width else x2)
    y1 = 0.0 if y1 < 0.0 else (height if y1 > height else y1)
    y2 = 0.0 if y2 < 0.0 else (height if y2 > height else y2)
    if not (x1 < x2 and y1 < y2):
        return 0.0
    g1, h1, g2, h2 = gt
    inter_w = (x2 if x2 < g2 else g2) - (x1 if x1 > g1 else g1)
    inter_h = (y2 if y2 < h2 else h2) - (y1 if y1 > h1 else h1)
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = (x2 - x1) * (y2 - y1) + (g2 - g1) * (h2 - h1) - inter
    if not union > 0:
        return 0.0
    iou = inter / union
    return 1.0 if iou > 1.0 else (0.0 if iou < 0.0 else iou)
